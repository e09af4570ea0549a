"""The notebook runner and the HTML book (tools/notebooks.py); the book in a browser: tests/browser/test_book.py."""

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest
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
    notebook.metadata["language_info"] = {"name": "python"}
    nbformat.write(notebook, path)
    return path


def test_clean_drops_timings_and_widget_state(tmp_path):
    notebook = tools.clean(nbformat.read(make_notebook(tmp_path / "n.ipynb", "T"), as_version=4))
    assert "widgets" not in notebook.metadata
    assert all("execution" not in cell.metadata for cell in notebook.cells)
    assert notebook.metadata["kernelspec"]["name"] == "python3"


def test_table_of_contents_lists_the_chapters_then_the_assignments_as_their_own_part():
    toc = tools.table_of_contents(
        [Path("n/00_a.ipynb"), Path("n/01_b.ipynb")], [Path("a/01_codebooks/01_codebooks.ipynb")]
    )
    assert toc.index("notebooks/00_a") < toc.index("notebooks/01_b") < toc.index("caption: Assignments")
    assert toc.index("caption: Assignments") < toc.index("assignments/01_codebooks")
    assert "Assignments" not in tools.table_of_contents([Path("n/00_a.ipynb")], [])


@pytest.fixture(scope="module")
def small_book(tmp_path_factory) -> Path:
    """Two chapters (given out of order) and an assignment, built with Jupyter Book (about 10 s)."""
    folder = tmp_path_factory.mktemp("notebooks")
    second = make_notebook(folder / "01_b.ipynb", "Second")
    first = make_notebook(folder / "00_a.ipynb", "First")
    notebook = nbformat.read(first, as_version=4)
    notebook.cells[0].source += "\n\nThe rate is $R = \\log_2 K$ bits."
    # A widget's output: the view (needs a kernel) and its static version, as course_lib.widgets writes it.
    player = '<div>readout 0.25</div><audio controls src="data:audio/wav;base64,UklGRg=="></audio>'
    widget = new_output("display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "m"}})
    widget.data.update({"text/html": player, "text/plain": "VBox()"})
    notebook.cells.append(new_code_cell('print("new".upper())', outputs=[widget]))
    nbformat.write(notebook, first)
    task = make_notebook(folder / "01_codebooks.ipynb", "Assignment 1")
    out = tmp_path_factory.mktemp("build") / "book"
    assert tools.build_book(sorted([second, first]), out, run_first=False, assignments=[task]) == out / "index.html"
    return out


@pytest.mark.slow
def test_book_has_a_sidebar_in_lecture_order_then_the_assignments(small_book):
    page = (small_book / "notebooks" / "00_a.html").read_text()
    assert page.index('href="01_b.html"') < page.index('href="../assignments/01_codebooks.html"')
    assert "Text." in page and (small_book / "assignments" / "01_codebooks.html").exists()
    assert "url=intro.html" in (small_book / "index.html").read_text()  # the front page, with the contents
    assert (small_book / "search.html").exists() and (small_book / "searchindex.js").exists()


@pytest.mark.slow
def test_book_pages_link_their_notebook_and_show_its_outputs_unexecuted(small_book):
    page = (small_book / "notebooks" / "00_a.html").read_text()
    assert 'href="../_sources/notebooks/00_a.ipynb"' in page and (small_book / "_sources/notebooks/00_a.ipynb").exists()
    assert "readout 0.25" in page and 'src="data:audio/wav;base64,UklGRg=="' in page  # the static version, kept
    assert "NEW" not in page  # the committed output, not a fresh run's


@pytest.mark.slow
def test_book_loads_nothing_from_the_network(small_book):
    page = (small_book / "notebooks" / "00_a.html").read_text()
    assert r"\(R = \log_2 K\)" in page and (small_book / "_static" / "mathjax" / "MathJax.js").exists()
    assert 'src="../_static/mathjax/MathJax.js' in page
    remote = re.findall(r'<(?:script|link|img|iframe)[^>]*(?:src|href)="((?:https?:)?//[^"]*)"', page)
    assert not remote, remote
