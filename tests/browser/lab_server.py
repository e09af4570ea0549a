"""A JupyterLab server on 127.0.0.1 for the browser tests, and the Playwright calls that drive it.

The server runs on a copy of the notebooks (JupyterLab autosaves; the committed outputs must not
change), with a random token, a free port, its own config, settings and runtime folders (the
announcements pop-up disabled, so nothing covers the page; every cell rendered, not only those in
view) and ``COURSE_SCALE=tiny``. Chromium is Debian's
(``/usr/bin/chromium``): nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",  # the machine's network is closed: no update or sync calls
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def jupyterlab(root: Path, notebooks: list[str]) -> Iterator[str]:
    """Copy ``notebooks`` into ``root``/notebooks, start JupyterLab there and yield its base URL (with token)."""
    work = root / "notebooks"
    work.mkdir(parents=True)
    for name in notebooks:
        shutil.copy(NOTEBOOKS / name, work / name)
    config = root / "jupyter-config"
    (config / "labconfig").mkdir(parents=True)
    (config / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    settings = root / "lab-settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    # Render every cell, not only those in view (JupyterLab 4's default windowing), so that all players
    # and widgets are in the page.
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    token, port = secrets.token_hex(16), free_port()
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(root / "lab-settings"),
        "COURSE_SCALE": "tiny",
        "OMP_NUM_THREADS": "1",
        "MPLBACKEND": "agg",
    }
    command = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
        "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]  # fmt: skip
    log = (root / "jupyterlab.log").open("w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(f"{base}/api/status?token={token}", server, root / "jupyterlab.log")
        yield f"{base}/lab/tree/{{name}}?reset&token={token}"  # reset: a fresh workspace, no tabs of earlier tests
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _wait_until_up(url: str, server: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"JupyterLab did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


# JavaScript run in the page: the notebook model of the current tab, through the app JupyterLab exposes.
NOTEBOOK_STATE = """() => {
    const panel = window.jupyterapp.shell.currentWidget;
    if (!panel || !panel.content || !panel.sessionContext || !panel.sessionContext.session) return null;
    const cells = panel.content.model.cells, state = {kernel: panel.sessionContext.kernelDisplayStatus, cells: []};
    for (let i = 0; i < cells.length; i++) {
        const cell = cells.get(i);
        if (cell.type !== 'code') continue;
        const outputs = [];
        for (let j = 0; j < cell.outputs.length; j++) outputs.push(cell.outputs.get(j).toJSON());
        state.cells.push({count: cell.executionCount, source: cell.sharedModel.getSource().slice(0, 80),
                          errors: outputs.filter(o => o.output_type === 'error').map(o => o.ename + ': ' + o.evalue)});
    }
    return state;
}"""


def open_notebook(page, url: str, timeout_s: float = 120) -> None:
    """Open a notebook and wait until its kernel is idle."""
    page.goto(url)
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget", timeout=timeout_s * 1000)
    page.wait_for_function(
        f"() => {{ const s = ({NOTEBOOK_STATE})(); return s && s.kernel === 'idle'; }}", timeout=timeout_s * 1000
    )


def run_all_cells(page, timeout_s: float = 600) -> dict:
    """Run every cell through JupyterLab's own command and wait until each has run; return the state."""
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_function(
        f"""() => {{ const s = ({NOTEBOOK_STATE})();
            return s && s.kernel === 'idle' && s.cells.every(c => c.count !== null || c.errors.length) &&
                   (s.cells.some(c => c.errors.length) || s.cells.every(c => c.count !== null)); }}""",
        timeout=timeout_s * 1000,
        polling=1000,
    )
    return page.evaluate(NOTEBOOK_STATE)
