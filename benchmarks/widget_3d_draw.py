"""The longest main-thread task of the 3-D view's first surface draw, warm scene against a cold one (issue 14).

The first draw of a WebGL scene compiles its shaders; in software GL (Debian's headless Chromium with no GPU)
the page waits for that at the next frame's commit. The Explorer's 3-D view draws a hidden warm-up scene when
it opens (js/surface3d.js), so its first surface finds the shaders compiled. Each repeat, interleaved:

- warm: the Explorer harness with no surface, once its warm-up is drawn; then a 401 x 401 surface arrives (the
  tasks from the 3-D view's draw on: the contour's draw comes first, in a frame of its own);
- cold (the baseline): the same figure (the view's own ``sceneFigure``) drawn by plotly into a new plot div.

Printed: the longest task of each draw, its median over the repeats, and cold / warm.

Run: ``.venv/bin/python benchmarks/widget_3d_draw.py [--repeats 5]`` (needs the built bundle and /usr/bin/chromium).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from browser.helpers import CHROMIUM_ARGS, require_chromium, static_server  # noqa: E402

OBSERVE = """() => { window.__tasks = []; window.__obs = new PerformanceObserver((l) => {
    for (const e of l.getEntries()) window.__tasks.push([e.startTime, e.duration]); });
  window.__obs.observe({ type: "longtask" }); }"""
SETTLE = "() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(r, 600))))"
# the tasks from the 3-D view's draw on (the Explorer draws the new surface's contour first, in a frame of its own)
STOP = """(since) => { window.__obs.disconnect();
  return Math.max(0, ...window.__tasks.filter(([t]) => t >= since).map(([, d]) => d)); }"""
SINCE_3D = """() => { const t = document.querySelector('.lossviz-explorer').__lossviz.timings;
  return t.filter(([name]) => name === 'surface3d').pop()[2] - 1; }"""
SURFACE = """async (job) => {
  const { encodeArray, decodeSurface } = await import('/js/codecs.js');
  const n = 401, xs = Array.from({ length: n }, (_, j) => -1 + 2 * j / (n - 1));
  const z = new Float32Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++)
    z[i * n + j] = 0.2 + xs[j] ** 2 + 2 * xs[i] ** 2 + 0.3 * Math.sin(9 * xs[j]);
  const wire = { x: encodeArray(xs), y: encodeArray(xs), z: encodeArray(z, [n, n]), metric: "train_loss",
    metrics: ["train_loss"], progress: 1, done: n * n, total: n * n, center: 3, critical: [], meta: {}, job };
  window.__wire = wire; window.__surface = decodeSurface(wire);
}"""
WARM_READY = """() => { const el = document.querySelector('.lv-surface3d-plot');
  return el._fullLayout && el._fullLayout.scene && el.data.length === 4 && el.data[0].visible !== false
    && el.data[1].x.length === 0; }"""  # the last warm-up figure (no trajectory) is drawn
COLD = """async () => {
  const { sceneFigure } = await import('/js/surface3d.js');
  const L = document.querySelector('.lossviz-explorer').__lossviz;
  const fig = sceneFigure(window.__surface, L.ctx.state, 241);
  const div = document.createElement('div'); div.style.width = '403px';
  document.body.prepend(div);
  await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  L.ctx.Plotly.react(div, fig.traces, fig.layout, { displayModeBar: false, plotGlPixelRatio: 1 });
}"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    warm, cold = [], []
    with static_server() as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=require_chromium(), args=CHROMIUM_ARGS)
        for r in range(args.repeats):
            for kind in ("warm", "cold"):
                page = browser.new_page(viewport={"width": 1320, "height": 900})
                page.goto(f"{url}/tests/browser/harness.html?surface=0")
                page.add_style_tag(content="body { width: 1200px !important; }")
                page.wait_for_function("window.harnessReady === true", timeout=60_000)
                page.wait_for_function(WARM_READY, timeout=60_000)
                page.evaluate(SETTLE)
                page.evaluate(SURFACE, 100 + r)
                page.evaluate(OBSERVE)
                if kind == "warm":
                    page.evaluate("() => window.model.kernelSet({ surface: window.__wire })")
                    page.wait_for_selector(".lv-cell-3d[data-state=complete]", timeout=60_000)
                else:
                    page.evaluate(COLD)
                page.evaluate(SETTLE)
                since = page.evaluate(SINCE_3D) if kind == "warm" else 0
                (warm if kind == "warm" else cold).append(page.evaluate(STOP, since))
                page.close()
            print(f"repeat {r + 1}: warm {warm[-1]:.0f} ms, cold {cold[-1]:.0f} ms", flush=True)
        browser.close()
    w, c = statistics.median(warm), statistics.median(cold)
    print(f"longest task of the first 3-D draw (median of {args.repeats}): warm scene {w:.0f} ms, "
          f"cold scene {c:.0f} ms; cold / warm = {c / max(w, 1):.2f}x")


if __name__ == "__main__":
    main()
