// @ts-check
// 3-D view of the current 2-D surface with its contour lines projected on the floor and the trajectory lifted
// onto the surface (bilinear interpolation of the grid at each checkpoint's plane coordinates).
import { rows } from "./codecs.js";
import { bilinear, colourLimits } from "./grids.js";
import { displayValues, trajectoryTraces } from "./contour.js";
import { el, plotIn } from "./dom.js";
import { PLOT_CONFIG, emptyNote } from "./plots.js";

/** @import { Ctx, View } from "./types" */

/** Largest side the 3-D (WebGL) surface draws; a bigger grid is decimated. */
const MAX_3D_SIDE = 65;
const MAX_3D_FILLING_SIDE = 41;
const MAX_3D_FILLING_CELLS = 41 * 41; // a bigger grid is drawn in 3-D once complete

/** The 3-D view in its cell.
 * @param {HTMLElement} container @param {Ctx} ctx @returns {View} */
export function createSurface3d(container, ctx) {
  const { Plotly } = ctx;
  const plot = plotIn(container, "surface3d");
  const note = el("div", { class: "lv-note3d" });
  note.hidden = true;
  container.append(note);
  /** @type {string | null} */
  let lastKey = null;

  function render() {
    const s = ctx.state;
    const surf = s.surface;
    const height = container.clientHeight || 340;
    const frame = { margin: { l: 0, r: 0, t: 28, b: 0 }, showlegend: false, height, uirevision: "surface3d" };
    const title = { text: "3-D surface", font: { size: 12 }, x: 0.02 };
    if (!surf || surf.ndim !== 2) {
      Plotly.react(plot, [], { ...frame, title, annotations: [emptyNote("no 2-D surface yet")], xaxis: { visible: false }, yaxis: { visible: false } },
        PLOT_CONFIG);
      container.dataset.state = "empty";
      lastKey = null;
      return;
    }
    // WebGL redraws are costly (a second in software GL, most of it rasterising tick labels): a big grid is
    // drawn in 3-D once complete; while it fills the view says how far it is, at each quarter
    const filling = surf.progress < 1;
    const key = `${surf.job}|${surf.metric}|${Math.floor(surf.progress * 4)}|${s.view.log}|${s.view.vmin}|${s.view.vmax}|${[...s.selectionSet].join(",")}`;
    if (key === lastKey) return;
    lastKey = key;
    // (no plotly call at all: replacing or clearing a WebGL scene costs as much as drawing one)
    if (filling && surf.total > MAX_3D_FILLING_CELLS) {
      note.textContent = `the new surface is drawn in 3-D once complete (${Math.round(100 * surf.progress)} % computed)`;
      note.hidden = false;
      container.dataset.state = "filling";
      return;
    }
    note.hidden = true;
    const v = s.view;
    const shown = displayValues(surf, v.log, filling ? MAX_3D_FILLING_SIDE : MAX_3D_SIDE);
    const [lo, hi] = colourLimits(surf.z.data, { log: v.log, vmin: v.vmin, vmax: v.vmax });
    const z = rows(shown).map((r) => Array.from(r));  // plain rows: plotly's gl surface copies typed rows slowly
    const xs = Array.from(shown.x), ys = Array.from(shown.y);
    /** @param {number} x @param {number} y */
    const lift = (x, y) => bilinear(xs, ys, shown.data, x, y);
    const traces = [{
      type: "surface", x: xs, y: ys, z, cmin: lo, cmax: hi, colorscale: "Viridis", showscale: false, opacity: 0.95,
      contours: { z: { show: true, usecolormap: true, project: { z: true }, width: 1 } }, name: surf.metric,
      hovertemplate: "(%{x:.3f}, %{y:.3f}) %{z:.4g}<extra></extra>",
    }, ...trajectoryTraces(surf, s, lift)];
    // few, short z ticks: plotly's default crowds the short z axis until the labels overlap
    const tick = { nticks: 5, tickfont: { size: 9 } };
    const scene = { xaxis: { title: { text: "d1" }, ...tick }, yaxis: { title: { text: "d2" }, ...tick },
      // z tick labels only once complete: the z range moves while filling, and each new label is rasterised
      // (WebGL text), the costliest part of a 3-D redraw
      zaxis: { title: { text: v.log ? `log10 ${surf.metric}` : surf.metric }, ...tick, nticks: 4, tickformat: ".3~g", showticklabels: !filling },
      aspectmode: "manual", aspectratio: { x: 1, y: 1, z: 0.7 } };
    Plotly.react(plot, traces, { ...frame, title: { ...title, text: `3-D ${surf.metric}` }, scene }, PLOT_CONFIG);
    container.dataset.state = surf.progress < 1 ? "filling" : "complete";
  }

  return { el: plot, render, destroy() { Plotly.purge(plot); } };
}
