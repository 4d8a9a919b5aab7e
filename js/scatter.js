// @ts-check
// Trajectory scatter: one point per checkpoint at its projected coordinates, lines from each branch's first
// point to its parent, colour by branch (or a metric). Gestures are ours, not plotly's (dragmode false):
// drag = brush (points within 8 px of the path), Ctrl/Cmd+drag = lasso, Alt+either = deselect,
// Shift+drag = pan, wheel = zoom around the cursor, click = open the checkpoint, double click = reset view.
import { branchColor, fmt, idAt } from "./codecs.js";
import {
  brushHits, lassoHits, gestureFor, applySelection, toPixel, toData, zoomRange, panRange, nearestPoint, BRUSH_RADIUS_PX,
} from "./selection.js";
import { el, plotIn, svg } from "./dom.js";
import { colorBar } from "./plots.js";
import { outlierMarks, timeLabel, withId } from "./visibility.js";

/** @import { Checkpoints, Projection } from "./codecs.js" */
/** @import { Pixel, SelectionMode } from "./selection.js" */
/** @import { Ctx, View } from "./types" */

/** The placed checkpoints: point k is checkpoint ids[k] (table row rows[k]) at (xs[k], ys[k]).
 * @typedef {{ids: number[], xs: number[], ys: number[], rows: number[]}} Points */

/** The plot area in pixels (left, top, width, height) and the axis ranges shown.
 * @typedef {{l: number, t: number, w: number, h: number, xr: number[], yr: number[]}} PlotBox */

const GL_THRESHOLD = 4000; // above this many points, draw with WebGL (scattergl)
const DOUBLE_CLICK_MS = 250; // a click opens a checkpoint this long after it, unless it was a double click's first
const LEGEND_MAX = 12; // branches named in the legend (then "+ N more")

/** The layout view's lane ticks: each lane (a whole y) named by the branch drawn in it, so lanes read as
 * the branches' own numbers (not 0..n-1).
 * @param {Checkpoints} table @param {Points} pts @returns {{tickvals: number[], ticktext: string[]} | {dtick: number}} */
export function laneTicks(table, pts) {
  /** @type {Map<number, number>} */
  const lanes = new Map();
  for (let k = 0; k < pts.ids.length; k++) {
    const lane = Math.round(pts.ys[k]);
    if (!lanes.has(lane)) lanes.set(lane, Math.round(table.branches[pts.rows[k]]));
  }
  if (!lanes.size || lanes.size > 40) return { dtick: 1 };
  const vals = [...lanes.keys()].sort((a, b) => a - b);
  return { tickvals: vals, ticktext: vals.map((v) => String(lanes.get(v))) };
}

/** The branches of the table, in order, with their checkpoint counts.
 * @param {Checkpoints} table @returns {[number, number][]} */
export function branchCounts(table) {
  /** @type {Map<number, number>} */
  const n = new Map();
  for (let r = 0; r < table.n; r++) { const b = Math.round(table.branches[r]); n.set(b, (n.get(b) ?? 0) + 1); }
  return [...n.entries()].sort((a, b) => a[0] - b[0]);
}

/** Points of the scatter: rows of the table that the projection placed, in projection order, less the
 * `hidden` ids.
 * @param {Checkpoints} table @param {Projection} projection @param {Set<number>} [hidden] @returns {Points} */
export function scatterPoints(table, projection, hidden) {
  /** @type {Points} */
  const pts = { ids: [], xs: [], ys: [], rows: [] };
  for (let k = 0; k < projection.ids.length; k++) {
    const row = table.index.get(projection.ids[k]);
    if (row === undefined || !Number.isFinite(projection.x[k]) || !Number.isFinite(projection.y[k])) continue;
    if (hidden?.has(projection.ids[k])) continue;
    pts.ids.push(projection.ids[k]); pts.xs.push(projection.x[k]); pts.ys.push(projection.y[k]); pts.rows.push(row);
  }
  return pts;
}

/** Line segments per branch (by branch number): parent -> the branch's points in epoch order.
 * @param {Checkpoints} table @param {Points} pts @returns {{branch: number, x: number[], y: number[]}[]} */
export function branchLines(table, pts) {
  const byId = new Map(pts.ids.map((id, k) => [id, k]));
  /** @type {Map<number, number[]>} */
  const branches = new Map();
  for (let k = 0; k < pts.ids.length; k++) {
    const b = Math.round(table.branches[pts.rows[k]]);
    const ks = branches.get(b);
    if (ks) ks.push(k); else branches.set(b, [k]);
  }
  const lines = [];
  for (const [b, ks] of branches) {
    ks.sort((p, q) => table.epochs[pts.rows[p]] - table.epochs[pts.rows[q]] || pts.ids[p] - pts.ids[q]);
    /** @type {number[]} */
    const x = [], y = [];
    const first = ks[0];
    const parent = idAt(table.parents, pts.rows[first]);
    const pk = parent === null ? undefined : byId.get(parent);
    if (pk !== undefined) {
      x.push(pts.xs[pk]); y.push(pts.ys[pk]);
    }
    for (const k of ks) { x.push(pts.xs[k]); y.push(pts.ys[k]); }
    lines.push({ branch: b, x, y });
  }
  return lines.sort((p, q) => p.branch - q.branch);
}

/** [min, max] of the finite values widened by 6 % on each side (±0.5 around a single value).
 * @param {Iterable<number>} values @returns {[number, number]} */
export function paddedRange(values) {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) if (Number.isFinite(v)) { if (v < lo) lo = v; if (v > hi) hi = v; }
  if (!(lo <= hi)) return [0, 1];
  const pad = hi > lo ? 0.06 * (hi - lo) : 0.5;
  return [lo - pad, hi + pad];
}

/** The axis titles: the layout's time (epoch or step) and lanes; the kernel's labels when it sent them
 * ("PC1: 91.8 %"); else the method's names.
 * @param {Projection} projection @param {string} [time] @returns {[string, string]} */
export function axisTitles(projection, time = "epoch") {
  const m = projection.method;
  if (m === "layout") return [time, "branch (lane)"];
  if (projection.labels?.length === 2) return [projection.labels[0], projection.labels[1]];
  if (m === "pca") {
    const r = /** @type {unknown[] | undefined} */ (projection.meta?.explained_variance_ratio);
    /** @param {unknown} v */
    const pct = (v) => (typeof v === "number" ? ` (${(100 * v).toFixed(1)} %)` : "");
    return [`PC 1${pct(r?.[0])}`, `PC 2${pct(r?.[1])}`];
  }
  if (m === "tsne") return ["t-SNE 1", "t-SNE 2"];
  return ["direction 1", "direction 2"];
}

/** The colour scale's [lo, hi] over the finite values (outliers are left out by the caller).
 * @param {Iterable<number>} values */
export function metricColour(values) {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) if (Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  return { lo: lo <= hi ? lo : 0, hi: lo <= hi ? hi : 1 };
}

/** The hover card of a checkpoint: id, kind, branch, epoch, parent, status, metrics, scalar hyperparameters.
 * @param {Checkpoints} table @param {number} row @returns {string} */
export function hoverCardHtml(table, row) {
  const id = Math.round(table.ids[row]);
  const parent = idAt(table.parents, row);
  /** @type {Record<string, unknown>} */
  const hp = table.hparams[row] ?? {};
  const lines = [
    `<b>checkpoint ${id}</b> · ${table.kinds[row]} · branch ${Math.round(table.branches[row])}`,
    `${timeLabel(table)} ${fmt(table.epochs[row])}${parent !== null ? ` · parent ${parent}` : ""}${table.status[row] && table.status[row] !== "ok" ? ` · <span class="lv-bad">${table.status[row]}</span>` : ""}`,
  ];
  const metrics = table.metricNames.map((m) => `${m} ${fmt(table.metrics[m][row])}`);
  if (metrics.length) lines.push(metrics.join(" · "));
  const hps = Object.entries(hp).filter(([, v]) => v !== null && typeof v !== "object").map(([k, v]) => `${k} ${fmt(v)}`);
  const schedule = /** @type {{name?: string} | null | undefined} */ (hp.schedule);
  const sched = schedule && typeof schedule === "object" ? `schedule ${schedule.name ?? ""}` : null;
  if (sched) hps.push(sched);
  if (hps.length) lines.push(`<span class="lv-muted">${hps.join(" · ")}</span>`);
  return lines.join("<br>");
}

/** The trajectory view in its cell, with its gestures.
 * @param {HTMLElement} container @param {Ctx} ctx
 * @returns {View & {pixelOf(id: number): Pixel | null, renderLegend(box: HTMLElement): void,
 *   viewRanges(): {method: string, x: number[], y: number[]} | null, restoreRanges(r: {method: string, x: number[], y: number[]}): void}} */
export function createScatter(container, ctx) {
  const { Plotly } = ctx;
  container.classList.add("lv-scatter");
  const plot = plotIn(container, "scatter");
  const path = svg("path", { class: "lv-gesture" });
  const overlay = svg("svg", { class: "lv-overlay" }, path);
  const card = el("div", { class: "lv-card" });
  card.hidden = true;
  container.append(overlay, card);

  /** @type {Points} */
  let pts = { ids: [], xs: [], ys: [], rows: [] };
  /** @type {Checkpoints | null} */
  let table = null;
  let drawn = false;
  /** @type {string | null} */
  let method = null;
  let userView = false; // the user zoomed or panned: keep their ranges
  /** @type {{method: string, x: number[], y: number[]} | null} */
  let pending = null; // a saved view's zoom, applied once its projection is drawn
  /** @type {ReturnType<typeof setTimeout> | 0} */
  let clickTimer = 0; // a click opens a point after the double-click window (a double click resets the view)

  /** @returns {PlotBox | null} */
  function plotBox() {
    const fl = plot._fullLayout;
    if (!fl || !fl.xaxis) return null;
    const s = fl._size;
    return { l: s.l, t: s.t, w: s.w, h: s.h, xr: fl.xaxis.range.slice(), yr: fl.yaxis.range.slice() };
  }

  /** @param {PlotBox} box */
  function pixelPoints(box) {
    const n = pts.ids.length;
    const px = new Float64Array(n), py = new Float64Array(n);
    for (let k = 0; k < n; k++) {
      px[k] = toPixel(pts.xs[k], box.xr, box.l, box.w);
      py[k] = toPixel(pts.ys[k], box.yr, box.t, box.h, true);
    }
    return { px, py };
  }

  function render() {
    const s = ctx.state;
    const t = s.table;
    table = t;
    pts = scatterPoints(t, s.projection, s.hiddenSet);
    const outliers = s.includeOutliers ? [] : s.outliers.filter((id) => !s.hiddenSet.has(id) && t.index.has(id));
    const outlierSet = new Set(outliers);
    const sel = s.selectionSet;
    const colorBy = s.colorBy;
    const byMetric = colorBy !== "branch" ? t.metrics[colorBy] : undefined;
    const lines = branchLines(t, pts);
    /** @type {object[]} */
    const traces = [];
    const manyBranches = lines.length > 40;
    if (manyBranches) {
      /** @type {number[]} */
      const x = [], y = [];
      for (const l of lines) { x.push(...l.x, NaN); y.push(...l.y, NaN); }
      traces.push({ type: "scatter", mode: "lines", x, y, line: { color: "#bbb", width: 1 }, hoverinfo: "skip" });
    } else {
      for (const l of lines) {
        traces.push({ type: "scatter", mode: "lines", x: l.x, y: l.y, line: { color: branchColor(l.branch), width: 1.5 },
          opacity: 0.6, hoverinfo: "skip", name: `branch ${l.branch}` });
      }
    }
    const type = pts.ids.length > GL_THRESHOLD ? "scattergl" : "scatter";
    const size = pts.ids.length > GL_THRESHOLD ? 4 : 8, line = { width: 0.5, color: "#fff" };
    /** @type {object} */
    let marker;
    if (byMetric) {
      const colours = pts.rows.map((r) => byMetric[r]);
      const { lo, hi } = metricColour(colours.filter((_, k) => !outlierSet.has(pts.ids[k])));  // outliers do not stretch it
      marker = { size, color: colours, line, colorscale: "Viridis", cmin: lo, cmax: hi, showscale: true, colorbar: colorBar(colorBy, "top") };
    } else {
      marker = { size, color: pts.rows.map((r) => branchColor(t.branches[r])), line };
    }
    traces.push({ type, mode: "markers", x: pts.xs, y: pts.ys, customdata: pts.ids, marker, hoverinfo: "none", name: "checkpoints" });
    const selK = [];
    for (let k = 0; k < pts.ids.length; k++) if (sel.has(pts.ids[k])) selK.push(k);
    traces.push({ type, mode: "markers", x: selK.map((k) => pts.xs[k]), y: selK.map((k) => pts.ys[k]),
      marker: { size: pts.ids.length > GL_THRESHOLD ? 7 : 12, color: "rgba(0,0,0,0)", line: { width: 2, color: "#111" } },
      hoverinfo: "none", name: "selected" });
    const ck = s.clicked === null ? -1 : pts.ids.indexOf(s.clicked);
    traces.push({ type: "scatter", mode: "markers", x: ck >= 0 ? [pts.xs[ck]] : [], y: ck >= 0 ? [pts.ys[ck]] : [],
      marker: { size: 16, symbol: "star", color: "#e31a1c", line: { width: 1, color: "#fff" } }, hoverinfo: "none", name: "open" });
    const [xt, yt] = axisTitles(s.projection, timeLabel(t));
    if (method !== s.projection.method) userView = false;
    method = s.projection.method;
    // Fixed ranges from the data (not plotly's autorange, whose padding follows marker sizes and would shift
    // every point when the selection overlay appears), unless the user zoomed or panned.
    if (pending && pending.method === method) { userView = true; }
    // the user's zoom is kept by giving plotly its ranges again (uirevision keeps only plotly's own GUI edits)
    const shownBox = userView ? plotBox() : null;
    const ranges = pending && pending.method === method ? [pending.x, pending.y]
      : shownBox ? [shownBox.xr, shownBox.yr] : userView ? null : [paddedRange(pts.xs), paddedRange(pts.ys)];
    if (pending && pending.method === method) pending = null;
    // outliers: a hollow red x at their point (layout places them) or pinned to the right edge
    const shownRanges = ranges ?? [paddedRange(pts.xs), paddedRange(pts.ys)];
    const marks = outlierMarks(outliers, pts, shownRanges[0], shownRanges[1]);
    traces.push({ type: "scatter", mode: "markers", x: marks.x, y: marks.y, customdata: marks.ids, name: "outliers", hoverinfo: "none",
      marker: { symbol: "x-thin-open", size: 13, color: "#d62728", line: { width: 2.5, color: "#d62728" } }, cliponaxis: false });
    const loose = marks.placed.filter((p) => !p).length;
    const left = loose ? ` · ${loose} outlier${loose === 1 ? "" : "s"} left out` : "";
    const layout = {
      margin: { l: 48, r: 12, t: 28, b: 40 }, showlegend: false, dragmode: false, hovermode: false,
      title: { text: `trajectory · ${s.projection.method} · ${pts.ids.length} checkpoints · ${sel.size} selected${left}`, font: { size: 12 }, x: 0.02 },
      xaxis: { title: { text: xt }, zeroline: false, ...(ranges && { range: ranges[0] }) },
      yaxis: { title: { text: yt }, zeroline: false, ...(ranges && { range: ranges[1] }),
        ...(s.projection.method === "layout" && laneTicks(t, pts)) }, // lanes named by their branch
      uirevision: s.projection.method, plot_bgcolor: "#fafafa",
    };
    Plotly.react(plot, traces, layout, { displayModeBar: false, scrollZoom: false, responsive: true });
    drawn = true;
    container.dataset.points = String(pts.ids.length);
    container.dataset.selected = String(sel.size);
    container.dataset.outliers = outliers.join(",");
  }

  // ------------------------------------------------------------------ gestures
  /** A drag in progress: which gesture, from where, along which path, and the plot box when it began.
   * @typedef {{gesture: "pan" | "brush" | "lasso", mode: SelectionMode | null, box: PlotBox, start: Pixel, last: Pixel,
   *   path: Pixel[], moved: boolean}} Gesture */
  /** @type {Gesture | null} */
  let gesture = null;
  /** @param {MouseEvent} e @returns {Pixel} */
  const local = (e) => {
    const r = plot.getBoundingClientRect();
    return [e.clientX - r.left, e.clientY - r.top];
  };
  /** @param {PlotBox | null} box @param {number} x @param {number} y @returns {box is PlotBox} */
  const inside = (box, x, y) => box !== null && x >= box.l && x <= box.l + box.w && y >= box.t && y <= box.t + box.h;

  /** @param {Pixel[]} points @param {boolean} closed */
  function drawPath(points, closed) {
    if (!points.length) { path.setAttribute("d", ""); return; }
    const d = points.map(([x, y], i) => `${i ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`).join("") + (closed ? "Z" : "");
    path.setAttribute("d", d);
  }

  /** @param {MouseEvent} e */
  function onDown(e) {
    if (e.button !== 0 || !drawn) return;
    const box = plotBox();
    const [x, y] = local(e);
    if (!inside(box, x, y)) return;
    e.preventDefault();
    e.stopPropagation();
    card.hidden = true;
    if (e.detail >= 2) { clearTimeout(clickTimer); clickTimer = 0; } // the second press of a double click
    const g = gestureFor(e);
    gesture = { ...g, box, start: [x, y], last: [x, y], path: [[x, y]], moved: false };
    overlay.setAttribute("class", `lv-overlay lv-${g.gesture} ${g.mode === "remove" ? "lv-remove" : ""}`);
    window.addEventListener("mousemove", onMove, true);
    window.addEventListener("mouseup", onUp, true);
  }

  let panFrame = 0;
  /** @param {MouseEvent} e */
  function onMove(e) {
    if (!gesture) return;
    e.preventDefault();
    e.stopPropagation();
    const [x, y] = local(e);
    if (Math.hypot(x - gesture.start[0], y - gesture.start[1]) > 3) gesture.moved = true;
    if (gesture.gesture === "pan") {
      const dx = x - gesture.last[0], dy = y - gesture.last[1];
      gesture.last = [x, y];
      userView = true;
      gesture.box.xr = panRange(gesture.box.xr, dx, gesture.box.w);
      gesture.box.yr = panRange(gesture.box.yr, dy, gesture.box.h, true);
      if (!panFrame) {
        panFrame = requestAnimationFrame(() => {
          panFrame = 0;
          if (gesture) Plotly.relayout(plot, { "xaxis.range": gesture.box.xr, "yaxis.range": gesture.box.yr });
        });
      }
      return;
    }
    gesture.path.push([x, y]);
    drawPath(gesture.path, gesture.gesture === "lasso");
  }

  /** @param {MouseEvent} e */
  function onUp(e) {
    window.removeEventListener("mousemove", onMove, true);
    window.removeEventListener("mouseup", onUp, true);
    const g = gesture;
    gesture = null;
    drawPath([], false);
    overlay.setAttribute("class", "lv-overlay");
    if (!g) return;
    e.preventDefault();
    e.stopPropagation();
    if (g.gesture === "pan") return;
    const { px, py } = pixelPoints(g.box);
    if (!g.moved) { // a click: open the nearest checkpoint, unless a second click makes it a double click
      const k = nearestPoint(px, py, g.start[0], g.start[1], BRUSH_RADIUS_PX);
      clearTimeout(clickTimer);
      if (e.detail >= 2) { clickTimer = 0; return; }
      const id = pts.ids[k];
      if (k >= 0) clickTimer = setTimeout(() => { clickTimer = 0; ctx.click(id); }, DOUBLE_CLICK_MS);
      return;
    }
    const hits = g.gesture === "lasso" ? lassoHits(px, py, g.path) : brushHits(px, py, g.path, BRUSH_RADIUS_PX);
    const ids = hits.map((k) => pts.ids[k]);
    ctx.setSelection(applySelection(ctx.state.selection, ids, g.mode));
  }

  /** @param {WheelEvent} e */
  function onWheel(e) {
    const box = plotBox();
    const [x, y] = local(e);
    if (!inside(box, x, y)) return;
    e.preventDefault();
    e.stopPropagation();
    const factor = Math.exp(Math.max(-300, Math.min(300, e.deltaY)) * 0.002);
    userView = true;
    const ax = toData(x, box.xr, box.l, box.w), ay = toData(y, box.yr, box.t, box.h, true);
    Plotly.relayout(plot, { "xaxis.range": zoomRange(box.xr, ax, factor), "yaxis.range": zoomRange(box.yr, ay, factor) });
  }

  /** @param {MouseEvent} e */
  function onHover(e) {
    if (gesture || !drawn || !table) return;
    const box = plotBox();
    const [x, y] = local(e);
    if (!inside(box, x, y)) { card.hidden = true; return; }
    const { px, py } = pixelPoints(box);
    const k = nearestPoint(px, py, x, y, BRUSH_RADIUS_PX);
    if (k < 0) { card.hidden = true; return; }
    card.innerHTML = hoverCardHtml(table, pts.rows[k]);
    card.hidden = false;
    const left = px[k] + 14, top = py[k] + 10;
    card.style.left = `${Math.min(left, plot.clientWidth - 250)}px`;
    card.style.top = `${Math.min(top, plot.clientHeight - 90)}px`;
    card.dataset.id = String(pts.ids[k]);
  }

  /** @param {MouseEvent} e */
  function onDblClick(e) {
    const box = plotBox();
    const [x, y] = local(e);
    if (!inside(box, x, y)) return;
    e.preventDefault();
    e.stopPropagation();
    userView = false;
    Plotly.relayout(plot, { "xaxis.range": paddedRange(pts.xs), "yaxis.range": paddedRange(pts.ys) });
  }

  plot.addEventListener("mousedown", onDown, true);
  plot.addEventListener("wheel", onWheel, { capture: true, passive: false });
  plot.addEventListener("mousemove", onHover);
  plot.addEventListener("mouseleave", () => { card.hidden = true; });
  plot.addEventListener("dblclick", onDblClick, true);

  /** The branch colour legend (swatch and number per branch, the first LEGEND_MAX) in `box`; a click on a
   * branch hides it (a hidden one is struck through, and a click shows it again).
   * @param {HTMLElement} box */
  function renderLegend(box) {
    const s = ctx.state;
    const counts = branchCounts(s.table);
    const items = counts.slice(0, LEGEND_MAX).map(([b, n]) => {
      const gone = s.hiddenBranches.includes(b);
      const item = el("span", { class: `lv-legend-item${gone ? " lv-legend-hidden" : ""}`, role: "button",
        title: `branch ${b}: ${n} checkpoint(s) · click to ${gone ? "show" : "hide"} it` },
      el("span", { class: "lv-swatch" }), el("span", { text: `branch ${b}` }));
      /** @type {HTMLElement} */ (item.firstChild).style.background = branchColor(b);
      item.dataset.branch = String(b);
      item.addEventListener("click", () => {
        const now = ctx.state.hiddenBranches;
        ctx.setTrait("hidden_branches", now.includes(b) ? now.filter((v) => v !== b) : withId(now, b));
      });
      return item;
    });
    if (counts.length > LEGEND_MAX) items.push(el("span", { class: "lv-muted", text: `+ ${counts.length - LEGEND_MAX} more` }));
    box.replaceChildren(el("span", { class: "lv-muted", text: "colours:" }), ...items);
  }

  return {
    el: plot,
    render,
    renderLegend,
    /** The zoom the user set (null when the view follows the data). */
    viewRanges() {
      const box = plotBox();
      return userView && box && method ? { method, x: box.xr, y: box.yr } : null;
    },
    /** Show a saved zoom (now, or once its projection is drawn). @param {{method: string, x: number[], y: number[]}} r */
    restoreRanges(r) {
      pending = { method: r.method, x: r.x.slice(), y: r.y.slice() };
      if (drawn && method === r.method) render();
    },
    /** Pixel position (relative to the plot element) of a checkpoint, for tests and the benchmark.
     * @param {number} id @returns {Pixel | null} */
    pixelOf(id) {
      const box = plotBox();
      const k = pts.ids.indexOf(id);
      if (!box || k < 0) return null;
      return [toPixel(pts.xs[k], box.xr, box.l, box.w), toPixel(pts.ys[k], box.yr, box.t, box.h, true)];
    },
    destroy() { clearTimeout(clickTimer); window.removeEventListener("mousemove", onMove, true); window.removeEventListener("mouseup", onUp, true); Plotly.purge(plot); },
  };
}
