// @ts-check
// 3-D view of the current 2-D surface with its contour lines projected on the floor and the trajectory lifted
// onto the surface (bilinear interpolation of the grid at each checkpoint's plane coordinates).
import { decodeCheckpoints, decodeSurface, encodeArray, rows } from "./codecs.js";
import { bilinear, colourLimits, resampleGrid } from "./grids.js";
import { displayValues, trajectoryTraces } from "./contour.js";
import { el, plotIn } from "./dom.js";
import { PLOT_CONFIG } from "./plots.js";

/** @import { Surface } from "./codecs.js" */
/** @import { Ctx, State, View } from "./types" */

/** The 3-D (WebGL) surface is drawn at display resolution: every grid resampled onto this many evenly spaced
 * points per side. plotly refines a surface with a side under 120 points (or unevenly spaced) itself, to 120-720
 * points per side: a 401 x 401 grid decimated to 59 uneven points became a 472 x 472 mesh, a second's work;
 * 121 even points it draws as they are, so a 3-D redraw stays one 121 x 121 mesh whatever the grid. */
export const SIDE_3D = 121;
const MAX_3D_FILLING_CELLS = 41 * 41; // a bigger grid is drawn in 3-D once complete
/** The scene renders at the screen's pixel ratio (plotly's default is 2: four times the pixels to fill on a
 * 1x screen, the most of a software-GL frame). */
const GL_CONFIG = { ...PLOT_CONFIG, plotGlPixelRatio: Math.min(4, Math.max(1, globalThis.devicePixelRatio || 1)) };
/** Height of the plot before the cell is laid out. */
const DEFAULT_HEIGHT = 340;

/** The 3-D figure of a 2-D surface: the surface resampled to SIDE_3D x SIDE_3D with its contours projected on
 * the floor, and the trajectory lifted onto it (contour.js trajectoryTraces: always three traces).
 * @param {Surface} surf a 2-D surface @param {State} s @param {number} height
 * @returns {{traces: object[], layout: object, note: string}} note: how the mesh relates to the computed grid */
export function sceneFigure(surf, s, height) {
  const v = s.view;
  const shown = displayValues(surf, v.log);
  const [ny, nx] = surf.z.shape;
  const mesh = resampleGrid(shown.data, surf.x, surf.y ?? [0], SIDE_3D, SIDE_3D);
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
  const filling = surf.progress < 1;
  // few, short z ticks: plotly's default crowds the short z axis until the labels overlap
  const tick = { nticks: 5, tickfont: { size: 9 } };
  const scene = { xaxis: { title: { text: "d1" }, ...tick }, yaxis: { title: { text: "d2" }, ...tick },
    // z tick labels only once complete: the z range moves while filling, and each new label is rasterised
    // (WebGL text), the costliest part of a 3-D redraw
    zaxis: { title: { text: v.log ? `log10 ${surf.metric}` : surf.metric }, ...tick, nticks: 4, tickformat: ".3~g", showticklabels: !filling },
    aspectmode: "manual", aspectratio: { x: 1, y: 1, z: 0.7 } };
  const layout = { margin: { l: 0, r: 0, t: 28, b: 0 }, showlegend: false, height, uirevision: "surface3d",
    title: { text: `3-D ${surf.metric}`, font: { size: 12 }, x: 0.02 }, scene };
  const note = nx === SIDE_3D && ny === SIDE_3D ? "" : `drawn at ${SIDE_3D}×${SIDE_3D} of ${nx}×${ny} · exact values: contour`;
  return { traces, layout, note };
}

/** Made-up surfaces and states whose 3-D figures hold every trace and axis of a real one, with each trajectory
 * trace drawn or empty in the combinations a real figure has: the trajectory and a selection, the trajectory
 * alone, no trajectory. A GL pipeline is compiled per program and per GL state, and a trace with no points leaves
 * the state of the draw after it different, so each combination is a pipeline of its own. What the view draws
 * hidden before its first real surface (createSurface3d).
 * @returns {{surf: Surface, state: State}[]} */
export function warmUpScenes() {
  const n = 5, xs = Array.from({ length: n }, (_, j) => -1 + 2 * j / (n - 1));
  const z = xs.flatMap((y) => xs.map((x) => x * x + 2 * y * y));
  const wire = { x: encodeArray(xs), y: encodeArray(xs), z: encodeArray(z, [n, n]), metric: "loss", progress: 1 };
  const traced = /** @type {Surface} */ (decodeSurface({ ...wire,
    trajectory: { ids: encodeArray([0, 1, 2]), coords: encodeArray([-0.5, 0.5, 0, 0, 0.5, -0.5], [3, 2]) } }));
  const bare = /** @type {Surface} */ (decodeSurface(wire));
  const table = decodeCheckpoints({ ids: encodeArray([0, 1, 2]), parents: encodeArray([NaN, 0, 1]), branches: encodeArray([0, 0, 0]),
    epochs: encodeArray([0, 1, 2]), kinds: encodeArray([0, 1, 1]), kind_names: ["init", "train"], metrics: {}, hparams: [{}, {}, {}],
    status: ["ok", "ok", "ok"] });
  /** @param {number[]} selection @returns {State} */
  const state = (selection) => /** @type {State} */ (/** @type {unknown} */ ({ table, selectionSet: new Set(selection),
    hiddenSet: new Set(), view: { mode: "contour", log: false, vmin: null, vmax: null, levels: 20 } }));
  return [{ surf: traced, state: state([2]) }, { surf: traced, state: state([]) }, { surf: bare, state: state([]) }];
}

/** Run fn in a task of its own, soon. @param {() => void} fn @returns {() => void} cancels it */
function later(fn) {
  const id = setTimeout(fn, 0);
  return () => clearTimeout(id);
}

/** Run fn when the page is idle (within timeout ms at the latest). @param {() => void} fn @param {number} timeout
 * @returns {() => void} cancels it */
function whenIdle(fn, timeout) {
  if (typeof requestIdleCallback === "function") {
    const id = requestIdleCallback(fn, { timeout });
    return () => cancelIdleCallback(id);
  }
  const id = setTimeout(fn, 50);
  return () => clearTimeout(id);
}

/** The 3-D view in its cell.
 *
 * The first draw of a WebGL scene compiles its shaders. In software GL (SwiftShader, a machine with no GPU) that
 * is 0.1-0.4 s of work in the GPU process for each new program and GL state, and the page waits for it when it
 * next reads the canvas back (at the frame's commit). So the view first draws warmUpScenes' figures, one per
 * task, hidden: a hidden canvas is not composited, and the pick buffer is read only when a hover asks
 * (js/build.mjs), so the page does not wait and the shaders compile in the GPU process meanwhile; then it
 * primes the canvas's readback (primeReadback). The real surfaces are then drawn by the same scene, warm. A
 * surface that arrives during the warm-up is drawn after it.
 * @param {HTMLElement} container @param {Ctx} ctx @returns {View} */
export function createSurface3d(container, ctx) {
  const { Plotly } = ctx;
  const plot = plotIn(container, "surface3d");
  const note = el("div", { class: "lv-note3d" });
  note.hidden = true;
  const res = el("div", { class: "lv-res3d" });  // says when the 3-D mesh is not the computed grid
  res.title = "the 3-D view draws the grid resampled (bilinear) at display resolution; the contour's hover reads the computed values";
  container.append(note, res);
  /** what the last draw was of (see render) @type {unknown[]} */
  let drawnFrom = [];
  /** @type {ReturnType<typeof setTimeout> | 0} */
  let pending = 0;
  let shown = false;  // a real surface is drawn (the plot is hidden until then)
  /** the warm-up's figures not drawn yet (null once it is done) @type {{traces: object[], layout: object}[] | null} */
  let warmUp = null;
  /** @type {(() => void) | null} */
  let cancelStep = null;
  /** a real draw waiting for the warm-up @type {(() => void) | null} */
  let queued = null;

  /** @param {boolean} on */
  function showPlot(on) {
    shown = on;
    plot.style.visibility = on ? "" : "hidden";
    container.dataset.shown = String(on);
  }

  /** The scene's WebGL context (plotly's). @returns {WebGLRenderingContext | undefined} */
  function glOf() {
    const scene = /** @type {{scene?: {_scene?: {glplot?: {gl?: WebGLRenderingContext}}}} | undefined} */ (
      /** @type {unknown} */ (plot._fullLayout))?.scene;
    return scene?._scene?.glplot?.gl;
  }

  /** The canvas's first read (at its first composite) sets up its readback, 0.2 s in software GL: a GPU-side copy
   * of the canvas into a texture does it now, with nothing waiting, so the first real draw's commit does not. */
  function primeReadback() {
    const gl = glOf();
    if (!gl) return;
    const bound = gl.getParameter(gl.TEXTURE_BINDING_2D);
    const t = gl.createTexture();
    gl.bindTexture(gl.TEXTURE_2D, t);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, gl.RGBA, gl.UNSIGNED_BYTE, gl.canvas);
    gl.bindTexture(gl.TEXTURE_2D, bound);
    gl.deleteTexture(t);
    gl.flush();
  }

  function warmUpStep() {
    cancelStep = null;
    const fig = warmUp?.shift();
    if (!fig) {
      primeReadback();
      warmUp = null;
      const draw = queued;
      queued = null;
      draw?.();
      return;
    }
    Plotly.react(plot, fig.traces, fig.layout, GL_CONFIG);
    glOf()?.flush();  // hand the draw to the GPU process now: it compiles while the page goes on
    // the next step when the page is idle, or at once when a real surface waits
    cancelStep = queued ? later(warmUpStep) : whenIdle(warmUpStep, 1000);
  }

  function startWarmUp() {
    showPlot(false);
    const height = container.clientHeight || DEFAULT_HEIGHT;
    const figs = warmUpScenes().map(({ surf, state }) => sceneFigure(surf, state, height));
    // first the scene, its axes and the trajectory's traces (the surface hidden), then each whole figure: the
    // scene's creation and the surface's first build are two tasks
    warmUp = [{ ...figs[0], traces: figs[0].traces.map((t, i) => (i === 0 ? { ...t, visible: false } : t)) }, ...figs];
    cancelStep = whenIdle(warmUpStep, 1000);
  }
  startWarmUp();

  /** @param {() => void} draw */
  function drawWhenWarm(draw) {
    if (!warmUp) { draw(); return; }
    queued = draw;
    if (cancelStep) { cancelStep(); cancelStep = later(warmUpStep); }  // hurry the warm-up
  }

  function render() {
    const s = ctx.state;
    const surf = s.surface;
    if (!surf || surf.ndim !== 2) {
      clearTimeout(pending);
      queued = null;
      showPlot(false);  // (no plotly call: the scene is kept, warm, for the next surface)
      note.textContent = "no 2-D surface yet";
      note.hidden = false;
      container.dataset.state = "empty";
      res.textContent = "";
      drawnFrom = [];
      return;
    }
    // WebGL redraws are costly (a second in software GL, most of it rasterising tick labels): a big grid is
    // drawn in 3-D once complete; while it fills the view says how far it is, at each quarter
    const filling = surf.progress < 1;
    // a job's filling surface by its quarter; any other by itself (decoded once per trait value: a stored
    // surface shown, the trajectory arriving after the last point, another metric are each a new one)
    const from = [filling && surf.job !== null ? `${surf.job}|${surf.metric}|${Math.floor(surf.progress * 4)}` : surf,
      s.view.log, s.view.vmin, s.view.vmax, [...s.selectionSet].join(","), [...s.hiddenSet].join(",")];
    if (from.every((v, k) => v === drawnFrom[k])) return;
    drawnFrom = from;
    // (no plotly call at all: replacing or clearing a WebGL scene costs as much as drawing one)
    if (filling && surf.total > MAX_3D_FILLING_CELLS) {
      clearTimeout(pending);
      note.textContent = `the new surface is drawn in 3-D once complete (${Math.round(100 * surf.progress)} % computed)`;
      note.hidden = false;
      container.dataset.state = "filling";
      return;
    }
    const fig = sceneFigure(surf, s, container.clientHeight || DEFAULT_HEIGHT);
    if (warmUp) { note.textContent = "preparing the 3-D view…"; note.hidden = false; }
    // plotly builds the mesh and issues the GL draw in a task of its own, after this frame: the browser reads
    // the software-GL canvas back in the next frame's commit, so the two halves of a 3-D draw are two tasks
    clearTimeout(pending);
    pending = setTimeout(() => {
      pending = 0;
      drawWhenWarm(() => {
        Plotly.react(plot, fig.traces, fig.layout, GL_CONFIG);
        note.hidden = true;
        res.textContent = fig.note;
        showPlot(true);
        container.dataset.state = surf.progress < 1 ? "filling" : "complete";
        container.dataset.drawn = `${SIDE_3D}x${SIDE_3D}`;
      });
    }, 0);
  }

  return {
    el: plot, render, isShown: () => shown,
    destroy() { clearTimeout(pending); cancelStep?.(); warmUp = null; queued = null; Plotly.purge(plot); },
  };
}
