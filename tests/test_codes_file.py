"""The ``.codes`` format (course_lib.codec.codes_file): every header field checked, the payload's CRC-32, format 1."""

import json
import struct

import pytest
import torch

from course_lib.codec.codes_file import FORMAT, MAGIC, check_codes_model, load_codes, save_codes
from course_lib.codec.model import Codec, CodecConfig
from course_lib.errors import AudioInputError, CheckpointError

SMALL = dict(channels=2, latent_dim=4, n_q=4, codebook_size=16, kmeans_init=False, offered_n_q=(2, 4))
DELETE = object()


def read_codes(path):
    """-> (header dict, payload bytes) of a ``.codes`` file, without any of load_codes's checks."""
    data = path.read_bytes()
    (size,) = struct.unpack(">I", data[8:12])
    return json.loads(data[12 : 12 + size]), data[12 + size :]


def rewrite_codes(source, target, payload=None, **changes):
    """Copy ``source`` to ``target`` with header fields changed (``DELETE`` removes one) and/or another payload."""
    header, old_payload = read_codes(source)
    for name, value in changes.items():
        if value is DELETE:
            header.pop(name)
        else:
            header[name] = value
    header_bytes = json.dumps(header).encode()
    new_payload = old_payload if payload is None else payload(old_payload)
    target.write_bytes(MAGIC + struct.pack(">I", len(header_bytes)) + header_bytes + new_payload)
    return target


def flip_a_byte(payload):
    middle = len(payload) // 2
    return payload[:middle] + bytes([payload[middle] ^ 0x01]) + payload[middle + 1 :]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A small codec and a ``.codes`` file of 0.1 s (1,600 samples: 5 frames of 320) it wrote."""
    torch.manual_seed(0)
    codec = Codec(CodecConfig(**SMALL)).eval()
    audio = 0.1 * torch.randn(1, 1600)
    path = tmp_path_factory.mktemp("codes") / "clip.codes"
    save_codes(path, codec.encode(audio, n_q=4), codec, 1600)
    return codec, path


def test_a_written_file_has_format_2_and_the_payloads_crc32(written):
    codec, path = written
    header, payload = read_codes(path)
    assert header["format"] == FORMAT == "course_lib.codes/2"
    assert len(payload) == 10  # 5 frames x 4 levels x 4 bits = 80 bits
    loaded = load_codes(path)
    assert loaded.checksum == header["payload_crc32"] and len(loaded.checksum) == 8
    check_codes_model(loaded, codec)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(frames=-5), "frames is -5; it must be at least 1"),
        (dict(frames=7), "frames is 7, but 1600 samples make 5 frames"),
        (dict(num_samples=0), "num_samples is 0; it must be at least 1"),
        (dict(num_samples=-100), "num_samples is -100"),
        (dict(num_samples=100_000), "frames is 5, but 100000 samples make 313 frames"),
        (dict(codebook_size=0), "codebook_size is 0; it must be at least 2"),
        (dict(bits_per_code=0), "bits_per_code is 0"),
        (dict(bits_per_code=5), "bits_per_code is 5, but 16 codes need 4 bits"),
        (dict(n_q="4"), "n_q is '4', not a whole number"),
        (dict(frames=5.0), "frames is 5.0, not a whole number"),
        (dict(num_samples=True), "num_samples is True, not a whole number"),
        (dict(frame_rate="50"), "frame_rate is '50', not a positive number"),
        (dict(frame_rate=float("nan")), "frame_rate is nan"),
        (dict(frame_rate=48.0), "not a whole number"),  # 16,000 / 48 samples per frame
        (dict(fingerprint=7), "fingerprint is 7, not a string"),
        (dict(config=[1]), "config is [1], not a JSON object"),
        (dict(n_q=DELETE), "its header lacks n_q"),
        (dict(payload_crc32=DELETE), "its header lacks payload_crc32"),
        (dict(payload_crc32="xyz"), "payload_crc32 is 'xyz', not 8 hex digits"),
        (dict(format="something else"), "its header's format is 'something else'"),
        (dict(format="course_lib.codes/3"), "update course_lib"),
    ],
)
def test_every_header_field_is_checked(written, tmp_path, changes, message):
    _, path = written
    bad = rewrite_codes(path, tmp_path / "bad.codes", **changes)
    with pytest.raises(AudioInputError, match="bad.codes") as raised:
        load_codes(bad)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (flip_a_byte, "CRC-32"),
        (lambda payload: payload + b"\x00\x00\x00", "3 bytes follow the 10 bytes of codes"),
        (lambda payload: payload[:-1], "cut short"),
    ],
)
def test_a_changed_payload_is_refused(written, tmp_path, payload, message):
    _, path = written
    with pytest.raises(AudioInputError, match=message):
        load_codes(rewrite_codes(path, tmp_path / "bad.codes", payload=payload))


def test_empty_and_cut_headers_say_so(written, tmp_path):
    _, path = written
    (tmp_path / "empty.codes").write_bytes(b"")
    with pytest.raises(AudioInputError, match="empty"):
        load_codes(tmp_path / "empty.codes")
    (tmp_path / "cut.codes").write_bytes(path.read_bytes()[:40])
    with pytest.raises(AudioInputError, match="cut short"):
        load_codes(tmp_path / "cut.codes")
    (tmp_path / "list.codes").write_bytes(MAGIC + struct.pack(">I", 2) + b"[]")
    with pytest.raises(AudioInputError, match="not an object"):
        load_codes(tmp_path / "list.codes")


def test_a_format_1_file_without_a_checksum_is_still_read(written, tmp_path):
    """Format 1 (no checksum) is read with every other check, so a student's earlier encodings still decode."""
    codec, path = written
    old = rewrite_codes(path, tmp_path / "old.codes", format="course_lib.codes/1", payload_crc32=DELETE)
    loaded = load_codes(old)
    assert loaded.checksum is None and torch.equal(loaded.codes, load_codes(path).codes)
    check_codes_model(loaded, codec)
    with pytest.raises(AudioInputError, match="bytes follow"):  # its payload's length is still checked
        load_codes(rewrite_codes(old, tmp_path / "old_long.codes", payload=lambda payload: payload + b"\x00"))


def test_a_header_that_disagrees_with_the_model_it_names_is_refused(written, tmp_path):
    codec, path = written
    halved = load_codes(rewrite_codes(path, tmp_path / "halved.codes", sample_rate=8000, frame_rate=25.0))
    with pytest.raises(CheckpointError, match="sample_rate 8000 \\(file\\) vs 16000"):
        check_codes_model(halved, codec)
    eight_levels = rewrite_codes(  # a format-1 file (no CRC to update) with 8 levels of 4 bits x 5 frames
        path,
        tmp_path / "eight.codes",
        format="course_lib.codes/1",
        payload_crc32=DELETE,
        n_q=8,
        payload=lambda _: bytes(20),
    )
    with pytest.raises(CheckpointError, match="n_q 8 \\(file\\) vs at most 4"):
        check_codes_model(load_codes(eight_levels), codec)


def test_save_codes_refuses_what_load_codes_would_refuse(written, tmp_path):
    codec, _ = written
    codes = torch.zeros(4, 5, dtype=torch.long)
    for num_samples in (0, 5000):
        with pytest.raises(AudioInputError, match="num_samples|frames"):
            save_codes(tmp_path / "never.codes", codes, codec, num_samples)
    assert not (tmp_path / "never.codes").exists()
