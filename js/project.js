// @ts-check
// Project panel: list the projects under a root folder, open one, create a new one from zoo names (the
// kernel's create_defaults chosen first, and a data root). The kernel's errors of each control
// (`control_errors`: list_projects, open_project, create_project) show next to it, and go when it is used again.
import { button, el, setOptions } from "./dom.js";
import { fieldNamed, parseField } from "./form.js";
import { controlError } from "./visibility.js";

/** @import { Ctx } from "./types" */

/** The project panel in its container.
 * @param {HTMLElement} container @param {Ctx} ctx */
export function createProjectPanel(container, ctx) {
  container.classList.add("lv-project");
  const current = el("div", { class: "lv-project-current" });
  const root = el("input", { type: "text", class: "lv-root", spellcheck: "false", placeholder: "folder holding projects" });
  /** @type {Set<string>} */
  const cleared = new Set();  // controls used again since the kernel's error: its note is gone until a new one arrives
  /** @param {string} control @param {object} msg */
  const use = (control, msg) => { cleared.add(control); render(); ctx.send(msg); };
  const list = button("lv-list", "List", undefined, () => use("list_projects", { type: "list_projects", root: root.value.trim() }));
  const listError = el("div", { class: "lv-control-error", "data-control": "list_projects" });
  const openError = el("div", { class: "lv-control-error", "data-control": "open_project" });
  const createError = el("div", { class: "lv-control-error", "data-control": "create_project" });
  const table = el("div", { class: "lv-project-list" });
  const name = el("input", { type: "text", class: "lv-new-name", placeholder: "new project name", spellcheck: "false" });
  const model = el("select", { class: "lv-new-model" });
  const data = el("select", { class: "lv-new-data" });
  const optimizer = el("select", { class: "lv-new-optimizer" });
  const lr = el("input", { type: "text", class: "lv-new-lr", value: "0.1", title: "initial learning rate" });
  const dataRoot = el("input", { type: "text", class: "lv-new-data-root", placeholder: "data root (optional)", spellcheck: "false",
    title: "the folder that holds the data set's files (empty: the data set's default; the zoo's small sets need none)" });
  const create = button("lv-create", "Create", undefined, () => {
    const spec = fieldNamed(ctx.state.options.fields ?? [], "lr");
    if (!spec) return;  // the kernel's fields have not arrived
    const p = parseField(spec, lr.value);
    if (p.error !== undefined) { ctx.showError(p.error); return; }
    if (!name.value.trim()) { ctx.showError("new project name is empty: type a folder name"); return; }
    /** @type {Record<string, unknown>} */
    const msg = { type: "create_project", path: name.value.trim(), model: model.value, data: data.value,
      hparams: { lr: p.value, optimizer: optimizer.value } };
    if (dataRoot.value.trim()) msg.data_root = dataRoot.value.trim();
    use("create_project", msg);
  });
  container.append(current, el("div", { class: "lv-row" }, root, list), listError, table, openError,
    el("div", { class: "lv-row" }, name, model, data), el("div", { class: "lv-row" }, dataRoot),
    el("div", { class: "lv-row" }, optimizer, lr, create), createError);
  let defaultsFrom = "";  // the kernel's create_defaults last chosen: chosen again only when they change
  /** @type {Record<string, string>} */
  let lastErrors = {};

  function render() {
    const s = ctx.state;
    const opts = s.options;
    setOptions(model, opts.models ?? []);
    setOptions(data, opts.datasets ?? []);
    setOptions(optimizer, opts.optimizers ?? []);
    const defaults = opts.create_defaults;
    if (defaults && JSON.stringify(defaults) !== defaultsFrom && (opts.models ?? []).length) {
      if (defaults.model) model.value = defaults.model;
      if (defaults.data) data.value = defaults.data;
      defaultsFrom = JSON.stringify(defaults);
    }
    const errors = s.controlErrors ?? {};
    for (const c of cleared) if (errors[c] !== undefined && errors[c] !== lastErrors[c]) cleared.delete(c);  // a new error
    lastErrors = { ...errors };
    for (const [box, control] of /** @type {[HTMLElement, string][]} */ ([[listError, "list_projects"], [openError, "open_project"], [createError, "create_project"]])) {
      const text = cleared.has(control) ? "" : controlError(errors, control);
      box.textContent = text;
      box.hidden = !text;
    }
    if (document.activeElement !== root) root.value = s.projectRoot ?? "";
    current.innerHTML = s.project?.path ? `project <b>${s.project.name}</b> <span class="lv-muted">${s.project.path}</span>` : "no project";
    const rows = (s.projects ?? []).map((p) => {
      const open = button("lv-open", "Open", undefined, () => use("open_project", { type: "open_project", path: p.path }));
      const tr = el("tr", {}, el("td", { text: p.name ?? p.path }), el("td", { text: `${p.model ?? ""} / ${p.data ?? ""}` }),
        el("td", { text: String(p.n_checkpoints ?? "") }), el("td", {}, open));
      tr.dataset.path = p.path;
      return tr;
    });
    table.replaceChildren(rows.length ? el("table", {}, ...rows) : el("span", { class: "lv-muted", text: "List shows the projects in the folder" }));
  }
  return { render };
}
