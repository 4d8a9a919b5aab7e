"""A filling contour's redraw, as the Explorer draws it against the way it drew it before (issue 14).

While a big grid fills, the contour view redraws the preview-filled values as a heatmap every 400 ms, and each
redraw is a whole plotly replot. In the Explorer harness a 201 x 201 surface fills in ``--frames`` pushes. After
each push, the figure the contour view drew is drawn again by plotly into two plot divs of the same size, in
turn:

- now: the view's figure as it is (the grid decimated every 4th point, evenly spaced, which plotly draws one
  pixel per cell; a colour bar that draws its tick labels as they are, ``plots.colorBar``);
- before (the baseline): the same figure with the former decimation (every 3rd point and the last, unevenly
  spaced: plotly draws a rectangle per cell on a canvas the size of the plot) and plotly's default colour bar
  (every tick label measured on every redraw).

Printed: the median milliseconds of ``Plotly.react`` for each, and before / now. ``--throttle`` slows the
page's CPU as a loaded machine does (Chrome DevTools' CPU throttling; default 3).

Run: ``.venv/bin/python benchmarks/widget_fill_redraw.py [--frames 10 --throttle 3]`` (needs the built bundle and
/usr/bin/chromium).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from browser.helpers import CHROMIUM_ARGS, require_chromium, static_server  # noqa: E402

N = 201
PUSH = """async ([n, k, frames]) => {
  const { encodeArray } = await import('/js/codecs.js');
  const xs = Array.from({ length: n }, (_, j) => -1 + 2 * j / (n - 1));
  const z = new Float32Array(n * n).fill(NaN), mask = new Uint8Array(n * n);
  const upto = Math.ceil(n * (k + 1) / (frames + 2));  // rows computed so far (never all: it is filling)
  for (let i = 0; i < upto; i++) for (let j = 0; j < n; j++) {
    z[i * n + j] = 0.2 + xs[j] ** 2 + 2 * xs[i] ** 2 + 0.3 * Math.sin(9 * xs[j]); mask[i * n + j] = 1; }
  window.model.kernelSet({ surface: { x: encodeArray(xs), y: encodeArray(xs), z: encodeArray(z, [n, n]),
    done_mask: encodeArray(mask, [n, n], "uint8"), metric: "train_loss", metrics: ["train_loss"],
    progress: upto / n, done: upto * n, total: n * n, center: 3, critical: [], meta: {}, job: 9 } });
  window.__filled = { xs, z, mask, progress: String(upto / n) };
}"""
DRAWN = "(p) => document.querySelector('.lv-cell-contour').dataset.progress === p"
REDRAW = """async () => {
  const { fillNearest } = await import('/js/grids.js');
  const L = document.querySelector('.lossviz-explorer').__lossviz;
  const Plotly = L.ctx.Plotly;
  const shown = document.querySelector('.lv-contour-plot');
  const size = shown.getBoundingClientRect();
  const divs = window.__divs ?? (window.__divs = ['now', 'before'].map(() => {
    const d = document.createElement('div');
    d.style.width = `${size.width}px`; d.style.height = `${size.height}px`;
    document.body.append(d); return d; }));
  const data = shown.data.map((t) => ({ ...t })), layout = { ...shown.layout };
  // the former decimation: every 3rd row and column and the last ones, of the preview-filled grid
  const { xs, z, mask } = window.__filled, n = xs.length;
  const v = fillNearest(z, n, n, mask);
  const picks = [];
  for (let i = 0; i < n; i += 3) picks.push(i);
  if (picks[picks.length - 1] !== n - 1) picks.push(n - 1);
  const before = data.map((t) => ({ ...t }));
  before[0].x = picks.map((j) => xs[j]); before[0].y = picks.map((i) => xs[i]);
  before[0].z = picks.map((i) => picks.map((j) => v[i * n + j]));
  const { ticklabeloverflow, ...plotlyDefault } = data[0].colorbar;
  before[0].colorbar = plotlyDefault;
  const ms = {};
  for (const [name, traces, div] of [['now', data, divs[0]], ['before', before, divs[1]]]) {
    await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
    const t0 = performance.now();
    Plotly.react(div, traces, { ...layout }, { displayModeBar: false });
    ms[name] = performance.now() - t0;
  }
  ms.drawn = shown.parentElement.dataset.drawn;
  return ms;
}"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=10, help="pushes of the filling surface (default 10)")
    ap.add_argument("--throttle", type=float, default=3.0, help="CPU slow-down factor of the page (default 3)")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    now, before, drawn = [], [], set()
    with static_server() as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=require_chromium(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1320, "height": 900})
        page.goto(f"{url}/tests/browser/harness.html?surface=0")
        page.add_style_tag(content="body { width: 1200px !important; }")
        page.wait_for_function("window.harnessReady === true", timeout=60_000)
        page.context.new_cdp_session(page).send("Emulation.setCPUThrottlingRate", {"rate": args.throttle})
        for k in range(args.frames):
            page.evaluate(PUSH, [N, k, args.frames])
            page.wait_for_function(DRAWN, arg=page.evaluate("() => window.__filled.progress"), timeout=60_000)
            ms = page.evaluate(REDRAW)
            if k:  # the first draw of each div builds its plot: not a redraw
                now.append(ms["now"])
                before.append(ms["before"])
            drawn.add(ms["drawn"])
            print(f"push {k + 1}: now {ms['now']:.0f} ms, before {ms['before']:.0f} ms (drawn {ms['drawn']})",
                  flush=True)
        browser.close()
    a, b = statistics.median(now), statistics.median(before)
    print(f"filling {N} x {N} contour redraw at {args.throttle:g}x CPU throttling (median of {len(now)}): "
          f"now {a:.0f} ms, before {b:.0f} ms; before / now = {b / max(a, 1e-9):.2f}x "
          f"(drawn {', '.join(sorted(drawn))})")


if __name__ == "__main__":
    main()
