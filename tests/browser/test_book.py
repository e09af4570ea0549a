"""The HTML book (``make book``) in Chromium, opened from the disk as a student would, with no network.

The book is built once for this module from the committed notebooks and the assignments' student
versions (about 15-25 s on 2 busy cores), into a temporary folder. Every page is opened by its
``file://`` address; a request for anything outside the book (a CDN) is refused and fails the test.
A screenshot of a chapter goes to ``build/screenshots/``. Marked ``browser``; skipped with the reason where Chromium, Playwright or Jupyter Book is missing.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from lab_server import CHROMIUM, CHROMIUM_ARGS

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
pytest.importorskip("jupyter_book", reason="jupyter-book is not installed (pip install -e '.[dev]')")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="no Chromium at /usr/bin/chromium (apt install chromium)"),
]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "screenshots"


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> Path:
    spec = importlib.util.spec_from_file_location("notebook_tools", ROOT / "tools" / "notebooks.py")
    tools = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tools)
    out = tmp_path_factory.mktemp("book") / "book"
    chapters = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assignments = sorted((ROOT / "assignments" / "release").glob("*/*.ipynb"))
    tools.build_book(chapters, out, run_first=False, assignments=assignments)
    return out


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A page whose requests outside the book are refused and listed in ``page.remote_urls``; the files
    of the book it could not load are in ``page.missing_files``."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.remote_urls, page.missing_files = [], []

    def missed(request):  # a file that is there but may not be read (a fetch() from file://) is not missing
        path = unquote(urlparse(request.url).path)
        # MathJax's hidden MathML for screen readers asks for TeX fonts the package lacks (book/_config.yml)
        if request.url.startswith("file:") and not Path(path).exists() and "/mathjax/fonts/HTML-CSS/TeX/" not in path:
            page.missing_files.append(request.url)

    page.on("requestfailed", missed)

    def refuse(route):
        page.remote_urls.append(route.request.url)
        route.abort()

    context.route(re.compile(r"^(https?|wss?)://"), refuse)
    yield page
    context.close()


def test_a_chapter_renders_its_equations_offline(page, book):
    page.goto((book / "notebooks" / "04_neural_codec.html").as_uri())
    page.wait_for_function("() => window.MathJax && window.MathJax.isReady", timeout=60_000)
    # MathJax turns each \(...\) of the page into a math/tex script and the rendered .MathJax frame beside it.
    rendered = page.evaluate(
        """() => new Promise(done => MathJax.Hub.Queue(() => done({
            equations: document.querySelectorAll('.math.notranslate').length,  // Sphinx's; MathJax's own are span.math too
            typeset: document.querySelectorAll('script[type^="math/tex"]').length,
            frames: document.querySelectorAll('.MathJax, .MathJax_Display, .MathJax_CHTML, .MathJax_SVG').length,
            errors: Array.from(document.querySelectorAll('.MathJax_Error, merror')).map(e => e.textContent),
            message: (document.getElementById('MathJax_Message') || {}).textContent || ''})))"""
    )
    assert rendered["equations"] > 20 and rendered["typeset"] >= rendered["equations"], rendered
    assert rendered["frames"] >= rendered["typeset"] and not rendered["errors"], rendered
    assert "failed" not in rendered["message"] and not page.missing_files, (rendered, page.missing_files)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "book_04_neural_codec.png")
    # The sidebar lists every chapter, then the assignments as their own part; the page links its notebook.
    sidebar = page.locator(".bd-sidebar-primary")
    assert sidebar.locator("a.reference.internal").count() >= 15
    assert sidebar.get_by_text("Assignments (student versions)").count() == 1
    assert page.locator('a[href$="_sources/notebooks/04_neural_codec.ipynb"]').count() >= 1
    assert (book / "_sources" / "notebooks" / "04_neural_codec.ipynb").exists()
    assert not page.remote_urls and not page.missing_files, (page.remote_urls, page.missing_files)


def test_audio_players_have_their_clips_and_play(page, book):
    page.goto((book / "notebooks" / "00_audio_and_data.html").as_uri())
    sources = page.eval_on_selector_all("audio", "elements => elements.map(a => a.getAttribute('src') || '')")
    assert len(sources) >= 4 and all(s.startswith("data:audio/") for s in sources), [s[:40] for s in sources]
    duration = page.evaluate(
        """() => new Promise((done, fail) => { const a = document.querySelector('audio');
            a.addEventListener('loadedmetadata', () => done(a.duration)); a.addEventListener('error', () => fail(a.error.message));
            a.load(); })"""
    )
    assert duration > 0.1, f"the first player's clip lasts {duration} s"
    assert not page.remote_urls and not page.missing_files, (page.remote_urls, page.missing_files)


def test_search_finds_residual(page, book):
    page.goto((book / "search.html").as_uri() + "?q=residual")
    results = page.locator("#search-results ul.search li a")
    results.first.wait_for(timeout=30_000)
    pages = [href.split("#")[0] for href in results.evaluate_all("links => links.map(a => a.getAttribute('href'))")]
    assert "notebooks/04_neural_codec.html" in pages, pages
    assert not page.remote_urls and not page.missing_files, (page.remote_urls, page.missing_files)
