// @ts-check
// Saved views and standalone exports. A view snapshot (FlowEr's "save the view") holds what the user set up:
// projection, colouring, selection, open checkpoint, surface view options, and the zoom of the scatter, the
// contour and the 3-D camera; it is kept in the widget, downloaded as JSON, and restored from either. The
// HTML export sends the current figures (plain JSON) to the kernel, which writes a standalone page with
// plotly.js inlined (lossviz/widget/standalone.py) and sends it back as a download.
import { button, download, el } from "./dom.js";

/** @import { AnyModel, Ctx, Traits, View } from "./types" */

/** The traits a snapshot restores, with the check each stored value must pass.
 * @type {Record<string, (v: unknown) => boolean>} */
export const SNAPSHOT_TRAITS = {
  projection_method: (v) => typeof v === "string",
  color_by: (v) => typeof v === "string",
  selection: (v) => Array.isArray(v) && v.every((i) => Number.isInteger(i)),
  clicked: (v) => v === null || Number.isInteger(v),
  surface_metric: (v) => typeof v === "string",
  contour_mode: (v) => typeof v === "string",
  log_scale: (v) => typeof v === "boolean",
  vmin: (v) => v === null || Number.isFinite(v),
  vmax: (v) => v === null || Number.isFinite(v),
  levels: (v) => Number.isInteger(v),
  include_outliers: (v) => typeof v === "boolean",
  hidden: (v) => Array.isArray(v) && v.every((i) => Number.isInteger(i)),
  hidden_branches: (v) => Array.isArray(v) && v.every((i) => Number.isInteger(i)),
  show_critical: (v) => typeof v === "boolean",
};

/** A saved view.
 * @typedef {{lossviz_view: 1, name: string, saved: string, traits: Record<string, unknown>,
 *   scatter: {method: string, x: number[], y: number[]} | null, contour: {x: number[], y: number[]} | null,
 *   camera: object | null}} Snapshot */

/** @param {unknown} r @returns {r is number[]} */
const isRange = (r) => Array.isArray(r) && r.length === 2 && r.every((v) => Number.isFinite(v)) && r[0] !== r[1];

/** Check a snapshot read from a file (untrusted): the words of the first problem, or "" when it is good.
 * @param {unknown} snap @returns {string} */
export function snapshotProblem(snap) {
  if (!snap || typeof snap !== "object") return "a saved view must be a JSON object";
  const s = /** @type {Record<string, unknown>} */ (snap);
  if (s.lossviz_view !== 1) return "not a lossviz saved view (no \"lossviz_view\": 1): save one with Save view";
  const traits = /** @type {Record<string, unknown>} */ (s.traits ?? {});
  if (typeof traits !== "object") return "the saved view's \"traits\" must be an object";
  for (const [k, v] of Object.entries(traits)) {
    const check = SNAPSHOT_TRAITS[k];
    if (!check) return `the saved view sets "${k}", which a view does not have: use one saved by lossviz`;
    if (!check(v)) return `the saved view's "${k}" (${JSON.stringify(v)}) is not valid: save the view again`;
  }
  const sc = /** @type {{x?: unknown, y?: unknown} | null} */ (s.scatter ?? null);
  if (sc && !(isRange(sc.x) && isRange(sc.y))) return "the saved view's scatter zoom is not two [min, max] ranges";
  const co = /** @type {{x?: unknown, y?: unknown} | null} */ (s.contour ?? null);
  if (co && !(isRange(co.x) && isRange(co.y))) return "the saved view's contour zoom is not two [min, max] ranges";
  return "";
}

/** Plain JSON of plotly figure data: typed arrays become arrays (NaN -> null in JSON), functions and DOM go.
 * @param {unknown} v @returns {unknown} */
export function plainJson(v) {
  if (ArrayBuffer.isView(v) && !(v instanceof DataView)) return Array.from(/** @type {ArrayLike<number>} */ (/** @type {unknown} */ (v)));
  if (Array.isArray(v)) return v.map(plainJson);
  if (v && typeof v === "object") {
    if (typeof Node !== "undefined" && v instanceof Node) return undefined;
    /** @type {Record<string, unknown>} */
    const out = {};
    for (const [k, x] of Object.entries(v)) {
      if (k.startsWith("_") || typeof x === "function") continue;
      out[k] = plainJson(x);
    }
    return out;
  }
  return typeof v === "function" ? undefined : v;
}

/** A figure as the standalone page draws it: plotly's own zoom and hover (the widget's gestures are ours and
 * stay behind), checkpoints named in the hover where the trace carries their ids.
 * @param {string} name @param {{data?: object[], layout?: object}} plot
 * @returns {{name: string, data: unknown, layout: Record<string, unknown>}} */
export function standaloneFigure(name, plot) {
  const data = /** @type {Record<string, unknown>[]} */ (plainJson(plot.data ?? []));
  for (const t of data) {
    if (t.hoverinfo === "none" && t.customdata) { delete t.hoverinfo; t.hovertemplate = "checkpoint %{customdata}<extra></extra>"; }
  }
  const layout = /** @type {Record<string, unknown>} */ (plainJson(plot.layout ?? {}));
  delete layout.uirevision;
  delete layout.height;
  layout.dragmode = name === "surface3d" ? "turntable" : "zoom";
  layout.hovermode = "closest";
  layout.autosize = true;
  return { name, data, layout };
}

/** The saved-views panel (and the HTML export) in its container.
 * @param {HTMLElement} container @param {Ctx} ctx @param {AnyModel} model
 * @param {Record<string, View & {viewRanges?: () => {method: string, x: number[], y: number[]} | null,
 *   restoreRanges?: (r: {method: string, x: number[], y: number[]}) => void}>} views */
export function createViewsPanel(container, ctx, model, views) {
  /** @type {Snapshot[]} */
  const saved = [];
  const list = el("div", { class: "lv-snapshots" });
  const file = el("input", { type: "file", accept: ".json,application/json", class: "lv-snapshot-file" });
  file.hidden = true;
  const saveBtn = button("lv-save-view", "Save view", "keep the projection, selection, options and zoom (and download them as JSON)",
    () => { const snap = take(); saved.push(snap); renderList(); download(`${snap.name}.json`, "application/json", JSON.stringify(snap, null, 1)); });
  const loadBtn = button("lv-load-view", "Restore from file…", "restore a view saved as JSON", () => file.click());
  file.addEventListener("change", async () => {
    const f = file.files?.[0];
    file.value = "";
    if (!f) return;
    /** @type {unknown} */
    let snap;
    try { snap = JSON.parse(await f.text()); } catch { ctx.showError(`${f.name} is not JSON: choose a view saved by Save view`); return; }
    restore(snap);
  });
  container.append(el("div", { class: "lv-row" }, saveBtn, loadBtn, file), list);

  /** @returns {Snapshot} */
  function take() {
    /** @type {Record<string, unknown>} */
    const traits = {};
    for (const k of Object.keys(SNAPSHOT_TRAITS)) traits[k] = plainJson(model.get(/** @type {keyof Traits} */ (k)));
    const co = views.contour.el._fullLayout;
    const contourZoom = co?.xaxis && ctx.state.surface ? { x: co.xaxis.range.slice(), y: co.yaxis.range.slice() } : null;
    const scene = /** @type {{scene?: {camera?: object}} | undefined} */ (/** @type {unknown} */ (views.surface3d.el._fullLayout))?.scene;
    const stamp = new Date().toISOString();
    return { lossviz_view: 1, name: `lossviz-view-${saved.length + 1}`, saved: stamp, traits,
      scatter: views.scatter.viewRanges?.() ?? null, contour: contourZoom, camera: scene?.camera ? plainJson(scene.camera) ?? null : null };
  }

  /** Restore a snapshot (checked first: a file is untrusted). @param {unknown} snapIn */
  function restore(snapIn) {
    const problem = snapshotProblem(snapIn);
    if (problem) { ctx.showError(`cannot restore the view: ${problem}`); return; }
    const snap = /** @type {Snapshot} */ (snapIn);
    for (const [k, v] of Object.entries(snap.traits ?? {})) model.set(/** @type {keyof Traits} */ (k), /** @type {never} */ (v));
    model.save_changes();
    if (snap.scatter) views.scatter.restoreRanges?.(snap.scatter);
    const { Plotly } = ctx;
    // the contour and 3-D are redrawn from the traits first; their zoom is applied after that redraw
    setTimeout(() => {
      if (snap.contour && views.contour.el._fullLayout) Plotly.relayout(views.contour.el, { "xaxis.range": snap.contour.x, "yaxis.range": snap.contour.y });
      if (snap.camera && views.surface3d.el._fullLayout) Plotly.relayout(views.surface3d.el, { "scene.camera": snap.camera });
    }, 500);
    container.dataset.restored = snap.name;
  }

  function renderList() {
    list.replaceChildren(...saved.map((snap) => {
      const b = button("lv-restore-view", "Restore", `restore ${snap.name}`, () => restore(snap));
      const row = el("div", { class: "lv-snapshot" }, el("span", { text: `${snap.name} · ${snap.saved.slice(11, 19)}` }), b);
      row.dataset.name = snap.name;
      return row;
    }));
  }

  /** Send the current figures to the kernel for a standalone HTML page. */
  function exportHtml() {
    /** @type {ReturnType<typeof standaloneFigure>[]} */
    const figures = [];
    for (const [name, v] of Object.entries(views)) {
      const p = /** @type {{data?: object[], layout?: object}} */ (/** @type {unknown} */ (v.el));
      if (p.data && p.data.length && (v.isShown?.() ?? true)) figures.push(standaloneFigure(name, p));
    }
    if (!figures.length) { ctx.showError("there is nothing drawn to export yet"); return; }
    ctx.send({ type: "export_html", figures, title: `lossviz · ${ctx.state.project?.name || "Explorer"}` });
  }

  renderList();
  return { take, restore, exportHtml, saved };
}
