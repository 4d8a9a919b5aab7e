"""Shared pieces of the browser tests: Debian Chromium through Playwright (never `playwright install`),
a static file server for the Jupyter-free harness, and a JupyterLab server."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
BUNDLE = ROOT / "src" / "lossviz" / "static" / "widget.js"
CHROMIUM = os.environ.get("LOSSVIZ_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def wait_for(fn, timeout: float = 60.0, interval: float = 0.1, what: str = "condition"):
    """``fn()``'s first truthy value within ``timeout`` seconds (an exception counts as not yet: an element
    not there yet, a file half-written); an AssertionError naming ``what`` and the last value otherwise."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = fn()
        except Exception as exc:  # noqa: BLE001
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last value: {last!r}")


def require_chromium() -> str:
    """The Chromium binary; fails (not skips) when it is missing, as the CI must install it."""
    path = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    assert path, (f"Chromium is needed for the browser tests and was not found at {CHROMIUM}: "
                  "install it (`apt-get install -y chromium`) or set LOSSVIZ_CHROMIUM")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def static_server(root: Path = ROOT):
    """Serve the repository over HTTP (ES modules do not load from file://)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    th = threading.Thread(target=server.serve_forever, daemon=True)
    th.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def browser():
    from playwright.sync_api import sync_playwright

    exe = require_chromium()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@contextlib.contextmanager
def jupyter_lab(cwd: Path = ROOT, timeout: float = 120.0, env: dict | None = None):
    """A JupyterLab server without token on a free port (kernels inherit ``env``); yields its base URL."""
    port = free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    log = (ARTIFACTS / "jupyterlab.log").open("w")
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.token=",
         "--ServerApp.password=", "--ServerApp.ip=127.0.0.1", "--allow-root", "--ServerApp.disable_check_xsrf=True",
         "--LabApp.news_url="],
        cwd=str(cwd), stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            assert proc.poll() is None, f"jupyter lab exited with {proc.returncode}; see {log.name}"
            try:
                with urllib.request.urlopen(f"{url}/lab", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.time() < deadline, f"jupyter lab did not answer on {url} within {timeout} s"
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def shot(page, name: str, element: str | None = None) -> Path:
    """A screenshot of the viewport (or of the ``element`` a selector names) as ``test-artifacts/<name>.png``."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    if element is None:
        page.screenshot(path=str(path), full_page=False)
    else:
        page.locator(element).screenshot(path=str(path))
    return path


@contextlib.contextmanager
def lab_notebook(chromium, notebook: Path, work: Path, viewport: tuple[int, int] = (1440, 900)):
    """A page of JupyterLab (started in ``work``) showing a copy of ``notebook`` (JupyterLab saves the
    notebook it runs: the repository's stays without outputs), once its kernel is idle. The notebook's
    observer writes the kernel's view to ``page.probe`` (:func:`kernel_view`); ``page.errors`` collects
    the page's errors."""
    probe = work / "probe.json"
    shutil.copy(notebook, work / notebook.name)
    env = {"LOSSVIZ_E2E_DIR": str(work), "LOSSVIZ_PROBE": str(probe), "OMP_NUM_THREADS": "1"}
    with jupyter_lab(cwd=work, env=env) as url:
        page = chromium.new_page(viewport={"width": viewport[0], "height": viewport[1]})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{url}/lab/tree/{notebook.name}", timeout=120_000)
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
        page.probe = probe
        page.errors = errors
        yield page


def kernel_view(page) -> dict:
    """The kernel's view, written by the notebook's observer to ``page.probe``."""
    import json

    return json.loads(Path(page.probe).read_text())


def pixel_of(page, ident):
    """The page pixel of checkpoint ``ident`` in the scatter, once the scatter has drawn it (a view the
    kernel just switched to may draw a frame later)."""
    page.wait_for_function("""(id) => {
        const box = document.querySelector('.lossviz-explorer').__lossviz;
        return box.views.scatter.pixelOf(id) != null;
    }""", arg=ident, timeout=30_000)
    return tuple(page.evaluate("""(id) => {
        const box = document.querySelector('.lossviz-explorer').__lossviz;
        const r = box.views.scatter.el.getBoundingClientRect();
        const p = box.views.scatter.pixelOf(id);
        return [r.left + p[0], r.top + p[1]];
    }""", ident))
