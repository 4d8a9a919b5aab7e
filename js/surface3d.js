// @ts-check
// 3-D view of the current 2-D surface with its contour lines projected on the floor and the trajectory lifted
// onto the surface (bilinear interpolation of the grid at each checkpoint's plane coordinates).
import { rows } from "./codecs.js";
import { bilinear, colourLimits, resampleGrid } from "./grids.js";
import { displayValues, trajectoryTraces } from "./contour.js";
import { el, plotIn } from "./dom.js";
import { PLOT_CONFIG, emptyNote } from "./plots.js";

/** @import { Ctx, View } from "./types" */

/** The 3-D (WebGL) surface is drawn at display resolution: every grid resampled onto this many evenly spaced
 * points per side. plotly refines a surface with a side under 120 points (or unevenly spaced) itself, to 120-720
 * points per side: a 401 x 401 grid decimated to 59 uneven points became a 472 x 472 mesh, a second's work;
 * 121 even points it draws as they are, so a 3-D redraw stays one 121 x 121 mesh whatever the grid. */
export const SIDE_3D = 121;
const MAX_3D_FILLING_CELLS = 41 * 41; // a bigger grid is drawn in 3-D once complete
/** The scene renders at the screen's pixel ratio (plotly's default is 2: four times the pixels to fill on a
 * 1x screen, the most of a software-GL frame). */
const GL_CONFIG = { ...PLOT_CONFIG, plotGlPixelRatio: Math.min(4, Math.max(1, globalThis.devicePixelRatio || 1)) };

/** The 3-D view in its cell.
 * @param {HTMLElement} container @param {Ctx} ctx @returns {View} */
export function createSurface3d(container, ctx) {
  const { Plotly } = ctx;
  const plot = plotIn(container, "surface3d");
  const note = el("div", { class: "lv-note3d" });
  note.hidden = true;
  const res = el("div", { class: "lv-res3d" });  // says when the 3-D mesh is not the computed grid
  container.append(note, res);
  /** @type {string | null} */
  let lastKey = null;
  /** @type {ReturnType<typeof setTimeout> | 0} */
  let pending = 0;

  function render() {
    const s = ctx.state;
    const surf = s.surface;
    const height = container.clientHeight || 340;
    const frame = { margin: { l: 0, r: 0, t: 28, b: 0 }, showlegend: false, height, uirevision: "surface3d" };
    const title = { text: "3-D surface", font: { size: 12 }, x: 0.02 };
    if (!surf || surf.ndim !== 2) {
      clearTimeout(pending);
      Plotly.react(plot, [], { ...frame, title, annotations: [emptyNote("no 2-D surface yet")], xaxis: { visible: false }, yaxis: { visible: false } },
        GL_CONFIG);
      container.dataset.state = "empty";
      res.textContent = "";
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
      clearTimeout(pending);
      note.textContent = `the new surface is drawn in 3-D once complete (${Math.round(100 * surf.progress)} % computed)`;
      note.hidden = false;
      container.dataset.state = "filling";
      return;
    }
    note.hidden = true;
    const v = s.view;
    const shown = displayValues(surf, v.log);
    const [ny, nx] = surf.z.shape;
    const mesh = resampleGrid(shown.data, surf.x, surf.y ?? [0], SIDE_3D, SIDE_3D);
    res.title = "the 3-D view draws the grid resampled (bilinear) at display resolution; the contour's hover reads the computed values";
    res.textContent = nx === SIDE_3D && ny === SIDE_3D ? "" : `drawn at ${SIDE_3D}×${SIDE_3D} of ${nx}×${ny} · exact values: contour`;
    const [lo, hi] = colourLimits(surf.z.data, { log: v.log, vmin: v.vmin, vmax: v.vmax });
    const z = rows({ data: mesh.z, shape: [SIDE_3D, SIDE_3D] }).map((r) => Array.from(r));  // plain rows: plotly's gl surface copies typed rows slowly
    const xs = mesh.x, ys = mesh.y;
    /** @param {number} x @param {number} y */
    const lift = (x, y) => bilinear(xs, ys, mesh.z, x, y);  // onto the surface as drawn
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
    // plotly builds the mesh and issues the GL draw in a task of its own, after this frame: the browser reads
    // the software-GL canvas back in the next frame's commit, so the two halves of a 3-D draw are two tasks
    clearTimeout(pending);
    pending = setTimeout(() => {
      pending = 0;
      Plotly.react(plot, traces, { ...frame, title: { ...title, text: `3-D ${surf.metric}` }, scene }, GL_CONFIG);
      container.dataset.state = surf.progress < 1 ? "filling" : "complete";
      container.dataset.drawn = `${SIDE_3D}x${SIDE_3D}`;
    }, 0);
  }

  return { el: plot, render, destroy() { clearTimeout(pending); Plotly.purge(plot); } };
}
