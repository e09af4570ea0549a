"""The course in a real browser: JupyterLab runs the notebooks in Chromium, players and widgets work.

Marked ``browser`` (``pytest -m browser`` runs only these); skipped with the reason where Chromium or
Playwright is missing. CI installs Debian's chromium, so CI runs them. Screenshots are written to
``build/screenshots/`` (the test artifacts).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from lab_server import CHROMIUM, CHROMIUM_ARGS, jupyterlab, open_notebook, run_all_cells

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="no Chromium at /usr/bin/chromium (apt install chromium)"),
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
NOTEBOOKS = ["00_audio_and_data.ipynb", "01_kmeans_vq.ipynb", "04_neural_codec.ipynb"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with jupyterlab(tmp_path_factory.mktemp("lab"), NOTEBOOKS) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    yield page
    page.evaluate("() => window.jupyterapp && window.jupyterapp.serviceManager.sessions.shutdownAll()")  # free the CPU
    context.close()


def run_notebook(page, lab: str, name: str) -> dict:
    open_notebook(page, lab.format(name=name))
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
    state = run_all_cells(page)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{Path(name).stem}.png")
    errors = [f"cell {i}: {c['source']!r}: {c['errors']}" for i, c in enumerate(state["cells"]) if c["errors"]]
    assert not errors, errors
    assert all(c["count"] is not None for c in state["cells"])
    return state


def check_players(page) -> int:
    """Every <audio> element on the page has an embedded source; returns how many there are."""
    sources = page.eval_on_selector_all("audio", "elements => elements.map(a => a.getAttribute('src') || '')")
    assert sources and all(s.startswith("data:audio/") for s in sources), sources[:3]
    return len(sources)


def test_notebook_00_runs_and_plays(page, lab):
    run_notebook(page, lab, "00_audio_and_data.ipynb")
    assert check_players(page) >= 4


def move_slider(page, readout_text: str, key: str) -> tuple[str, str]:
    """Press ``key`` on the slider of the widget whose readout contains ``readout_text``; the readouts before and after."""
    widget = page.locator(".widget-vbox", has=page.locator(".widget-html-content", has_text=readout_text)).first
    readout = widget.locator(".widget-html-content", has_text=readout_text).first
    handle = widget.locator(".widget-slider .noUi-handle").first
    handle.scroll_into_view_if_needed()
    before = readout.text_content()
    handle.focus()
    handle.press(key)
    page.wait_for_function(
        "([text, before]) => [...document.querySelectorAll('.widget-html-content')].some("
        "e => e.textContent.includes(text) && e.textContent !== before)",
        arg=[readout_text, before],
        timeout=120_000,
    )
    return before, readout.text_content()


def test_notebook_01_kmeans_widget_responds_to_its_slider(page, lab):
    run_notebook(page, lab, "01_kmeans_vq.ipynb")
    before, after = move_slider(page, "bits per vector", "ArrowRight")
    k_before, k_after = (int(re.search(r"K = (\d+)", text).group(1)) for text in (before, after))
    assert k_after == 2 * k_before, (before, after)
    page.screenshot(path=SCREENSHOTS / "01_kmeans_widget.png")


def test_notebook_04_runs_plays_and_its_bitrate_slider_redecodes(page, lab):
    run_notebook(page, lab, "04_neural_codec.ipynb")
    assert check_players(page) >= 6
    before, after = move_slider(page, "quantizers → bitrate", "ArrowLeft")
    kbps_before, kbps_after = (float(re.search(r"bitrate ([\d.]+) kbps", text).group(1)) for text in (before, after))
    assert (kbps_before, kbps_after) == (6.0, 5.5), (before, after)  # 12 → 11 levels of 0.5 kbps
    page.screenshot(path=SCREENSHOTS / "04_codec_widget.png")
