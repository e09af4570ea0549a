"""Execute the course's notebooks and render them into the HTML book.

    python tools/notebooks.py run notebooks/*.ipynb                 # re-execute, save outputs in place
    python tools/notebooks.py book notebooks/*.ipynb --out build/book [--execute] [--assignments A.ipynb ...]

``run`` keeps diffs small: execution timings, widget state and kernel details are dropped, so a
re-run changes only what the notebook printed or drew. ``book`` writes one page per notebook (in
file-name order, which is the lecture's order) and one per assignment (its student version), with
previous/next links, and an index page.
"""

from __future__ import annotations

import argparse
import html
import os
import shutil
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbconvert import HTMLExporter

TIMEOUT_PER_CELL = 600


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


def title_of(notebook: nbformat.NotebookNode, fallback: str) -> str:
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


def nav_bar(pages: list[tuple[str, str]], index: int) -> str:
    links = ['<a href="index.html">Contents</a>']
    if index > 0:
        links.insert(0, f'<a href="{pages[index - 1][0]}">← {html.escape(pages[index - 1][1])}</a>')
    if index < len(pages) - 1:
        links.append(f'<a href="{pages[index + 1][0]}">{html.escape(pages[index + 1][1])} →</a>')
    return '<nav style="font:14px sans-serif;padding:8px 16px;background:#f4f4f4">' + " | ".join(links) + "</nav>"


def build_book(paths: list[Path], out: Path, run_first: bool, assignments: list[Path] = ()) -> Path:
    """One page per chapter (executed first if ``run_first``), then one per assignment (as students get it)."""
    out.mkdir(parents=True, exist_ok=True)
    chapters = [execute(path) if run_first else nbformat.read(path, as_version=4) for path in paths]
    tasks = [nbformat.read(path, as_version=4) for path in assignments]  # student versions: never executed
    notebooks = chapters + tasks
    names = [path.stem + ".html" for path in paths] + [f"assignment_{path.stem}.html" for path in assignments]
    sources = list(paths) + list(assignments)
    pages = [(name, title_of(nb, path.stem)) for name, nb, path in zip(names, notebooks, sources, strict=True)]
    exporter = HTMLExporter(template_name="lab")
    exporter.mathjax_url = copy_mathjax(out)
    for i, notebook in enumerate(notebooks):
        body, _ = exporter.from_notebook_node(notebook)
        bar = nav_bar(pages, i)
        body = _insert_after_body_tag(body, bar).replace("</body>", f"{bar}</body>", 1)
        (out / pages[i][0]).write_text(body, encoding="utf-8")

    def listing(entries: list[tuple[str, str]], files: list[Path]) -> str:
        return "\n".join(
            f'<li><a href="{name}">{html.escape(title)}</a> <small>({html.escape(path.name)})</small></li>'
            for (name, title), path in zip(entries, files, strict=True)
        )

    graded = (
        "<h2>Assignments</h2><p>Graded with nbgrader: see <code>assignments/INSTRUCTORS.md</code>. Each page "
        f"shows the student version.</p><ol>{listing(pages[len(paths) :], list(assignments))}</ol>"
        if assignments
        else ""
    )
    index = out / "index.html"
    index.write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Audio-Level Music Generation</title></head>"
        "<body style='font:16px sans-serif;max-width:760px;margin:40px auto'>"
        "<h1>Audio-Level Music Generation</h1><p>The course's notebooks, executed at the tiny scale, "
        "in the lecture's order: from codebooks to diffusion.</p>"
        f"<ol start='0'>{listing(pages[: len(paths)], list(paths))}</ol>{graded}</body></html>",
        encoding="utf-8",
    )
    return index


def copy_mathjax(out: Path) -> str:
    """Ship MathJax inside the book so its equations render offline; fall back to the CDN."""
    try:
        import jupyter_server_mathjax
    except ImportError:
        print("jupyter-server-mathjax is not installed: the book's equations need the network.", file=sys.stderr)
        return "https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.7/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"
    source = Path(jupyter_server_mathjax.__file__).parent / "static"
    shutil.copytree(source, out / "mathjax", dirs_exist_ok=True)
    return "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"


def _insert_after_body_tag(page: str, fragment: str) -> str:
    start = page.find("<body")
    end = page.find(">", start) + 1 if start >= 0 else 0
    return page[:end] + fragment + page[end:]


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
