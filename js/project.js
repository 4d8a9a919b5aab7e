// Project panel: list the projects under a root folder, open one, create a new one from zoo names.
import { el } from "./branch.js";
import { parseField } from "./form.js";

export function createProjectPanel(container, ctx) {
  container.classList.add("lv-project");
  const current = el("div", { class: "lv-project-current" });
  const root = el("input", { type: "text", class: "lv-root", spellcheck: "false", placeholder: "folder holding projects" });
  const list = el("button", { type: "button", class: "lv-btn lv-list", text: "List" });
  const table = el("div", { class: "lv-project-list" });
  const name = el("input", { type: "text", class: "lv-new-name", placeholder: "new project name", spellcheck: "false" });
  const model = el("select", { class: "lv-new-model" });
  const data = el("select", { class: "lv-new-data" });
  const optimizer = el("select", { class: "lv-new-optimizer" });
  const lr = el("input", { type: "text", class: "lv-new-lr", value: "0.1", title: "initial learning rate" });
  const create = el("button", { type: "button", class: "lv-btn lv-create", text: "Create" });
  container.append(current, el("div", { class: "lv-row" }, root, list), table,
    el("div", { class: "lv-row" }, name, model, data), el("div", { class: "lv-row" }, optimizer, lr, create));

  list.addEventListener("click", () => ctx.send({ type: "list_projects", root: root.value.trim() }));
  create.addEventListener("click", () => {
    const p = parseField({ name: "lr", label: "learning rate", type: "float", min: 0, minExclusive: true }, lr.value);
    if (p.error) { ctx.showError(p.error); return; }
    if (!name.value.trim()) { ctx.showError("new project name is empty: type a folder name"); return; }
    ctx.send({ type: "create_project", path: name.value.trim(), model: model.value, data: data.value,
      hparams: { lr: p.value, optimizer: optimizer.value } });
  });

  const fill = (sel, values) => {
    if (Array.from(sel.options).map((o) => o.value).join("|") === values.join("|")) return;
    sel.replaceChildren(...values.map((v) => el("option", { value: v, text: v })));
  };

  function render() {
    const s = ctx.state;
    const opts = s.options ?? {};
    fill(model, opts.models ?? []);
    fill(data, opts.datasets ?? []);
    fill(optimizer, opts.optimizers ?? []);
    if (document.activeElement !== root) root.value = s.projectRoot ?? "";
    current.innerHTML = s.project?.path ? `project <b>${s.project.name}</b> <span class="lv-muted">${s.project.path}</span>` : "no project";
    const rows = (s.projects ?? []).map((p) => {
      const open = el("button", { type: "button", class: "lv-btn lv-open", text: "Open" });
      open.addEventListener("click", () => ctx.send({ type: "open_project", path: p.path }));
      const tr = el("tr", {}, el("td", { text: p.name ?? p.path }), el("td", { text: `${p.model ?? ""} / ${p.data ?? ""}` }),
        el("td", { text: String(p.n_checkpoints ?? "") }), el("td", {}, open));
      tr.dataset.path = p.path;
      return tr;
    });
    table.replaceChildren(rows.length ? el("table", {}, ...rows) : el("span", { class: "lv-muted", text: "List shows the projects in the folder" }));
  }
  return { render };
}
