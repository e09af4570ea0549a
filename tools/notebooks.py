"""Execute the course's notebooks and render them into the HTML book.

    python tools/notebooks.py run notebooks/*.ipynb                 # re-execute, save outputs in place
    python tools/notebooks.py book notebooks/*.ipynb --out build/book [--execute] [--assignments A.ipynb ...]

``run`` keeps diffs small: execution timings, widget state and kernel details are dropped, so a
re-run changes only what the notebook printed or drew. ``book`` builds the HTML book with Jupyter
Book 1 (Sphinx, sphinx-book-theme, myst-nb; configured in ``book/``): a page per notebook in file-name
order (the lecture's order), then a part with a page per assignment (its student version), with a
sidebar, search, MathJax shipped inside the book and a download button for each page's notebook.
It shows the outputs the notebooks hold (``--execute`` runs them first, without saving them in place).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

TIMEOUT_PER_CELL = 600
BOOK_CONFIG = Path(__file__).resolve().parents[1] / "book"  # _config.yml and intro.md


def execute(path: Path) -> nbformat.NotebookNode:
    """Run every cell of ``path`` in a fresh kernel, in the notebook's folder, at the current scale."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=TIMEOUT_PER_CELL, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    started = time.perf_counter()
    client.execute()
    print(f"{path.name}: executed in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return clean(notebook)


def clean(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop what changes on every run without changing what the notebook shows."""
    notebook.metadata.pop("widgets", None)
    notebook.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    notebook.metadata.get("language_info", {}).pop("version", None)
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
        for output in cell.get("outputs", []):
            output.get("metadata", {}).pop("execution", None)
    return notebook


def build_book(paths: list[Path], out: Path, run_first: bool, assignments: list[Path] = ()) -> Path:
    """Build the Jupyter Book in ``out``: the chapters (executed first if ``run_first``), then the assignments.

    The pages show the outputs the notebooks hold: the book tool never executes them (``book/_config.yml``).
    Its sources are staged next to ``out`` (``build/book-source/`` for ``build/book/``), so that the
    executed chapters of ``make course`` never overwrite the committed ones. Returns ``out/index.html``.
    """
    from jupyter_book.sphinx import build_sphinx  # the dev extra; `run` works without it

    source = out.with_name(out.name + "-source")
    for folder in ("notebooks", "assignments"):
        shutil.rmtree(source / folder, ignore_errors=True)
        (source / folder).mkdir(parents=True)
    for name in ("_config.yml", "intro.md"):
        shutil.copy(BOOK_CONFIG / name, source / name)
    for path in paths:
        if run_first:
            nbformat.write(execute(path), source / "notebooks" / path.name)
        else:
            shutil.copy2(path, source / "notebooks" / path.name)  # kept mtimes: Sphinx re-reads only changed ones
    for path in assignments:  # student versions: never executed
        shutil.copy2(path, source / "assignments" / path.name)
    (source / "_toc.yml").write_text(table_of_contents(paths, assignments), encoding="utf-8")
    copy_mathjax(source / "_mathjax")
    started = time.perf_counter()
    status = build_sphinx(  # what `jupyter-book build` calls, with build/book/ as the output folder
        source,
        out,
        noconfig=True,
        path_config=source / "_config.yml",
        confoverrides={"external_toc_path": "_toc.yml", "latex_individualpages": False},
        doctreedir=source / ".doctrees",
        quiet=True,
    )
    if status != 0:
        raise SystemExit(f"book: Sphinx failed ({status}); its messages are above")
    print(f"book: built in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return out / "index.html"


def table_of_contents(paths: list[Path], assignments: list[Path]) -> str:
    """The book's ``_toc.yml``: the introduction, the chapters in lecture order, the assignments as their own part."""
    lines = ["format: jb-book", "root: intro", "parts:", "  - caption: Chapters", "    chapters:"]
    lines += [f"      - file: notebooks/{path.stem}" for path in paths]
    if assignments:
        lines += ["  - caption: Assignments (student versions)", "    chapters:"]
        lines += [f"      - file: assignments/{path.stem}" for path in assignments]
    return "\n".join(lines) + "\n"


def copy_mathjax(static: Path) -> None:
    """Ship MathJax inside the book (jupyter-server-mathjax's copy) so that its equations render offline.

    Sphinx copies ``static`` into the book's ``_static/``. Not the source's ``_static/`` itself: Jupyter Book
    would load each of MathJax's 400 scripts on every page.
    """
    import jupyter_server_mathjax

    shutil.copytree(Path(jupyter_server_mathjax.__file__).parent / "static", static / "mathjax", dirs_exist_ok=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute notebooks and save them in place")
    run.add_argument("paths", nargs="+", type=Path)
    book = sub.add_parser("book", help="render notebooks into an HTML book")
    book.add_argument("paths", nargs="+", type=Path)
    book.add_argument("--out", type=Path, default=Path("build/book"))
    book.add_argument("--execute", action="store_true", help="execute each notebook first (not saved in place)")
    book.add_argument("--assignments", nargs="*", type=Path, default=[], help="assignment notebooks, one page each")
    args = parser.parse_args()
    os.environ.setdefault("COURSE_SCALE", "tiny")
    paths = sorted(args.paths)
    if args.command == "run":
        for path in paths:
            nbformat.write(execute(path), path)
    else:
        print(f"book: {build_book(paths, args.out, args.execute, sorted(args.assignments))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
