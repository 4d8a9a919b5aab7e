// @ts-check
// The spectrum tab: the Hessian eigenvalue density of one checkpoint by stochastic Lanczos quadrature (the
// `spectrum` trait, lossviz/widget/research.py), log-density against eigenvalue, the top eigenvalues marked and
// the trace in the title. The trace builder is pure (node-tested).
import { plotIn } from "./dom.js";
import { PLOT_CONFIG, emptyNote } from "./plots.js";

/** @import { Ctx, View } from "./types" */

/** The `spectrum` trait (empty object before any Spectrum).
 * @typedef {{checkpoint: number, eigenvalues: number[], trace: number | null, trace_stderr: number | null,
 *   density_trace: number | null, nodes: number[], weights: number[], grid: number[], density: number[]}} Spectrum */

/** Densities below this fraction of the peak are drawn at it (a log axis has no zero). */
export const DENSITY_FLOOR = 1e-6;

/** True when the trait holds a spectrum.
 * @param {unknown} s @returns {s is Spectrum} */
export function isSpectrum(s) {
  return Boolean(s && typeof s === "object" && Array.isArray(/** @type {Spectrum} */ (s).grid) && /** @type {Spectrum} */ (s).grid.length > 0);
}

/** `values` with everything below `floor` × their maximum raised to it.
 * @param {readonly number[]} values @param {number} [floor] @returns {number[]} */
export function floored(values, floor = DENSITY_FLOOR) {
  const top = values.reduce((m, v) => (v > m ? v : m), 0);
  const lo = top > 0 ? top * floor : floor;
  return values.map((v) => (Number.isFinite(v) && v > lo ? v : lo));
}

/** Linear interpolation of (grid, values) at x (clamped to the grid's ends); grid ascending.
 * @param {readonly number[]} grid @param {readonly number[]} values @param {number} x @returns {number} */
export function valueAt(grid, values, x) {
  const n = grid.length;
  if (x <= grid[0]) return values[0];
  if (x >= grid[n - 1]) return values[n - 1];
  let lo = 0, hi = n - 1;
  while (hi - lo > 1) { const mid = (lo + hi) >> 1; if (grid[mid] <= x) lo = mid; else hi = mid; }
  const f = (x - grid[lo]) / (grid[hi] - grid[lo]);
  return values[lo] + f * (values[hi] - values[lo]);
}

/** @param {number | null | undefined} v @returns {string} */
const fmt = (v) => (typeof v === "number" && Number.isFinite(v) ? v.toPrecision(4) : "–");

/** The spectrum's traces and title: the smoothed density (floored) and a marker per top eigenvalue, at the
 * density's height there. null without a spectrum.
 * @param {unknown} sp @returns {{traces: object[], title: string} | null} */
export function spectrumPlot(sp) {
  if (!isSpectrum(sp)) return null;
  const y = floored(sp.density);
  const top = sp.eigenvalues.map((v) => valueAt(sp.grid, y, v));
  const traces = [
    { type: "scatter", mode: "lines", x: sp.grid, y, name: "density (SLQ)", line: { color: "#1f77b4", width: 1.5 },
      hovertemplate: "λ %{x:.4g}<br>density %{y:.3g}<extra></extra>" },
    { type: "scatter", mode: "markers+text", x: sp.eigenvalues, y: top, name: `top-${sp.eigenvalues.length} eigenvalues`,
      text: sp.eigenvalues.map((_v, i) => `λ${i + 1}`), textposition: sp.eigenvalues.map((_v, i) => (i % 2 ? "bottom center" : "top center")), textfont: { size: 9, color: "#d62728" },
      marker: { symbol: "triangle-down", size: 9, color: "#d62728" },
      hovertemplate: "%{text} = %{x:.5g}<extra></extra>" },
  ];
  const stderr = typeof sp.trace_stderr === "number" ? ` ± ${fmt(sp.trace_stderr)}` : "";
  const title = `checkpoint ${sp.checkpoint}: trace ${fmt(sp.trace)}${stderr} · λ1 ${fmt(sp.eigenvalues[0])}`;
  return { traces, title };
}

/** The spectrum view in its cell.
 * @param {HTMLElement} container @param {Ctx} ctx @param {() => unknown} read  the `spectrum` trait
 * @returns {View} */
export function createSpectrum(container, ctx, read) {
  const { Plotly } = ctx;
  const plot = plotIn(container, "spectrum");
  function render() {
    const p = spectrumPlot(read());
    const layout = { height: 200, width: container.clientWidth || 300, margin: { l: 46, r: 8, t: 24, b: 34 }, showlegend: false,
      uirevision: "spectrum", title: { text: p ? p.title : "Hessian spectrum", font: { size: 11 }, x: 0.02 },
      xaxis: { title: { text: "eigenvalue" } }, yaxis: { type: "log", title: { text: "density" }, exponentformat: "power" },
      annotations: p ? [] : [emptyNote("open a checkpoint, then Spectrum")] };
    Plotly.react(plot, p ? p.traces : [], layout, PLOT_CONFIG);
  }
  return { el: plot, render, destroy() { Plotly.purge(plot); } };
}
