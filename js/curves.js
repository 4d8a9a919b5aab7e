// @ts-check
// 1-D view (a 1-D surface and interpolation curves) and the metric view (train/test loss and accuracy
// against epoch per branch, with the selected checkpoints highlighted).
import { branchColor } from "./codecs.js";
import { plotIn } from "./dom.js";
import { PLOT_CONFIG, emptyNote } from "./plots.js";
import { timeLabel } from "./visibility.js";
import { connectionPlot } from "./connect.js";

/** @import { Checkpoints } from "./codecs.js" */
/** @import { Ctx, View } from "./types" */

/** One branch's values of a metric: rows of the table in epoch order, with their epochs, values and ids.
 * @typedef {{branch: number, rows: number[], x: number[], y: number[], ids: number[]}} Series */

/** Per-branch series of one metric against epoch, sorted by epoch, less the `hidden` checkpoints.
 * @param {Checkpoints} table @param {string} metric @param {Set<number>} [hidden] @returns {Series[]} */
export function metricSeries(table, metric, hidden) {
  const col = table.metrics[metric];
  if (!col) return [];
  /** @type {Map<number, number[]>} */
  const byBranch = new Map();
  for (let r = 0; r < table.n; r++) {
    if (hidden?.has(Math.round(table.ids[r]))) continue;
    const b = Math.round(table.branches[r]);
    const rs = byBranch.get(b);
    if (rs) rs.push(r); else byBranch.set(b, [r]);
  }
  const out = [];
  for (const [b, rs] of byBranch) {
    rs.sort((p, q) => table.epochs[p] - table.epochs[q]);
    out.push({ branch: b, rows: rs, x: rs.map((r) => table.epochs[r]), y: rs.map((r) => col[r]), ids: rs.map((r) => Math.round(table.ids[r])) });
  }
  return out;
}

/** The metric view in its cell.
 * @param {HTMLElement} container @param {Ctx} ctx @returns {View} */
export function createMetrics(container, ctx) {
  const { Plotly } = ctx;
  const plot = plotIn(container, "metrics");

  function render() {
    const s = ctx.state;
    const table = s.table;
    const time = timeLabel(table);
    /** @type {object[]} */
    const traces = [];
    const panels = [["loss", "xaxis", "yaxis"], ["acc", "xaxis2", "yaxis2"]];
    for (const [suffix, xa, ya] of panels) {
      for (const split of ["train", "test"]) {
        const m = `${split}_${suffix}`;
        for (const series of metricSeries(table, m, s.hiddenSet)) {
          traces.push({ type: "scatter", mode: "lines", x: series.x, y: series.y, xaxis: xa.replace("axis", ""), yaxis: ya.replace("axis", ""),
            line: { color: branchColor(series.branch), width: 1.5, dash: split === "test" ? "dot" : "solid" },
            name: `${m} · branch ${series.branch}`, customdata: series.ids,
            hovertemplate: `${m} %{y:.4g}<br>${time} %{x}<br>checkpoint %{customdata}<extra>branch ${series.branch}</extra>` });
          const sel = series.ids.map((id, i) => (s.selectionSet.has(id) ? i : -1)).filter((i) => i >= 0);
          if (sel.length) {
            traces.push({ type: "scatter", mode: "markers", x: sel.map((i) => series.x[i]), y: sel.map((i) => series.y[i]),
              xaxis: xa.replace("axis", ""), yaxis: ya.replace("axis", ""), marker: { size: 8, color: "rgba(0,0,0,0)", line: { width: 2, color: "#111" } },
              hoverinfo: "skip", name: "selected" });
          }
        }
      }
    }
    const height = container.clientHeight || 240;
    const layout = {
      height, margin: { l: 44, r: 8, t: 26, b: 36 }, showlegend: false, hovermode: "closest", uirevision: "metrics",
      title: { text: "metrics (solid train, dotted test)", font: { size: 12 }, x: 0.02 },
      xaxis: { domain: [0, 0.46], title: { text: time } }, yaxis: { title: { text: "loss" } },
      xaxis2: { domain: [0.56, 1], title: { text: time }, anchor: "y2" }, yaxis2: { title: { text: "acc %" }, anchor: "x2" },
    };
    Plotly.react(plot, traces, layout, PLOT_CONFIG);
  }
  return { el: plot, render, destroy() { Plotly.purge(plot); } };
}

/** The 1-D view in its cell.
 * @param {HTMLElement} container @param {Ctx} ctx @returns {View} */
export function createLines(container, ctx) {
  const { Plotly } = ctx;
  const plot = plotIn(container, "lines");
  /** what the last draw was of (the decoded traits, by identity) @type {unknown[]} */
  let drawnFrom = [];

  function render() {
    const s = ctx.state;
    const surf = s.surface;
    const metric = s.surfaceMetric;
    const height = container.clientHeight || 200;
    // a 2-D surface is not drawn here: a filling plane's pushes leave the view as it is
    const from = [surf && surf.ndim === 1 ? surf : null, s.curves, metric, s.connection, height];
    if (from.every((v, k) => v === drawnFrom[k])) return;
    drawnFrom = from;
    /** @type {object[]} */
    const traces = [];
    if (surf && surf.ndim === 1) {
      traces.push({ type: "scatter", mode: "lines", x: surf.x, y: surf.z.data, name: `${surf.metric} (1-D surface)`, line: { color: "#1f77b4", width: 2 } });
    }
    s.curves.forEach((c, i) => {
      const y = c.metrics[metric] ?? c.metrics[Object.keys(c.metrics)[0]];
      if (!y) return;
      traces.push({ type: "scatter", mode: "lines+markers", x: c.x, y, name: c.name, line: { color: branchColor(i + 3), width: 1.5 }, marker: { size: 5 } });
    });
    const conn = connectionPlot(s.connection, metric);  // a Connect's curve and line (js/connect.js)
    if (conn) traces.push(...conn.traces);
    const layout = { height, ...(conn ? { yaxis2: conn.yaxis2 } : {}), margin: { l: 44, r: 8, t: 26, b: 36 }, showlegend: traces.length > 1, legend: conn ? conn.legend : { font: { size: 9 } }, uirevision: "lines",
      title: { text: conn ? conn.title : `1-D: lines and interpolations (${metric})`, font: { size: 12 }, x: 0.02 }, xaxis: { title: { text: "α / step" } }, yaxis: { title: { text: metric } },
      annotations: traces.length ? [] : [emptyNote("no line yet: Interpolate two selected checkpoints")] };
    Plotly.react(plot, traces, layout, PLOT_CONFIG);
  }
  return { el: plot, render, destroy() { Plotly.purge(plot); } };
}
