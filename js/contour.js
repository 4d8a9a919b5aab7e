// @ts-check
// Contour view of the current 2-D surface: filled contour, contour lines or heatmap; log scale, vmin/vmax,
// number of levels; the trajectory projected onto the plane (selected checkpoints highlighted), the centre,
// and critical points. While the surface is still filling (coarse to fine) cells not computed yet are drawn
// from the nearest computed one; computed cells that are NaN (diverged) stay gaps.
import { branchColor, rows } from "./codecs.js";
import { plotIn } from "./dom.js";
import { decimateGrid, fillNearest, log10Values, colourLimits, contourLevels } from "./grids.js";
import { branchLines } from "./scatter.js";
import { PLOT_CONFIG, colorBar, emptyNote } from "./plots.js";

/** @import { Decoded, Surface } from "./codecs.js" */
/** @import { Ctx, State, View } from "./types" */

/** @type {Record<string, {symbol: string, color: string, label: string}>} */
export const CRITICAL_STYLE = {
  minimum: { symbol: "triangle-down", color: "#00a651", label: "min" },
  maximum: { symbol: "triangle-up", color: "#d62728", label: "max" },
  saddle: { symbol: "x", color: "#ff7f0e", label: "saddle" },
};

/** Largest side drawn: a bigger grid is drawn every k-th row and column (the title says so), which keeps a
 * redraw of a 401 x 401 grid well under the 200 ms a browser frame may take. */
export const MAX_DRAWN_SIDE = 121;
/** ... and while it fills (redrawn several times a second), at most this many per side. */
export const MAX_FILLING_SIDE = 81;

/** Values as drawn: while incomplete, cells not computed yet are preview-filled (computed NaN cells, i.e.
 * diverged points, stay gaps: `surface.doneMask`), log10 when asked; a grid with a side over `maxSide` is
 * decimated (its axes too: `x`, `y`).
 * @param {Pick<Surface, "z" | "done" | "total" | "x"> & {y?: ArrayLike<number> | null, doneMask?: Uint8Array | null}} surface
 * @param {boolean | undefined} log @param {number} [maxSide]
 * @returns {Decoded & {x: ArrayLike<number>, y: ArrayLike<number>, stride: number}} */
export function displayValues(surface, log, maxSide = Infinity) {
  const [ny, nx] = surface.z.shape.length === 2 ? surface.z.shape : [1, surface.z.shape[0]];
  let v = surface.done < surface.total ? fillNearest(surface.z.data, nx, ny, surface.doneMask ?? null) : surface.z.data;
  if (log) v = log10Values(v);
  const ys = surface.y ?? [0];
  if (surface.z.shape.length !== 2 || Math.max(nx, ny) <= maxSide) return { data: v, shape: surface.z.shape, x: surface.x, y: ys, stride: 1 };
  const d = decimateGrid(v, nx, ny, surface.x, ys, maxSide);
  return { data: d.z, shape: [d.y.length, d.x.length], x: d.x, y: d.y, stride: d.stride };
}

/** The contour's title: metric and centre, "· N % computed" while filling, and for an adaptive surface
 * (interpolated between the points evaluated) a second, smaller line "adaptive: N of M points evaluated".
 * @param {Surface} surface @returns {string} */
export function surfaceTitle(surface) {
  const pct = Math.round(100 * surface.progress);
  let text = `${surface.metric} around checkpoint ${surface.center}${pct < 100 ? ` · ${pct} % computed` : ""}`;
  const a = surface.adaptive;
  if (a && a.n_evaluated !== null && a.n_evaluated !== undefined) {
    text += `<br><span style="font-size:10px">adaptive: ${a.n_evaluated} of ${a.total ?? surface.total} points evaluated, the rest interpolated</span>`;
  }
  return text;
}

/** The trajectory on the surface's plane (lifted onto the surface by `lift` in 3-D), and the selected
 * checkpoints. One path per branch (parent first, then its checkpoints by epoch: never one id-ordered line
 * across branches), in the branch's colour over a white casing, so it reads on dark and light colours alike.
 * @param {Surface} surface @param {State} state @param {((x: number, y: number) => number) | null} [lift]
 * @returns {object[]} */
export function trajectoryTraces(surface, state, lift = null) {
  const t = surface.trajectory ?? { ids: [], x: [], y: [] };
  if (!t.ids.length && !lift) return [];
  const table = state.table;
  /** @type {{ids: number[], xs: number[], ys: number[], rows: number[]}} */
  const pts = { ids: [], xs: [], ys: [], rows: [] };
  for (let k = 0; k < t.ids.length; k++) {
    const row = table.index.get(t.ids[k]);
    if (row === undefined || !Number.isFinite(t.x[k]) || !Number.isFinite(t.y[k])) continue;
    if (state.hiddenSet?.has(t.ids[k])) continue;  // hidden checkpoints leave the path too
    pts.ids.push(t.ids[k]); pts.xs.push(t.x[k]); pts.ys.push(t.y[k]); pts.rows.push(row);
  }
  const sel = state.selectionSet;
  const selK = pts.ids.map((id, i) => (sel.has(id) ? i : -1)).filter((i) => i >= 0);
  const lines = branchLines(table, pts);
  const many = lines.length > 40;
  /** @type {object[]} */
  const out = [];
  if (lift) {
    // three traces whatever the branches (one NaN-separated line, coloured per vertex): plotly replots a
    // WebGL scene from scratch when its number of traces changes, which costs a second in software GL
    /** @type {number[]} */
    const lx = [];
    /** @type {number[]} */
    const ly = [];
    /** @type {string[]} */
    const lc = [];
    for (const l of lines) {
      const c = many ? "#fff" : branchColor(l.branch);
      for (let i = 0; i < l.x.length; i++) { lx.push(l.x[i]); ly.push(l.y[i]); lc.push(c); }
      lx.push(NaN); ly.push(NaN); lc.push(c);
    }
    const lz = lx.map((xv, i) => (Number.isFinite(xv) ? lift(xv, ly[i]) : NaN));
    out.push({ type: "scatter3d", mode: "lines", x: lx, y: ly, z: lz, line: { color: lc, width: 5 }, connectgaps: false,
      hoverinfo: "skip", name: "branches" });
    const z = pts.xs.map((xv, i) => lift(xv, pts.ys[i]));
    out.push({ type: "scatter3d", mode: "markers", x: pts.xs, y: pts.ys, z, customdata: pts.ids, name: "trajectory",
      marker: { size: 2.5, color: pts.rows.map((r) => branchColor(table.branches[r])), line: { color: "#fff", width: 0.5 } },
      hovertemplate: "checkpoint %{customdata}<extra></extra>" });
    out.push({ type: "scatter3d", mode: "markers", x: selK.map((i) => pts.xs[i]), y: selK.map((i) => pts.ys[i]), z: selK.map((i) => z[i]),
      marker: { size: 6, color: "#e31a1c" }, name: "selected", hoverinfo: "skip" });
    return out;
  }
  for (const l of lines) {  // a white casing under each branch's path
    out.push({ type: "scatter", mode: "lines", x: l.x, y: l.y, line: { color: "rgba(255,255,255,0.9)", width: 4.5 }, hoverinfo: "skip", name: "casing" });
  }
  for (const l of lines) {
    out.push({ type: "scatter", mode: "lines", x: l.x, y: l.y, line: { color: many ? "#111" : branchColor(l.branch), width: 2 },
      hoverinfo: "skip", name: `branch ${l.branch}` });
  }
  out.push({ type: "scatter", mode: "markers", x: pts.xs, y: pts.ys, customdata: pts.ids, name: "trajectory",
    marker: { size: 6, color: pts.rows.map((r) => branchColor(table.branches[r])), line: { color: "#fff", width: 1.2 } },
    hovertemplate: "checkpoint %{customdata}<extra></extra>" });
  out.push({ type: "scatter", mode: "markers", x: selK.map((i) => pts.xs[i]), y: selK.map((i) => pts.ys[i]),
    marker: { size: 12, color: "rgba(0,0,0,0)", line: { width: 2.5, color: "#e31a1c" } }, name: "selected", hoverinfo: "skip" });
  return out;
}

/** The contour view in its cell.
 * @param {HTMLElement} container @param {Ctx} ctx @returns {View} */
export function createContour(container, ctx) {
  const { Plotly } = ctx;
  const plot = plotIn(container, "contour");

  function render() {
    const s = ctx.state;
    const surf = s.surface;
    const height = container.clientHeight || 340;
    const title = { text: "surface", font: { size: 12 }, x: 0.02 };
    const frame = { margin: { l: 48, r: 12, t: 28, b: 40 }, showlegend: false, height, uirevision: "contour" };
    const limits = s.options.limits;
    if (!surf || surf.ndim !== 2 || !limits) {
      const note = !surf ? "no surface yet: click a checkpoint, then Surface" : surf.ndim !== 2 ? "1-D surface: see the 1-D view" : "";
      Plotly.react(plot, [], { ...frame, title, annotations: note ? [emptyNote(note)] : [],
        xaxis: { title: { text: "direction 1" }, visible: false }, yaxis: { title: { text: "direction 2" }, visible: false } }, PLOT_CONFIG);
      container.dataset.state = "empty";
      return;
    }
    const v = s.view;
    const shown = displayValues(surf, v.log, surf.progress < 1 ? MAX_FILLING_SIDE : MAX_DRAWN_SIDE);
    const [lo, hi] = colourLimits(surf.z.data, { log: v.log, vmin: v.vmin, vmax: v.vmax });
    const z = rows(shown);
    const cbTitle = v.log ? `log10 ${surf.metric}` : surf.metric;
    const common = { x: Array.from(shown.x), y: Array.from(shown.y), z, zmin: lo, zmax: hi, zauto: false, colorscale: "Viridis",
      colorbar: colorBar(cbTitle), hovertemplate: "(%{x:.3f}, %{y:.3f}) %{z:.4g}<extra></extra>", name: surf.metric };
    let trace;
    // a big grid still filling is drawn as a heatmap (no contour paths to trace on every redraw)
    if (v.mode === "heatmap" || (surf.progress < 1 && surf.total > MAX_FILLING_SIDE * MAX_FILLING_SIDE)) {
      trace = { type: "heatmap", ...common };
    } else {
      trace = { type: "contour", ...common, autocontour: false, contours: { ...contourLevels(lo, hi, v.levels, limits), coloring: v.mode === "lines" ? "lines" : "fill", showlines: true },
        line: { width: v.mode === "lines" ? 1.5 : 0.5 } };
    }
    const traces = [trace, ...trajectoryTraces(surf, s)];
    traces.push({ type: "scatter", mode: "markers", x: [0], y: [0], marker: { symbol: "star", size: 14, color: "#e31a1c", line: { color: "#fff", width: 1 } },
      name: "centre", hovertemplate: `centre: checkpoint ${surf.center}<extra></extra>` });
    for (const [kind, st] of Object.entries(CRITICAL_STYLE)) {
      const pts = (s.showCritical ? surf.critical : []).filter((c) => c.kind === kind && c.x !== null && c.y !== null);
      if (!pts.length) continue;
      traces.push({ type: "scatter", mode: "markers+text", x: pts.map((c) => c.x), y: pts.map((c) => c.y), text: pts.map(() => st.label),
        textposition: "top center", textfont: { size: 10, color: st.color }, marker: { symbol: st.symbol, size: 10, color: st.color, line: { color: "#fff", width: 1 } },
        name: kind, hovertemplate: `${kind} %{x:.3f}, %{y:.3f}<extra></extra>` });
    }
    const pct = Math.round(100 * surf.progress);
    Plotly.react(plot, traces, {
      ...frame, margin: { ...frame.margin, t: surf.adaptive ? 42 : 28 },  // room for the title's second line
      title: { ...title, text: surfaceTitle(surf) + (shown.stride > 1 ? ` · drawn every ${shown.stride}th point` : "") },
      xaxis: { title: { text: surf.labels[0] ?? "direction 1" }, range: [surf.x[0], surf.x[surf.x.length - 1]] },
      yaxis: { title: { text: surf.labels[1] ?? "direction 2" }, range: [surf.y[0], surf.y[surf.y.length - 1]] },
    }, PLOT_CONFIG);
    container.dataset.state = pct < 100 ? "filling" : "complete";
    container.dataset.progress = String(surf.progress);
    container.dataset.adaptive = surf.adaptive ? String(surf.adaptive.n_evaluated) : "";
    container.dataset.drawn = `${shown.shape[1]}x${shown.shape[0]}`;
  }

  return { el: plot, render, destroy() { Plotly.purge(plot); } };
}
