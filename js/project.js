// @ts-check
// Project panel: list the projects under a root folder, open one, create a new one from zoo names.
import { button, el, setOptions } from "./dom.js";
import { fieldNamed, parseField } from "./form.js";

/** @import { Ctx } from "./types" */

/** The project panel in its container.
 * @param {HTMLElement} container @param {Ctx} ctx */
export function createProjectPanel(container, ctx) {
  container.classList.add("lv-project");
  const current = el("div", { class: "lv-project-current" });
  const root = el("input", { type: "text", class: "lv-root", spellcheck: "false", placeholder: "folder holding projects" });
  const list = button("lv-list", "List", undefined, () => ctx.send({ type: "list_projects", root: root.value.trim() }));
  const table = el("div", { class: "lv-project-list" });
  const name = el("input", { type: "text", class: "lv-new-name", placeholder: "new project name", spellcheck: "false" });
  const model = el("select", { class: "lv-new-model" });
  const data = el("select", { class: "lv-new-data" });
  const optimizer = el("select", { class: "lv-new-optimizer" });
  const lr = el("input", { type: "text", class: "lv-new-lr", value: "0.1", title: "initial learning rate" });
  const create = button("lv-create", "Create", undefined, () => {
    const spec = fieldNamed(ctx.state.options.fields ?? [], "lr");
    if (!spec) return;  // the kernel's fields have not arrived
    const p = parseField(spec, lr.value);
    if (p.error !== undefined) { ctx.showError(p.error); return; }
    if (!name.value.trim()) { ctx.showError("new project name is empty: type a folder name"); return; }
    ctx.send({ type: "create_project", path: name.value.trim(), model: model.value, data: data.value,
      hparams: { lr: p.value, optimizer: optimizer.value } });
  });
  container.append(current, el("div", { class: "lv-row" }, root, list), table,
    el("div", { class: "lv-row" }, name, model, data), el("div", { class: "lv-row" }, optimizer, lr, create));

  function render() {
    const s = ctx.state;
    const opts = s.options;
    setOptions(model, opts.models ?? []);
    setOptions(data, opts.datasets ?? []);
    setOptions(optimizer, opts.optimizers ?? []);
    if (document.activeElement !== root) root.value = s.projectRoot ?? "";
    current.innerHTML = s.project?.path ? `project <b>${s.project.name}</b> <span class="lv-muted">${s.project.path}</span>` : "no project";
    const rows = (s.projects ?? []).map((p) => {
      const open = button("lv-open", "Open", undefined, () => ctx.send({ type: "open_project", path: p.path }));
      const tr = el("tr", {}, el("td", { text: p.name ?? p.path }), el("td", { text: `${p.model ?? ""} / ${p.data ?? ""}` }),
        el("td", { text: String(p.n_checkpoints ?? "") }), el("td", {}, open));
      tr.dataset.path = p.path;
      return tr;
    });
    table.replaceChildren(rows.length ? el("table", {}, ...rows) : el("span", { class: "lv-muted", text: "List shows the projects in the folder" }));
  }
  return { render };
}
