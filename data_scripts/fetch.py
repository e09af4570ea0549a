"""Fetch a real music dataset into ``$COURSE_DATA/<name>``, where ``course_lib.data.load_dataset`` finds it.

Usage::

    python data_scripts/fetch.py --list                         # the datasets, their subsets and sizes
    python data_scripts/fetch.py nsynth                         # NSynth's test split (about 0.35 GB)
    python data_scripts/fetch.py maestro --split test --accept-license
    python data_scripts/fetch.py fma --subset small --accept-license
    python data_scripts/fetch.py musiccaps --subset audio --accept-license --limit 200
    python data_scripts/fetch.py gtzan --accept-license --dest /big/disk   # then COURSE_DATA=/big/disk

Each dataset's manifest (``data_scripts/manifests/<name>.json``) lists its URLs and mirrors, sizes,
published checksums, license and citation. Downloads resume where they stopped (run the same
command again), are checked, and are extracted atomically; see ``course_lib/data/manifests.py``.
An error prints what went wrong and what to do, never a traceback.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

MANIFESTS = Path(__file__).resolve().parent / "manifests"
sys.path.insert(0, str(MANIFESTS.parents[1]))  # so the script also runs from a checkout without `pip install -e .`

from course_lib.data.manifests import fetch, human_size, load_manifest  # noqa: E402
from course_lib.errors import CourseError  # noqa: E402


def list_datasets(folder: Path) -> str:
    """One line per dataset and subset: name, description, download size."""
    lines = []
    for path in sorted(folder.glob("*.json")):
        manifest = load_manifest(path)
        lines.append(f"{manifest.name}: {manifest.title} ({manifest.license})")
        for name, subset in manifest.subsets.items():
            sizes = [f.approx_size or human_size(f.size or 0) for f in subset.files]
            if subset.zip_members is not None:
                sizes.append(f"part of {subset.zip_members.archive.approx_size}")
            default = " (default)" if name == manifest.default_subset else ""
            accept = " [needs --accept-license]" if subset.requires_acceptance else ""
            lines.append(f"  --subset {name}{default}: {subset.description}; download {' + '.join(sizes)}{accept}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 done, 1 failed, 130 interrupted)."""
    parser = argparse.ArgumentParser(
        prog="python data_scripts/fetch.py",
        description="Download a music dataset into $COURSE_DATA/NAME (resumable, checked, extracted atomically).",
    )
    parser.add_argument("name", nargs="?", help="nsynth, maestro, fma, musiccaps or gtzan (--list shows them)")
    parser.add_argument("--subset", "--split", dest="subset", help="which part to fetch (default: the manifest's)")
    parser.add_argument("--accept-license", action="store_true", help="accept the dataset's terms (printed first)")
    parser.add_argument("--dest", type=Path, help="folder that holds the datasets (default: $COURSE_DATA)")
    parser.add_argument("--keep-archives", action="store_true", help="keep the downloaded archives after extraction")
    parser.add_argument("--limit", type=int, help="MusicCaps audio: only the first N clips of the CSV")
    parser.add_argument("--yt-dlp", dest="yt_dlp", help="the command that runs yt-dlp (default: found on PATH)")
    parser.add_argument("--manifest", type=Path, help="use this manifest file (e.g. one listing your own mirror)")
    parser.add_argument("--retries", type=int, default=4, help="tries per URL after the first (default 4)")
    parser.add_argument("--list", action="store_true", help="list the datasets and their subsets")
    args = parser.parse_args(argv)
    try:
        if args.list:
            print(list_datasets(MANIFESTS))
            return 0
        if args.name is None and args.manifest is None:
            parser.print_usage(sys.stderr)
            print("error: name a dataset (python data_scripts/fetch.py --list shows them).", file=sys.stderr)
            return 2
        path = args.manifest or MANIFESTS / f"{args.name.lower()}.json"
        if not path.exists() and args.manifest is None:
            known = ", ".join(p.stem for p in sorted(MANIFESTS.glob("*.json")))
            print(f"error: unknown dataset {args.name!r}: use one of {known}.", file=sys.stderr)
            return 2
        manifest = load_manifest(path)
        fetch(
            manifest,
            args.subset,
            args.dest,
            accept_license=args.accept_license,
            keep_archives=args.keep_archives,
            limit=args.limit,
            yt_dlp=shlex.split(args.yt_dlp) if args.yt_dlp else None,
            retries=args.retries,
        )
    except CourseError as error:
        print(f"\nerror: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # a folder that cannot be created or written
        print(f"\nerror: {error}\nCheck that --dest (or $COURSE_DATA) is writable and has room.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to resume where it stopped.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
