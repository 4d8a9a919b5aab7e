// @ts-check
// 3-D view of the current 2-D surface with its contour lines projected on the floor and the trajectory lifted
// onto the surface (bilinear interpolation of the grid at each checkpoint's plane coordinates).
import { rows } from "./codecs.js";
import { bilinear, colourLimits } from "./grids.js";
import { displayValues, trajectoryTraces } from "./contour.js";
import { plotIn } from "./dom.js";
import { PLOT_CONFIG, emptyNote } from "./plots.js";

/** @import { Ctx, View } from "./types" */

/** Largest side the 3-D (WebGL) surface draws; a bigger grid is decimated. */
const MAX_3D_SIDE = 101;

/** The 3-D view in its cell.
 * @param {HTMLElement} container @param {Ctx} ctx @returns {View} */
export function createSurface3d(container, ctx) {
  const { Plotly } = ctx;
  const plot = plotIn(container, "surface3d");
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
    // WebGL redraws are costly: while filling, redraw at most every 10 %.
    const key = `${surf.job}|${surf.metric}|${Math.floor(surf.progress * 10)}|${s.view.log}|${s.view.vmin}|${s.view.vmax}|${[...s.selectionSet].join(",")}`;
    if (key === lastKey) return;
    lastKey = key;
    const v = s.view;
    const shown = displayValues(surf, v.log, MAX_3D_SIDE);
    const [lo, hi] = colourLimits(surf.z.data, { log: v.log, vmin: v.vmin, vmax: v.vmax });
    const z = rows(shown);
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
      zaxis: { title: { text: v.log ? `log10 ${surf.metric}` : surf.metric }, ...tick, nticks: 4, tickformat: ".3~g" },
      aspectmode: "manual", aspectratio: { x: 1, y: 1, z: 0.7 } };
    Plotly.react(plot, traces, { ...frame, title: { ...title, text: `3-D ${surf.metric}` }, scene }, PLOT_CONFIG);
    container.dataset.state = surf.progress < 1 ? "filling" : "complete";
  }

  return { el: plot, render, destroy() { Plotly.purge(plot); } };
}
