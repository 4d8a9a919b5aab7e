// Branch panel: the clicked checkpoint's hyperparameters in a form (edited fields marked), Train / Disturb /
// Interpolate / Surface, the jobs with progress bars and Cancel, and distances between selected checkpoints.
import { FIELDS, TRAIN_FIELDS, parseFields, displayValue, isEdited, surfaceMessage } from "./form.js";
import { fmt } from "./codecs.js";

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c) e.append(c);
  return e;
}
export { el };

export function createBranchPanel(container, ctx) {
  container.classList.add("lv-branch");
  const header = el("div", { class: "lv-branch-header" });
  const form = el("form", { class: "lv-form", autocomplete: "off" });
  form.addEventListener("submit", (e) => e.preventDefault());
  const inputs = {};
  const notes = {};
  for (const f of FIELDS) {
    let input;
    if (f.type === "bool") {
      input = el("input", { type: "checkbox", name: f.name });
      if (f.hint) input.title = f.hint;
    } else if (f.type === "choice") {
      input = el("select", { name: f.name });
    } else {
      input = el("input", { type: "text", name: f.name, spellcheck: "false" });
      if (f.hint) input.title = f.hint;
    }
    input.dataset.field = f.name;
    input.addEventListener("input", () => markEdited(f.name));
    input.addEventListener("change", () => markEdited(f.name));
    inputs[f.name] = input;
    notes[f.name] = el("div", { class: "lv-field-error" });
    form.append(el("label", { class: `lv-field lv-group-${f.group}`, "data-field": f.name }, el("span", { text: f.label }), input, notes[f.name]));
  }
  const buttons = el("div", { class: "lv-buttons" });
  const mk = (name, label, fn, title) => {
    const b = el("button", { type: "button", class: `lv-btn lv-${name}`, text: label, title: title ?? "" });
    b.dataset.action = name;
    b.addEventListener("click", fn);
    buttons.append(b);
    return b;
  };
  const jobsBox = el("div", { class: "lv-jobs" });
  const distBox = el("div", { class: "lv-distances" });
  container.append(header, form, buttons, el("div", { class: "lv-subtitle", text: "jobs" }), jobsBox, el("div", { class: "lv-subtitle", text: "distances between selected" }), distBox);

  let original = {};

  function raw(name) {
    const i = inputs[name];
    return i.type === "checkbox" ? i.checked : i.value;
  }
  function markEdited(name) {
    const f = FIELDS.find((q) => q.name === name);
    const edited = isEdited(f, raw(name), original[name]);
    inputs[name].closest(".lv-field").classList.toggle("lv-edited", edited);
    notes[name].textContent = "";
    inputs[name].classList.remove("lv-invalid");
  }
  function collect(names) {
    const rawValues = Object.fromEntries(names.map((n) => [n, raw(n)]));
    const { values, errors } = parseFields(rawValues, names);
    for (const n of names) {
      notes[n].textContent = errors[n] ?? "";
      inputs[n].classList.toggle("lv-invalid", Boolean(errors[n]));
    }
    const msgs = Object.values(errors);
    if (msgs.length) { ctx.showError(msgs.join("; ")); return null; }
    return values;
  }
  function needClicked(what) {
    if (ctx.state.clicked === null || ctx.state.clicked === undefined) {
      ctx.showError(`${what}: click a checkpoint in the trajectory first`);
      return false;
    }
    return true;
  }

  mk("train", "Train", () => {
    const v = collect([...TRAIN_FIELDS, "epochs"]);
    if (!v) return;
    const { epochs, ...hparams } = v;
    if (hparams.seed === null) delete hparams.seed;
    ctx.send({ type: "train", from: ctx.state.clicked ?? null, epochs, hparams });
  }, "train a new branch from the open checkpoint with these hyperparameters");
  mk("disturb", "Disturb", () => {
    if (!needClicked("Disturb")) return;
    const v = collect(["magnitude", "seed"]);
    if (!v) return;
    ctx.send({ type: "disturb", from: ctx.state.clicked, magnitude: v.magnitude, seed: v.seed });
  }, "make a new branch root: the open checkpoint plus random noise of this magnitude");
  mk("interpolate", "Interpolate", () => {
    const sel = ctx.state.selection;
    if (sel.length !== 2) { ctx.showError(`Interpolate needs exactly two selected checkpoints, ${sel.length} are selected`); return; }
    const v = collect(["n"]);
    if (!v) return;
    ctx.send({ type: "interpolate", a: sel[0], b: sel[1], n: v.n });
  }, "interpolate n points between the two selected checkpoints");
  mk("surface", "Surface", () => {
    if (!needClicked("Surface")) return;
    const v = collect(["directions", "range", "resolution", "adaptive"]);
    if (!v) return;
    ctx.send(surfaceMessage(v, ctx.state.clicked, ctx.state.selection));
  }, "compute a loss surface around the open checkpoint");
  mk("cancel", "Cancel", () => ctx.send({ type: "cancel" }), "cancel every running job");

  function fillOptions() {
    const opts = ctx.state.options ?? {};
    for (const f of FIELDS) {
      if (f.type !== "choice") continue;
      const sel = inputs[f.name];
      const values = opts[f.optionsKey] ?? [];
      const have = Array.from(sel.options).map((o) => o.value).join("|");
      if (have === values.join("|")) continue;
      sel.replaceChildren(...values.map((v) => el("option", { value: v, text: v })));
    }
  }

  function renderForm() {
    fillOptions();
    const s = ctx.state;
    original = { ...s.form };
    for (const f of FIELDS) {
      const i = inputs[f.name];
      const value = displayValue(f, s.form[f.name]);
      if (f.type === "bool") i.checked = value; else i.value = value;
      if (f.type === "choice" && value && !Array.from(i.options).some((o) => o.value === value)) i.append(el("option", { value, text: value }));
      if (f.type === "choice") i.value = value;
      markEdited(f.name);
    }
    const t = s.table;
    const id = s.clicked;
    if (id === null || id === undefined || !t.index.has(id)) {
      header.innerHTML = "<b>no checkpoint open</b> — click a point in the trajectory; Train with nothing open starts from the project's first checkpoint";
    } else {
      const r = t.index.get(id);
      header.innerHTML = `<b>checkpoint ${id}</b> · ${t.kinds[r]} · branch ${Math.round(t.branches[r])} · epoch ${fmt(t.epochs[r])}`
        + (t.metrics.train_loss ? ` · train loss ${fmt(t.metrics.train_loss[r])}` : "");
    }
    container.dataset.clicked = id === null || id === undefined ? "" : String(id);
  }

  // Job rows are keyed by job id and updated in place: progress arrives many times a second, and a row
  // rebuilt on every update would swallow a click on its Cancel button.
  const jobRows = new Map();
  function jobRow(id) {
    let row = jobRows.get(id);
    if (!row) {
      const title = el("span", { class: "lv-job-title" });
      const bar = el("div", { class: "lv-bar" }, el("div", { class: "lv-bar-fill" }));
      const msg = el("span", { class: "lv-job-msg" });
      const cancel = el("button", { type: "button", class: "lv-btn lv-job-cancel", text: "Cancel" });
      cancel.addEventListener("click", () => ctx.send({ type: "cancel", job: id }));
      row = el("div", { class: "lv-job" }, title, bar, msg, cancel);
      row.dataset.job = String(id);
      row.parts = { title, fill: bar.firstChild, msg, cancel };  // not row.title: that is the tooltip
      jobRows.set(id, row);
    }
    return row;
  }

  function renderJobs() {
    const jobs = (ctx.state.jobs ?? []).slice().reverse();
    const live = new Set(jobs.map((j) => j.id));
    for (const id of [...jobRows.keys()]) if (!live.has(id)) jobRows.delete(id);
    const rows = jobs.map((j) => {
      const row = jobRow(j.id);
      row.className = `lv-job lv-job-${j.state}`;
      row.dataset.state = j.state;
      const { title, fill, msg, cancel } = row.parts;
      title.textContent = `${j.kind} #${j.id} · ${j.state}`;
      fill.style.width = `${Math.round(100 * (j.progress ?? 0))}%`;
      msg.textContent = j.error ? j.error : `${j.done ?? 0}/${j.total ?? 0} ${j.message ?? ""}`;
      cancel.hidden = !(j.state === "running" || j.state === "queued");
      return row;
    });
    // re-append only when the order changed, so rows (and a button under the pointer) stay in the DOM
    const current = [...jobsBox.children];
    if (current.length !== rows.length || rows.some((r, i) => current[i] !== r)) jobsBox.replaceChildren(...rows);
  }

  function renderDistances() {
    const d = ctx.state.distances;
    if (!d || d.n < 2) {
      distBox.textContent = "select 2 or more checkpoints (Distances button for more than 16)";
      return;
    }
    const head = el("tr", {}, el("th", { text: "" }), ...d.ids.map((id) => el("th", { text: String(id) })));
    const body = d.ids.map((id, i) => el("tr", {}, el("th", { text: String(id) }), ...d.ids.map((_, j) => el("td", { text: fmt(d.d[i * d.n + j], 3) }))));
    distBox.replaceChildren(el("table", { class: "lv-dist-table" }, head, ...body));
  }

  return { renderForm, renderJobs, renderDistances, inputs };
}
