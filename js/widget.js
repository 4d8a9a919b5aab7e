// @ts-check
// lossviz Explorer: the anywidget entry point. Reads the model's traits (decoded by codecs.js), lays out the
// views and panels, and turns user actions into trait changes (selection, clicked, view options) or command
// messages to the kernel (train, cancel, disturb, interpolate, surface, project, export, ...). Every choice
// list and limit comes from the kernel's `options` trait.
import Plotly from "./plotly.js";
import { decodeCheckpoints, decodeProjection, decodeSurface, decodeCurves, decodeDistances, decodedOnce } from "./codecs.js";
import { sameIds } from "./selection.js";
import { createScatter } from "./scatter.js";
import { createContour } from "./contour.js";
import { createSurface3d } from "./surface3d.js";
import { createMetrics, createLines } from "./curves.js";
import { createBranchPanel } from "./branch.js";
import { createProjectPanel } from "./project.js";
import { button, download, el, keepsKey, labelled, markInvalid, select, setOptions, tabs } from "./dom.js";
import { createViewsPanel } from "./snapshot.js";
import { hiddenCount, hiddenIds, outlierNote } from "./visibility.js";
import { createResearchControls } from "./connect.js";
import { createSpectrum } from "./spectrum.js";

/** @import { AnyModel, Ctx, RenderProps, State, Traits } from "./types" */

/** The surface and the 1-D curves, decoded once per trait value (views tell an unchanged one by identity). */
const surfaceOf = decodedOnce(decodeSurface), curvesOf = decodedOnce(decodeCurves);
/** No Connect result (one object, so an unchanged absence is the same input too). */
const NO_CONNECTION = Object.freeze({});

/** The traits decoded for drawing.
 * @param {AnyModel} model @returns {State} */
function readState(model) {
  const selection = (model.get("selection") ?? []).slice();
  const table = decodeCheckpoints(model.get("checkpoints"));
  const hidden = (model.get("hidden") ?? []).slice(), hiddenBranches = (model.get("hidden_branches") ?? []).slice();
  return {
    table,
    projection: decodeProjection(model.get("projection")),
    selection,
    selectionSet: new Set(selection),
    clicked: model.get("clicked") ?? null,
    form: model.get("form") ?? {},
    options: model.get("options") ?? {},
    colorBy: model.get("color_by") ?? "branch",
    surface: surfaceOf(model.get("surface")),
    surfaceMetric: model.get("surface_metric") ?? "train_loss",
    view: { mode: model.get("contour_mode"), log: model.get("log_scale"), vmin: model.get("vmin"), vmax: model.get("vmax"), levels: model.get("levels") },
    curves: curvesOf(model.get("curves")),
    distances: decodeDistances(model.get("distances")),
    jobs: model.get("jobs") ?? [],
    error: model.get("error") ?? "",
    message: model.get("message") ?? "",
    projects: model.get("projects") ?? [],
    projectRoot: model.get("project_root") ?? "",
    project: model.get("project") ?? {},
    includeOutliers: Boolean(model.get("include_outliers")),
    outliers: (model.get("outliers") ?? []).slice(),
    hidden, hiddenBranches, hiddenSet: hiddenIds(table, hidden, hiddenBranches),
    showCritical: model.get("show_critical") ?? true,
    controlErrors: model.get("control_errors") ?? {},
    confirmDelete: model.get("confirm_delete") ?? {},
    connection: model.get("connection") ?? NO_CONNECTION,
  };
}

/** @typedef {"scatter" | "metrics" | "contour" | "surface3d" | "lines" | "form" | "jobs" | "distances" | "project"
 *   | "toolbar" | "banner" | "colorBy" | "legend" | "manage" | "shown" | "research" | "spectrum"} Part */

/** Which parts redraw when a trait changes.
 * @type {Partial<Record<keyof Traits, Part[]>>} */
const DEPENDS = {
  checkpoints: ["scatter", "metrics", "form", "colorBy", "legend", "manage", "shown"],
  projection: ["scatter", "toolbar", "shown"],
  selection: ["scatter", "contour", "surface3d", "metrics", "toolbar", "research"],
  clicked: ["scatter", "form", "manage", "research"],
  form: ["form"],
  options: ["form", "project", "toolbar", "contour", "distances", "research"],
  color_by: ["scatter", "toolbar"],
  surface: ["contour", "surface3d", "lines", "toolbar"],
  surface_metric: ["lines", "toolbar"],
  contour_mode: ["contour", "toolbar"],
  log_scale: ["contour", "surface3d", "toolbar"],
  vmin: ["contour", "surface3d", "toolbar"],
  vmax: ["contour", "surface3d", "toolbar"],
  levels: ["contour", "toolbar"],
  curves: ["lines"],
  distances: ["distances"],
  jobs: ["jobs"],
  error: ["banner"],
  message: ["banner"],
  projects: ["project"],
  project_root: ["project"],
  project: ["project"],
  include_outliers: ["shown"],
  outliers: ["scatter", "shown"],
  hidden: ["scatter", "metrics", "contour", "surface3d", "legend", "manage", "shown"],
  hidden_branches: ["scatter", "metrics", "contour", "surface3d", "legend", "manage", "shown"],
  show_critical: ["contour", "toolbar"],
  control_errors: ["project"],
  confirm_delete: ["manage"],
  connection: ["lines"],
  spectrum: ["spectrum"],
  stored_surfaces: ["toolbar"],
};

/** The views whose redraw is costly (big grids, WebGL): at most one per frame, and each at most this often.
 * @type {readonly Part[]} */
const HEAVY_PARTS = ["contour", "surface3d"];
const HEAVY_INTERVAL_MS = 400;

/** @param {RenderProps} props */
function render({ model, el: root }) {
  let localError = "";
  /** @type {Ctx} */
  const ctx = {
    Plotly,
    state: readState(model),
    send(msg) {
      if (dead) return;
      localError = "";
      const type = /** @type {{type?: string}} */ (msg).type ?? "";
      if (["train", "disturb", "interpolate", "surface", "cancel", "connect", "spectrum"].includes(type)) panelTabs.show("jobs");
      if (type === "distances") panelTabs.show("distances");
      try { model.send(msg); } catch (err) { console.error("lossviz: sending to the kernel failed", err); markDead(); }
    },
    setSelection(ids) {
      if (sameIds(ids, ctx.state.selection)) return;
      model.set("selection", ids);
      model.save_changes();
    },
    click(id) {
      model.set("clicked", id);
      model.save_changes();
    },
    setTrait(name, value) {
      if (dead) return;
      model.set(name, value);
      model.save_changes();
    },
    showError(msg) {
      localError = msg;
      model.set("error", msg); // the kernel sees front-end validation errors too
      model.save_changes();
      schedule(["banner"]);
    },
  };

  // ------------------------------------------------------------------ layout
  const box = /** @type {HTMLDivElement & {__lossviz?: object}} */ (el("div", { class: "lossviz-explorer" }));
  box.style.setProperty("--lv-height", `${model.get("height") ?? 760}px`);
  const errorText = el("span", { class: "lv-error-text" });
  const dismiss = button("lv-dismiss", "×", "dismiss", () => { localError = ""; model.set("error", ""); model.save_changes(); });
  const errorBox = el("div", { class: "lv-error", role: "alert" }, errorText, dismiss);
  const messageBox = el("div", { class: "lv-message" });
  const banner = el("div", { class: "lv-banner" }, errorBox, messageBox);

  // toolbar
  const projSel = select("lv-projection", [], "projection of the checkpoints");
  const colorSel = select("lv-color-by", ["branch"], "colour points by");
  const selAll = button("lv-select-all", "Select all", "select every checkpoint", () => ctx.send({ type: "select_all" }));
  const selNone = button("lv-select-none", "Select none", "clear the selection", () => ctx.send({ type: "select_none" }));
  const distBtn = button("lv-distances-btn", "Distances", "distances between the selected checkpoints", () => ctx.send({ type: "distances" }));
  const pngSel = select("lv-png-view", ["trajectory", "contour", "3d", "metrics", "1d"], "view to export");
  const pngBtn = button("lv-png", "PNG", "download the chosen view as PNG", () => {
    const target = { trajectory: views.scatter, contour: views.contour, "3d": views.surface3d, metrics: views.metrics, "1d": views.lines }[pngSel.value];
    if (target && !(target.isShown?.() ?? true)) ctx.showError(`the ${pngSel.value} view has nothing drawn to export yet`);
    else if (target) Plotly.downloadImage(target.el, { format: "png", filename: `lossviz-${pngSel.value}`, scale: 2 });
  });
  const h5Btn = button("lv-h5", "Surface HDF5", "write the surface to an HDF5 file (Li's layout) and download it", () => ctx.send({ type: "export_surface" }));
  const htmlBtn = button("lv-html", "HTML", "a standalone interactive HTML page of the current views (opens with no kernel)",
    () => viewsPanel.exportHtml());
  const fileSel = select("lv-file-format", ["vtp", "ply", "gif"], "surface file: VTP (ParaView), PLY (mesh), GIF (the trajectory over the contour)");
  const fileBtn = button("lv-export-file", "Export", "write the surface (the metric shown) as the chosen file and download it",
    () => ctx.send({ type: "export_file", format: fileSel.value, metric: ctx.state.surfaceMetric }));
  const toolbar = el("div", { class: "lv-toolbar" }, labelled("projection", projSel), labelled("colour", colorSel),
    selAll, selNone, distBtn, el("span", { class: "lv-sep" }), pngSel, pngBtn, h5Btn, htmlBtn, fileSel, fileBtn);
  projSel.addEventListener("change", () => { model.set("projection_method", projSel.value); model.save_changes(); });
  colorSel.addEventListener("change", () => { model.set("color_by", colorSel.value); model.save_changes(); });

  // surface view options
  const metricSel = select("lv-metric", ["train_loss"], "surface metric");
  const storedSel = select("lv-stored", [], "the project's stored surfaces (newest first): pick one to show it");
  storedSel.addEventListener("change", () => { if (storedSel.value) ctx.send({ type: "show_stored_surface", key: storedSel.value }); });
  const modeSel = select("lv-mode", [], "contour style");
  const logBox = el("input", { type: "checkbox", class: "lv-log", title: "log scale" });
  const vminIn = el("input", { type: "text", class: "lv-vmin", placeholder: "vmin", title: "lowest value coloured (empty: auto)" });
  const vmaxIn = el("input", { type: "text", class: "lv-vmax", placeholder: "vmax", title: "highest value coloured (empty: auto)" });
  const levelsIn = el("input", { type: "text", class: "lv-levels", title: "number of contour levels" });
  const criticalBox = el("input", { type: "checkbox", class: "lv-show-critical", title: "mark minima, maxima and saddles (loss-like metrics only)" });
  const progressFill = el("div", { class: "lv-bar-fill" });
  const progress = el("div", { class: "lv-bar lv-surface-progress" }, progressFill);
  const viewOpts = el("div", { class: "lv-viewopts" }, storedSel, metricSel, modeSel, el("label", {}, logBox, el("span", { text: "log" })), vminIn, vmaxIn,
    labelled("levels", levelsIn), el("label", {}, criticalBox, el("span", { text: "critical points" })), progress);
  criticalBox.addEventListener("change", () => ctx.setTrait("show_critical", criticalBox.checked));
  metricSel.addEventListener("change", () => { model.set("surface_metric", metricSel.value); model.save_changes(); });
  modeSel.addEventListener("change", () => { model.set("contour_mode", modeSel.value); model.save_changes(); });
  logBox.addEventListener("change", () => { model.set("log_scale", logBox.checked); model.save_changes(); });
  /** Send a view option typed as a number: empty clears an optional one; anything else not a number (or below
   * `min`) is refused in words.
   * @param {HTMLInputElement} input @param {"vmin" | "vmax" | "levels"} trait
   * @param {{integer?: boolean, min?: () => number, optional?: boolean}} [rule] */
  const numberOption = (input, trait, { integer = false, min = () => -Infinity, optional = true } = {}) => {
    input.addEventListener("change", () => {
      const text = input.value.trim();
      if (text === "" && optional) { model.set(trait, null); model.save_changes(); markInvalid(input, false); return; }
      const v = Number(text);
      const lo = min();
      if (!Number.isFinite(v) || (integer && !Number.isInteger(v)) || v < lo) {
        markInvalid(input, true);
        ctx.showError(`${trait} "${text}" is not ${integer ? `a whole number ≥ ${lo}` : "a number"}`);
        return;
      }
      markInvalid(input, false);
      model.set(trait, v);
      model.save_changes();
    });
  };
  numberOption(vminIn, "vmin");
  numberOption(vmaxIn, "vmax");
  // disabled, and refusing every value, until the kernel's limits arrive
  numberOption(levelsIn, "levels", { integer: true, min: () => ctx.state.options.limits?.levels_min ?? Infinity, optional: false });

  /** @param {string} cls */
  const cell = (cls) => el("div", { class: `lv-cell ${cls}` });
  const scatterCell = cell("lv-cell-scatter"), metricsCell = cell("lv-cell-metrics");
  const contourCell = cell("lv-cell-contour"), surfaceCell = cell("lv-cell-3d"), linesCell = cell("lv-cell-lines");
  const branchCell = el("div", { class: "lv-panel lv-panel-branch" }), projectCell = el("div", { class: "lv-panel lv-panel-project" });
  const legend = el("div", { class: "lv-legend", "aria-label": "branch colours (click: hide or show a branch)" });
  const outliersBox = el("input", { type: "checkbox", class: "lv-include-outliers",
    title: "project outlying and diverged checkpoints too (default: left out, marked with a red x)" });
  const outlierText = el("span", { class: "lv-outlier-note" });
  const showHidden = button("lv-show-hidden", "show hidden", "show every hidden checkpoint and branch again", () => {
    model.set("hidden", []); model.set("hidden_branches", []); model.save_changes();
  });
  const shownRow = el("div", { class: "lv-shown" }, el("label", {}, outliersBox, el("span", { text: "include outliers" })), outlierText, showHidden);
  outliersBox.addEventListener("change", () => ctx.setTrait("include_outliers", outliersBox.checked));
  const left = el("div", { class: "lv-col lv-col-left" }, legend, shownRow, scatterCell, metricsCell);
  const middle = el("div", { class: "lv-col lv-col-middle" }, viewOpts, el("div", { class: "lv-surface-views" }, contourCell, surfaceCell), linesCell);
  const branch = createBranchPanel(branchCell, ctx);
  const project = createProjectPanel(projectCell, ctx);
  const viewsCell = el("div", { class: "lv-panel lv-panel-views" });
  const research = createResearchControls(ctx);  // Connect and Spectrum (js/connect.js)
  branchCell.append(research.el);
  const spectrumCell = el("div", { class: "lv-panel lv-panel-spectrum" });
  // the branch form and its buttons stay in view; jobs, distances, projects and saved views are tabs below,
  // each a bounded, scrolling box
  const panelTabs = tabs("lv-panel-tabs", [["jobs", "jobs", branch.jobsBox], ["distances", "distances", branch.distBox],
    ["projects", "projects", projectCell], ["views", "saved views", viewsCell], ["spectrum", "spectrum", spectrumCell]]);
  const right = el("div", { class: "lv-col lv-col-right" }, branchCell, panelTabs.el);
  // a dead widget (kernel restarted, widget closed) says so over everything and takes no actions
  let dead = false;
  const deadBox = el("div", { class: "lv-dead", role: "alert" }, el("div", { class: "lv-dead-card" },
    el("b", { text: "This Explorer is disconnected from its kernel" }),
    el("span", { text: "The kernel restarted or the widget was closed: re-run the cell to get a live Explorer." })));
  deadBox.hidden = true;
  function markDead() {
    if (dead) return;
    dead = true;
    deadBox.hidden = false;
    box.classList.add("lv-is-dead");
    box.dataset.dead = "true";
  }
  box.append(toolbar, banner, el("div", { class: "lv-main" }, left, middle, right), deadBox);
  root.append(box);
  // keys typed into the widget stay in it: JupyterLab (which listens for keydown bubbling to the document)
  // would take `r`, `m`, `y`, `a`, `b`, `d d` ... in a focused select or input as notebook shortcuts
  box.addEventListener("keydown", (e) => { if (keepsKey(e)) e.stopPropagation(); });

  const views = {
    scatter: createScatter(scatterCell, ctx), metrics: createMetrics(metricsCell, ctx), contour: createContour(contourCell, ctx),
    surface3d: createSurface3d(surfaceCell, ctx), lines: createLines(linesCell, ctx),
  };
  const viewsPanel = createViewsPanel(viewsCell, ctx, model, views);
  const spectrum = createSpectrum(spectrumCell, ctx, () => model.get("spectrum"));

  function renderToolbar() {
    const s = ctx.state;
    const { projections = [], contour_modes: modes = [], limits } = s.options;
    setOptions(projSel, projections);
    projSel.value = s.projection.method || model.get("projection_method");
    setOptions(colorSel, ["branch", ...s.table.metricNames]);
    colorSel.value = s.colorBy;
    setOptions(metricSel, s.surface?.metrics?.length ? s.surface.metrics : [s.surfaceMetric]);
    metricSel.value = s.surfaceMetric;
    setOptions(modeSel, modes);
    modeSel.value = s.view.mode;
    logBox.checked = Boolean(s.view.log);
    if (document.activeElement !== vminIn) vminIn.value = String(s.view.vmin ?? "");
    if (document.activeElement !== vmaxIn) vmaxIn.value = String(s.view.vmax ?? "");
    if (document.activeElement !== levelsIn) levelsIn.value = String(s.view.levels);
    levelsIn.disabled = !limits;
    levelsIn.title = limits ? `number of contour levels (${limits.levels_min} to ${limits.levels_max})` : "number of contour levels";
    distBtn.title = limits ? `distances between the selected checkpoints (2 to ${limits.max_distances})`
      : "distances between the selected checkpoints";
    const p = s.surface ? s.surface.progress : 0;
    progressFill.style.width = `${Math.round(100 * p)}%`;
    progress.title = s.surface ? `${s.surface.done}/${s.surface.total} points computed` : "no surface";
    selNone.disabled = s.selection.length === 0;
    criticalBox.checked = s.showCritical;
    const stored = model.get("stored_surfaces") ?? [];
    const keys = stored.map((e) => e.key).join();
    if (storedSel.dataset.keys !== keys) {  // rebuilt only when the list changed (an open select stays open)
      storedSel.replaceChildren(el("option", { value: "", text: stored.length ? `stored surfaces (${stored.length})` : "no stored surface" }),
        ...stored.map((e) => el("option", { value: e.key, text: e.label })));
      storedSel.dataset.keys = keys;
    }
    storedSel.disabled = !stored.length;
  }
  /** The row above the scatter: the outliers toggle and note, and "show hidden (n)". */
  function renderShown() {
    const s = ctx.state;
    outliersBox.checked = s.includeOutliers;
    const note = s.includeOutliers ? "" : outlierNote(s.outliers, { placed: s.projection.method === "layout" });
    outlierText.textContent = note;
    outlierText.hidden = !note;
    const n = hiddenCount(s.table, s.hiddenSet);
    showHidden.textContent = `show hidden (${n})`;
    showHidden.hidden = n === 0 && !s.hiddenBranches.length;
    shownRow.dataset.hidden = String(n);
  }
  function renderBanner() {
    const err = ctx.state.error || localError;
    errorText.textContent = err;
    errorBox.hidden = !err;
    messageBox.textContent = ctx.state.message;
    messageBox.hidden = !ctx.state.message;
  }
  /** @type {Record<Part, () => void>} */
  const renderers = {
    scatter: () => views.scatter.render(), metrics: () => views.metrics.render(), contour: () => views.contour.render(),
    surface3d: () => views.surface3d.render(), lines: () => views.lines.render(), form: () => branch.renderForm(),
    jobs: () => branch.renderJobs(), distances: () => branch.renderDistances(), project: () => project.render(),
    toolbar: renderToolbar, banner: renderBanner, colorBy: renderToolbar, legend: () => views.scatter.renderLegend(legend),
    manage: () => branch.renderManage(), shown: renderShown,
    research: () => research.render(),
    spectrum: () => { if (isSpectrumShown()) panelTabs.show("spectrum"); spectrum.render(); },
  };
  /** A new spectrum arrived (its tab comes to the front once per result). */
  let spectrumSeen = /** @type {unknown} */ (null);
  function isSpectrumShown() {
    const sp = model.get("spectrum");
    const fresh = sp !== spectrumSeen && sp && Object.keys(sp).length > 0;
    spectrumSeen = sp;
    return Boolean(fresh);
  }

  // ------------------------------------------------------------------ batching of redraws
  // Changes are coalesced into one redraw per animation frame. The heavy views (contour, 3-D) redraw at most
  // every HEAVY_INTERVAL_MS and one per frame, so a big grid filling never holds the page for long.
  /** @type {Set<Part>} */
  const dirty = new Set();
  let frame = 0;
  /** @type {ReturnType<typeof setTimeout> | 0} */
  let later = 0;
  /** @type {Partial<Record<Part, number>>} */
  const drawnAt = {};
  /** @type {[Part, number, number][]} */
  const timings = []; // the last redraws and their milliseconds (for tests and the benchmark)
  /** @type {[string, number | null, number, string][]} */
  const scatterFrames = []; // each scatter redraw: [method drawn, its checkpoint count, points drawn, dropdown]
  /** @param {Iterable<Part>} names */
  function schedule(names) {
    for (const n of names) dirty.add(n);
    if (!frame && !later) frame = requestAnimationFrame(flush);
  }
  function flush() {
    frame = 0;
    later = 0;
    ctx.state = readState(model);
    const now = performance.now();
    let heavyDrawn = false;
    let wait = Infinity;
    // a heavy view is drawn alone in its frame (the light ones wait for the next)
    const heavyDue = [...dirty].find((n) => HEAVY_PARTS.includes(n) && (drawnAt[n] ?? -Infinity) + HEAVY_INTERVAL_MS <= now);
    for (const n of heavyDue ? [heavyDue] : [...dirty]) {
      if (HEAVY_PARTS.includes(n)) {
        const due = (drawnAt[n] ?? -Infinity) + HEAVY_INTERVAL_MS - now;
        if (heavyDrawn || due > 0) { wait = Math.min(wait, Math.max(due, 16)); continue; }
        heavyDrawn = true;
        drawnAt[n] = now;
      }
      dirty.delete(n);
      const t0 = performance.now();
      try {
        renderers[n]();
        timings.push([n, Math.round(performance.now() - t0), Math.round(t0)]);
        if (timings.length > 100) timings.shift();
        if (n === "scatter") {
          const p = ctx.state.projection;
          scatterFrames.push([p.method, p.count, Number(views.scatter.el.parentElement?.dataset.points), String(model.get("projection_method"))]);
          if (scatterFrames.length > 2000) scatterFrames.shift();
        }
      } catch (err) {
        console.error(`lossviz: drawing ${n} failed`, err);
        errorText.textContent = `drawing ${n} failed: ${err instanceof Error ? err.message : String(err)}`;
        errorBox.hidden = false;
      }
    }
    if (dirty.size) later = setTimeout(() => { later = 0; frame = requestAnimationFrame(flush); }, Number.isFinite(wait) ? wait : 16);
  }
  /** @type {[`change:${keyof Traits}`, () => void][]} */
  const handlers = [];
  for (const [trait, names] of /** @type {[keyof Traits, Part[]][]} */ (Object.entries(DEPENDS))) {
    const fn = () => schedule(names);
    model.on(`change:${trait}`, fn);
    handlers.push([`change:${trait}`, fn]);
  }
  /** @param {unknown} msg @param {DataView<ArrayBuffer>[]} buffers */
  const onMsg = (msg, buffers) => {
    const m = /** @type {{type?: string, filename?: string, mime?: string} | null} */ (msg);
    if (m && m.type === "download" && buffers && buffers.length) download(String(m.filename), String(m.mime), buffers[0]);
  };
  model.on("msg:custom", onMsg);
  // the kernel restarted (the widget manager marks every model's comm dead) or closed the widget
  model.on("comm_live_update", markDead);
  model.on("comm:close", markDead);

  // first draw once the element is in the page (plotly needs its size)
  schedule(/** @type {Part[]} */ (Object.keys(renderers)));
  const resize = new ResizeObserver(() => {
    for (const v of Object.values(views)) if (v.el && v.el._fullLayout) Plotly.Plots.resize(v.el);
  });
  resize.observe(box);
  box.__lossviz = { ctx, views, branch, model, viewsPanel, panelTabs, timings, scatterFrames };

  return () => {
    resize.disconnect();
    for (const [ev, fn] of handlers) model.off(ev, fn);
    model.off("msg:custom", onMsg);
    model.off("comm_live_update", markDead);
    model.off("comm:close", markDead);
    cancelAnimationFrame(frame);
    clearTimeout(later);
    for (const v of Object.values(views)) v.destroy();
    spectrum.destroy();
  };
}

export default { render };
