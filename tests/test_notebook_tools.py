"""The notebook runner and the HTML book (tools/notebooks.py)."""

import importlib.util
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("notebook_tools", ROOT / "tools" / "notebooks.py")
tools = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tools)


def make_notebook(path: Path, title: str) -> Path:
    cell = new_code_cell("print(1)", outputs=[new_output("stream", name="stdout", text="1\n")])
    cell.metadata["execution"] = {"iopub.execute_input": "2026-01-01T00:00:00"}
    notebook = new_notebook(cells=[new_markdown_cell(f"# {title}\n\nText."), cell])
    notebook.metadata["widgets"] = {"state": {}}
    nbformat.write(notebook, path)
    return path


def test_book_has_an_index_in_lecture_order_and_navigation(tmp_path):
    paths = [make_notebook(tmp_path / "01_b.ipynb", "Second"), make_notebook(tmp_path / "00_a.ipynb", "First")]
    index = tools.build_book(sorted(paths), tmp_path / "book", run_first=False)
    text = index.read_text()
    assert text.index("First") < text.index("Second")
    first = (tmp_path / "book" / "00_a.html").read_text()
    assert first.count('href="01_b.html"') == 2  # "next" link above and below the chapter
    assert 'href="index.html"' in first and "Text." in first
    assert (tmp_path / "book" / "mathjax" / "MathJax.js").exists(), "equations must render offline"


def test_clean_drops_timings_and_widget_state(tmp_path):
    notebook = tools.clean(nbformat.read(make_notebook(tmp_path / "n.ipynb", "T"), as_version=4))
    assert "widgets" not in notebook.metadata
    assert all("execution" not in cell.metadata for cell in notebook.cells)
    assert notebook.metadata["kernelspec"]["name"] == "python3"


def test_book_has_a_page_per_assignment_after_the_chapters(tmp_path):
    chapter = make_notebook(tmp_path / "00_a.ipynb", "First")
    task = make_notebook(tmp_path / "01_codebooks.ipynb", "Assignment 1")
    index = tools.build_book([chapter], tmp_path / "book", run_first=False, assignments=[task]).read_text()
    assert index.index("First") < index.index("<h2>Assignments</h2>") < index.index("Assignment 1")
    page = (tmp_path / "book" / "assignment_01_codebooks.html").read_text()
    assert 'href="00_a.html"' in page and "Text." in page
