"""Tests of dataset fetching (course_lib.data.download, .archives, .manifests; data_scripts/fetch.py).

A small HTTP server on 127.0.0.1 (port 0, started by the test, in a thread) serves archives the tests
build in each dataset's layout. It answers Range requests and can be told to cut a connection
mid-file once, to answer 404, or to serve wrong bytes. No test reaches the internet: the one URL
that is not local is a closed port on 127.0.0.1 (the "offline" case).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import importlib.util
import io
import json
import os
import socket
import sys
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from course_lib.data import load_dataset
from course_lib.data.archives import extract_archive
from course_lib.data.download import DownloadError, RemoteFile, download_file
from course_lib.data.manifests import LicenseNotAcceptedError, fetch, load_manifest
from course_lib.data.musiccaps import download_clips

REPO = Path(__file__).resolve().parents[1]
FAST = {"retries": 2, "backoff": 0.0, "timeout": 5.0, "progress": False}  # no pauses between tries


class FileServer:
    """Serves ``files`` (path → bytes) on 127.0.0.1 with Range support; records each request's Range header.

    ``cut_once[path] = n`` sends the full headers but only ``n`` bytes of the next response longer than
    ``n``, then closes; paths in ``corrupt`` are served with their bytes changed; unknown paths get a 404.
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_once: dict[str, int] = {}
        self.corrupt: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep the test output clean
                pass

            def do_GET(self) -> None:
                byte_range = self.headers.get("Range")
                server.requests.append((self.path, byte_range))
                if self.path not in server.files:
                    self.send_error(404, "Not Found")
                    return
                data = server.files[self.path]
                if self.path in server.corrupt:
                    data = bytes(b ^ 0xFF for b in data)
                start, stop, status = 0, len(data), 200
                if byte_range:
                    first, _, last = byte_range.removeprefix("bytes=").partition("-")
                    start, stop, status = int(first), min(int(last) + 1 if last else len(data), len(data)), 206
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                self.send_response(status)
                self.send_header("Content-Length", str(stop - start))
                self.send_header("Accept-Ranges", "bytes")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{len(data)}")
                self.end_headers()
                body = data[start:stop]
                if len(body) > server.cut_once.get(self.path, len(body)):
                    body = body[: server.cut_once.pop(self.path)]
                    self.close_connection = True
                self.wfile.write(body)

        return Handler


@pytest.fixture
def server():
    files = FileServer()
    yield files
    files.close()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """A proxy set in the environment must not see the requests to 127.0.0.1."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def closed_port_url(path: str = "/nsynth-test.jsonwav.tar.gz") -> str:
    """A URL on a port where nothing listens: connections are refused, as when offline."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


# --- archives in the datasets' layouts ---------------------------------------------------------------


def wav_bytes(seconds: float = 4.0, rate: int = 16000, noise: bool = False) -> bytes:
    """A WAV file of a sine (compresses well) or of noise (does not: a zip member stays big)."""
    buffer = io.BytesIO()
    t = np.arange(round(seconds * rate)) / rate
    audio = np.random.default_rng(0).uniform(-0.3, 0.3, t.size) if noise else 0.3 * np.sin(2 * np.pi * 440 * t)
    sf.write(buffer, audio.astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as bundle:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            bundle.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def nsynth_archive() -> bytes:
    examples = {
        key: {"pitch": pitch, "velocity": 100, "instrument_family_str": "guitar", "instrument_source_str": "acoustic",
              "qualities_str": ["bright"], "sample_rate": 16000}
        for key, pitch in [("guitar_acoustic_001-060-100", 60), ("guitar_acoustic_001-064-100", 64)]
    }  # fmt: skip
    members = {"nsynth-test/examples.json": json.dumps(examples).encode()}
    members |= {f"nsynth-test/audio/{key}.wav": wav_bytes() for key in examples}
    return tar_gz(members)


def write_manifest(folder: Path, name: str, subsets: dict, requires_acceptance: bool = False) -> Path:
    manifest = {
        "name": name, "title": name.upper(), "homepage": "https://example.org/dataset", "license": "CC BY 4.0",
        "license_url": "https://creativecommons.org/licenses/by/4.0/", "citation": "A. Author. A dataset. 2024.",
        "terms": "Research only.", "requires_acceptance": requires_acceptance,
        "default_subset": next(iter(subsets)), "subsets": subsets,
    }  # fmt: skip
    path = folder / f"{name}.json"
    path.write_text(json.dumps(manifest))
    return path


def remote(filename: str, urls: list[str], data: bytes | None = None, **fields) -> dict:
    entry = {"filename": filename, "urls": urls, "size_bytes": None, "checksum": None, "checksum_note": "none"}
    if data is not None:
        entry["checksum"] = {"algorithm": "sha256", "value": hashlib.sha256(data).hexdigest()}
    return entry | fields


def nsynth_manifest(tmp_path: Path, server: FileServer, urls: list[str] | None = None, **options) -> Path:
    archive = nsynth_archive()
    server.files["/nsynth-test.jsonwav.tar.gz"] = archive
    urls = urls or [server.url("/nsynth-test.jsonwav.tar.gz")]
    subset = {"description": "the test split", "files": [remote("nsynth-test.jsonwav.tar.gz", urls, archive)]}
    return write_manifest(tmp_path, "nsynth", {"test": subset}, **options)


# --- the tests ---------------------------------------------------------------------------------------


def test_fetch_prints_terms_downloads_checks_and_extracts(server, tmp_path):
    root = tmp_path / "data"
    messages = []
    summary = fetch(
        load_manifest(nsynth_manifest(tmp_path, server)), root=root,
        log=lambda m: messages.append((m, len(server.requests))), **FAST,
    )  # fmt: skip
    first, requests_then = messages[0]
    assert "license:  CC BY 4.0" in first and "cite:     A. Author" in first and requests_then == 0
    assert summary.audio_files == 2 and summary.hours == pytest.approx(8 / 3600, rel=1e-3)
    assert "2 audio" in messages[-1][0] and "0.1 minutes of audio" in messages[-1][0]
    assert (root / "nsynth" / "nsynth-test" / "examples.json").exists()
    assert not (root / ".nsynth.staging").exists()
    assert not list((root / "downloads").iterdir())  # the archive is deleted once extracted
    ds = load_dataset("nsynth", split="test", root=root / "nsynth", seconds=1.0)
    assert len(ds) == 2 and ds[0].caption == "a loud acoustic guitar note, C4, bright"


def test_cut_connection_resumes_with_a_range_request(server, tmp_path):
    data = np.random.default_rng(0).bytes(300_000)
    server.files["/big.bin"] = data
    server.cut_once["/big.bin"] = 100_000
    spec = RemoteFile("big.bin", (server.url("/big.bin"),), checksum=None)
    path = download_file(spec, tmp_path, log=lambda m: None, **FAST)
    assert path.read_bytes() == data
    assert server.requests == [("/big.bin", None), ("/big.bin", "bytes=100000-")]
    assert not (tmp_path / "big.bin.part").exists()


def test_wrong_checksum_leaves_nothing_where_the_loader_reads(server, tmp_path):
    manifest = load_manifest(nsynth_manifest(tmp_path, server))
    server.corrupt.add("/nsynth-test.jsonwav.tar.gz")
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match=r"(?s)checksum mismatch: sha256 .*published .*deleted"):
        fetch(manifest, root=root, log=lambda m: None, **FAST)
    assert not (root / "nsynth").exists() and not (root / ".nsynth.staging").exists()
    assert not list((root / "downloads").glob("*"))


def test_a_file_downloaded_by_hand_is_checked_and_used(server, tmp_path):
    manifest = load_manifest(nsynth_manifest(tmp_path, server))
    (tmp_path / "data" / "downloads").mkdir(parents=True)
    (tmp_path / "data" / "downloads" / "nsynth-test.jsonwav.tar.gz").write_bytes(nsynth_archive())
    server.files.clear()  # the server is of no help: every URL is a 404
    assert fetch(manifest, root=tmp_path / "data", log=lambda m: None, **FAST).audio_files == 2
    assert server.requests == []


def test_a_second_split_joins_the_first(server, tmp_path):
    archive = nsynth_archive()
    valid = tar_gz({"nsynth-valid/examples.json": b"{}"})
    server.files |= {"/test.tar.gz": archive, "/valid.tar.gz": valid}
    subsets = {
        "test": {"description": "test", "files": [remote("test.tar.gz", [server.url("/test.tar.gz")], archive)]},
        "valid": {"description": "valid", "files": [remote("valid.tar.gz", [server.url("/valid.tar.gz")], valid)]},
    }
    manifest = load_manifest(write_manifest(tmp_path, "nsynth", subsets))
    fetch(manifest, "test", root=tmp_path / "data", log=lambda m: None, **FAST)
    fetch(manifest, "valid", root=tmp_path / "data", log=lambda m: None, **FAST)
    assert sorted(os.listdir(tmp_path / "data" / "nsynth")) == ["nsynth-test", "nsynth-valid"]


def test_dead_link_names_the_url_then_a_mirror_is_used(server, tmp_path):
    dead = server.url("/gone/nsynth-test.jsonwav.tar.gz")
    with pytest.raises(DownloadError, match=rf"(?s){dead}: HTTP 404.*download nsynth-test.jsonwav.tar.gz by hand"):
        fetch(load_manifest(nsynth_manifest(tmp_path, server, [dead])), root=tmp_path / "a", log=lambda m: None, **FAST)
    assert server.requests == [("/gone/nsynth-test.jsonwav.tar.gz", None)]  # a 404 is not retried
    mirror = server.url("/nsynth-test.jsonwav.tar.gz")
    manifest = load_manifest(nsynth_manifest(tmp_path, server, [dead, mirror]))
    assert fetch(manifest, root=tmp_path / "b", log=lambda m: None, **FAST).audio_files == 2


def test_offline_names_the_url_and_what_to_do(tmp_path):
    url = closed_port_url()
    spec = RemoteFile("nsynth-test.jsonwav.tar.gz", (url,))
    with pytest.raises(
        DownloadError, match=rf"(?s){url}: connection refused.*gave up after 3 tries.*run the same command again"
    ):
        download_file(spec, tmp_path, "https://example.org/dataset", log=lambda m: None, **FAST)
    assert not (tmp_path / "nsynth-test.jsonwav.tar.gz").exists()


def test_terms_must_be_accepted_before_anything_is_downloaded(server, tmp_path):
    manifest = load_manifest(nsynth_manifest(tmp_path, server, requires_acceptance=True))
    with pytest.raises(LicenseNotAcceptedError, match="--accept-license"):
        fetch(manifest, root=tmp_path / "data", log=lambda m: None, **FAST)
    assert server.requests == []
    fetch(manifest, root=tmp_path / "data", accept_license=True, log=lambda m: None, **FAST)
    assert (tmp_path / "data" / "nsynth" / "nsynth-test").is_dir()


def test_one_split_is_read_out_of_a_remote_zip(server, tmp_path):
    rows = [["canonical_composer", "canonical_title", "split", "year", "midi_filename", "audio_filename", "duration"],
            ["Chopin", "Nocturne", "test", "2018", "2018/a.midi", "2018/a.wav", "4.0"],
            ["Haydn", "Sonata", "train", "2018", "2018/b.midi", "2018/b.wav", "4.0"]]  # fmt: skip
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    index = text.getvalue().encode()
    midi = bytes.fromhex("4d546864000000060000000101e0") + bytes.fromhex("4d54726b0000000400ff2f00")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("maestro-v3.0.0/maestro-v3.0.0.csv", index)
        for name in ("a", "b"):
            bundle.writestr(f"maestro-v3.0.0/2018/{name}.wav", wav_bytes(4.0, 22050, noise=True))
            bundle.writestr(f"maestro-v3.0.0/2018/{name}.midi", midi)
    server.files |= {"/maestro-v3.0.0.zip": buffer.getvalue(), "/maestro-v3.0.0.csv": index}
    server.cut_once["/maestro-v3.0.0.zip"] = 40_000  # inside a.wav's compressed data
    selection = {
        "archive": remote("maestro-v3.0.0.zip", [server.url("/maestro-v3.0.0.zip")], buffer.getvalue()),
        "index": "maestro-v3.0.0/maestro-v3.0.0.csv", "column": "split", "value": "test",
        "path_columns": ["audio_filename", "midi_filename"], "prefix": "maestro-v3.0.0/",
    }  # fmt: skip
    csv_file = remote("maestro-v3.0.0.csv", [server.url("/maestro-v3.0.0.csv")], extract=False,
                      target="maestro-v3.0.0/maestro-v3.0.0.csv")  # fmt: skip
    subset = {"description": "the test split", "files": [csv_file], "zip_members": selection}
    summary = fetch(load_manifest(write_manifest(tmp_path, "maestro", {"test": subset})), root=tmp_path / "data",
                    log=lambda m: None, **FAST)  # fmt: skip
    folder = tmp_path / "data" / "maestro" / "maestro-v3.0.0"
    assert sorted(p.name for p in (folder / "2018").iterdir()) == ["a.midi", "a.wav"]
    assert (folder / "2018" / "a.wav").read_bytes() == wav_bytes(4.0, 22050, noise=True)  # CRC-checked
    assert "/maestro-v3.0.0.zip" not in server.cut_once  # the connection was cut inside a.wav, then resumed
    assert summary.audio_files == 1 and summary.midi_files == 1
    zip_ranges = [r for path, r in server.requests if path == "/maestro-v3.0.0.zip"]
    assert zip_ranges and all(r is not None for r in zip_ranges)  # never the whole archive
    assert len(load_dataset("maestro", split="test", root=tmp_path / "data" / "maestro", seconds=1.0)) == 1


def test_extraction_refuses_paths_outside_the_folder(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(tar_gz({"../evil.txt": b"x"}))
    with pytest.raises(DownloadError, match="unsafe path"):
        extract_archive(archive, tmp_path / "into", progress=False)
    assert not (tmp_path / "evil.txt").exists()


FAKE_YT_DLP = """
import sys, wave
arguments = sys.argv[1:]
template, url = arguments[arguments.index("-o") + 1], arguments[-1]
if "gone" in url:
    sys.stderr.write("ERROR: [youtube] goneVideo01: Video unavailable\\n")
    sys.exit(1)
with wave.open(template.replace("%(ext)s", "wav"), "wb") as out:
    out.setnchannels(1); out.setsampwidth(2); out.setframerate(16000); out.writeframes(bytes(32000 * 10))
"""


def test_youtube_clips_skip_videos_that_are_gone(tmp_path):
    root = tmp_path / "musiccaps"
    root.mkdir()
    with open(root / "musiccaps-public.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ytid", "start_s", "end_s", "aspect_list", "caption", "is_audioset_eval"])
        for ytid in ("aaaaaaaaaaa", "goneVideo01", "bbbbbbbbbbb"):
            writer.writerow([ytid, 30, 40, "['piano']", f"Caption of {ytid}.", "False"])
    command = [sys.executable, str(tmp_path / "yt_dlp.py")]
    (tmp_path / "yt_dlp.py").write_text(FAKE_YT_DLP)
    messages = []
    report = download_clips(
        root / "musiccaps-public.csv", root / "audio", command=command, progress=False, log=messages.append
    )
    assert (report.downloaded, report.present, report.unavailable) == (2, 0, ["goneVideo01"])
    assert "1 unavailable" in messages[-1] and (root / "unavailable.txt").read_text() == "goneVideo01\n"
    assert sorted(os.listdir(root / "audio")) == ["aaaaaaaaaaa.wav", "bbbbbbbbbbb.wav"]  # no temporary files left
    again = download_clips(
        root / "musiccaps-public.csv", root / "audio", command=command, progress=False, log=messages.append
    )
    assert (again.downloaded, again.present) == (0, 2)
    ds = load_dataset("musiccaps", root=root, seconds=2.0)
    assert [clip.caption for clip in (ds[0], ds[1])] == ["Caption of aaaaaaaaaaa.", "Caption of bbbbbbbbbbb."]


def load_cli():
    spec = importlib.util.spec_from_file_location("fetch_cli", REPO / "data_scripts" / "fetch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_command_line_reports_errors_without_a_traceback(server, tmp_path, capsys):
    cli = load_cli()
    dead = server.url("/gone/nsynth-test.jsonwav.tar.gz")
    manifest = nsynth_manifest(tmp_path, server, [dead])
    assert cli.main(["--manifest", str(manifest), "--dest", str(tmp_path / "data"), "--retries", "0"]) == 1
    err = capsys.readouterr().err
    assert dead in err and "HTTP 404" in err and "Traceback" not in err
    assert cli.main(["--list"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in ("nsynth", "maestro", "fma", "musiccaps", "gtzan"))
    with contextlib.redirect_stderr(io.StringIO()):
        assert cli.main(["imagenet"]) == 2


def test_repository_manifests_are_complete():
    manifests = {p.stem: load_manifest(p) for p in sorted((REPO / "data_scripts" / "manifests").glob("*.json"))}
    assert {"nsynth", "maestro", "fma", "musiccaps", "gtzan"} <= set(manifests)
    for name, manifest in manifests.items():
        assert manifest.name == name and manifest.license and manifest.citation and manifest.homepage.startswith("http")
        for subset in manifest.subsets.values():
            files = list(subset.files) + ([subset.zip_members.archive] if subset.zip_members else [])
            assert files, f"{name}/{subset.name} fetches nothing"
            for spec in files:
                assert all(url.startswith(("http://", "https://")) for url in spec.urls)
                assert spec.checksum is not None or spec.checksum_note, f"{name}/{spec.filename}: no checksum, no note"
    assert len(manifests["gtzan"].subsets["all"].files[0].urls) >= 2  # the original host and a mirror
    assert len(manifests["nsynth"].subsets["test"].files[0].urls) >= 2
    assert (
        manifests["gtzan"].subsets["all"].requires_acceptance
        and not manifests["nsynth"].subsets["test"].requires_acceptance
    )
