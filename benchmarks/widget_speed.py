"""Explorer speed in a real browser (JupyterLab + Debian Chromium), with baselines measured in the same run.

1. Display -> first complete contour for the quickstart (notebooks/quickstart.ipynb when present, else the
   browser test's notebook), warm kernel-side caches (second restart-and-run-all), against the time to
   display a bare ipywidgets slider in the same notebook run.
2. A Ctrl-lasso over 50 000 checkpoints to the kernel's ``selection``, against the same lasso over 500.
3. Bytes sent for a 201 x 201 surface (buffers + JSON) against the same grid as a JSON list of numbers.

Run: ``.venv/bin/python benchmarks/widget_speed.py`` (needs the built bundle and /usr/bin/chromium).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from browser.helpers import browser, jupyter_lab  # noqa: E402

FAKE_SESSION = '''
import json, os, pathlib, time
import numpy as np
from types import SimpleNamespace
from lossviz.store import Checkpoint
from lossviz.widget import Explorer

class ManyPoints:
    """Just enough of a Session to show n checkpoints (a benchmark stand-in)."""
    def __init__(self, n):
        rng = np.random.default_rng(0)
        self.cks = [Checkpoint(id=i, parent=i - 1 if i else None, branch=i // 1000, kind="train", epoch=float(i % 1000),
                               step=i, metrics={"train_loss": float(v)}) for i, v in enumerate(rng.random(n))]
        self.coords = rng.random((n, 2))
        self.path = None
        self.defaults = {}
    def subscribe(self, cb): return lambda: None
    def checkpoints(self, branch=None): return self.cks
    def checkpoint(self, i): return self.cks[int(i)]
    def project(self, ids=None, method="layout", surface=None):
        return SimpleNamespace(ids=[c.id for c in self.cks], coords=self.coords, method=method, meta={})
    def distances(self, ids): return np.zeros((len(ids), len(ids)))

def probe_for(w, name):
    path = pathlib.Path(os.environ["LOSSVIZ_PROBE"]).with_name(name)
    def dump(change):
        path.write_text(json.dumps({"n": len(change["new"]), "t": time.time()}))
    w.observe(dump, names="selection")
'''


def make_notebook(path: Path, source_nb: Path) -> None:
    nb = nbformat.read(source_nb, as_version=4)
    cells = [nbformat.v4.new_code_cell("import ipywidgets\nipywidgets.IntSlider(description='baseline')")]
    cells += [c for c in nb.cells if c.cell_type == "code"]
    cells += [nbformat.v4.new_code_cell(FAKE_SESSION),
              nbformat.v4.new_code_cell("small = Explorer(ManyPoints(500), throttle=0.05, height=500)\n"
                                        "probe_for(small, 'small.json')\nsmall"),
              nbformat.v4.new_code_cell("big = Explorer(ManyPoints(50_000), throttle=0.05, height=500)\n"
                                        "probe_for(big, 'big.json')\nbig")]
    nb.cells = cells
    nbformat.write(nb, path)


def restart_and_run_all(page) -> float:
    page.wait_for_function("() => [...document.querySelectorAll('.jp-StatusBar-TextItem')]"
                           ".some((e) => /\\|\\s*Idle/.test(e.textContent))",
                           timeout=120_000)
    time.sleep(3)
    page.locator("div.lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator("li.lm-Menu-item[data-command='runmenu:restart-and-run-all']").click()
    page.locator(".jp-Dialog .jp-mod-accept").click()
    return time.perf_counter()


def lasso_time(page, explorer_index: int, probe: Path) -> tuple[float, int]:
    box = page.locator(".lossviz-explorer").nth(explorer_index)
    box.scroll_into_view_if_needed()
    plot = box.locator(".lv-scatter-plot")
    page.wait_for_timeout(500)
    bb = plot.bounding_box()
    # a lasso around the left half of the plot area
    x0, y0 = bb["x"] + 60, bb["y"] + 40
    x1, y1 = bb["x"] + bb["width"] / 2, bb["y"] + bb["height"] - 50
    page.keyboard.down("Control")
    page.mouse.move(x0, y0)
    page.mouse.down()
    for x, y in [(x1, y0), (x1, y1), (x0, y1), (x0, y0 + 2)]:
        page.mouse.move(x, y, steps=5)
    probe.unlink(missing_ok=True)
    t = time.time()
    page.mouse.up()
    page.keyboard.up("Control")
    deadline = t + 60
    while time.time() < deadline:
        if probe.exists():
            try:
                d = json.loads(probe.read_text())
                return d["t"] - t, d["n"]
            except (ValueError, KeyError):
                pass
        time.sleep(0.005)
    raise RuntimeError("the lasso never reached the kernel")


def surface_bytes() -> tuple[int, int, int]:
    from ipywidgets.widgets.widget import _remove_buffers

    from lossviz.widget import to_wire

    x = np.linspace(-1, 1, 201)
    z = np.add.outer(x**2, 0.5 * x**2)
    payload = {"x": x, "y": x, "z": z, "metric": "train_loss", "progress": 1.0, "done": z.size, "total": z.size}
    state, _, buffers = _remove_buffers({"surface": to_wire(payload)})
    json_part = len(json.dumps(state).encode())
    buf_part = sum(memoryview(b).nbytes for b in buffers)
    baseline = len(json.dumps({"x": x.tolist(), "y": x.tolist(), "z": z.tolist()}).encode())
    return json_part, buf_part, baseline


def main() -> None:
    source = ROOT / "notebooks" / "quickstart.ipynb"
    if not source.exists():
        source = ROOT / "tests" / "browser" / "explorer_e2e.ipynb"
    work = Path(tempfile.mkdtemp(prefix="lossviz-bench-"))
    make_notebook(work / "bench.ipynb", source)
    env = {"LOSSVIZ_E2E_DIR": str(work), "LOSSVIZ_PROBE": str(work / "probe.json"), "OMP_NUM_THREADS": "1"}
    try:
        with jupyter_lab(cwd=work, env=env) as url, browser() as b:
            page = b.new_page(viewport={"width": 1500, "height": 1000})
            page.goto(f"{url}/lab/tree/bench.ipynb", timeout=120_000)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            results = []
            for run in ("cold", "warm"):
                old = page.query_selector_all(".widget-slider, .lossviz-explorer")  # outputs of the previous run
                t0 = restart_and_run_all(page)
                for handle in old:
                    page.wait_for_function("(e) => !e.isConnected", arg=handle, timeout=240_000)
                page.wait_for_selector(".widget-slider", timeout=240_000)
                t_slider = time.perf_counter() - t0
                page.wait_for_selector(".lossviz-explorer .lv-cell-contour[data-state=complete]", timeout=240_000)
                t_contour = time.perf_counter() - t0
                page.wait_for_function("() => document.querySelectorAll('.lossviz-explorer').length === 3",
                                       timeout=240_000)
                page.wait_for_selector(".lossviz-explorer >> nth=2 >> .lv-scatter-plot .main-svg", timeout=240_000)
                results.append((run, t_slider, t_contour))
            for run, t_slider, t_contour in results:
                print(f"[{run}] restart-and-run-all -> baseline slider shown {t_slider:6.2f} s; "
                      f"Explorer's first complete contour {t_contour:6.2f} s; ratio {t_contour / t_slider:5.2f}x")
            page.wait_for_timeout(2000)
            t_small, n_small = lasso_time(page, 1, work / "small.json")
            t_big, n_big = lasso_time(page, 2, work / "big.json")
            print(f"lasso -> kernel selection: 500 points ({n_small} selected) {1000 * t_small:7.1f} ms; "
                  f"50 000 points ({n_big} selected) {1000 * t_big:7.1f} ms; ratio {t_big / t_small:5.1f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    j, bts, base = surface_bytes()
    print(f"201x201 surface: {bts} buffer bytes + {j} JSON bytes = {bts + j} bytes; as JSON lists {base} bytes; "
          f"ratio {(bts + j) / base:5.3f} ({base / (bts + j):4.1f}x fewer bytes)")


if __name__ == "__main__":
    main()
