// @ts-check
// Branch panel: the clicked checkpoint's hyperparameters in a form (edited fields marked), Train / Disturb /
// Interpolate / Surface, the jobs with progress bars and Cancel, and distances between selected checkpoints.
// The form's fields are the kernel's (options.fields): until it sends them the form is empty.
import { trainFieldNames, parseFields, displayValue, isEdited, surfaceMessage, formUpdates, opensAnother } from "./form.js";
import { fmt } from "./codecs.js";
import { button, el, labelled, markInvalid, setOptions } from "./dom.js";
import { confirmsIds, timeLabel, withId } from "./visibility.js";

/** @import { FieldSpec } from "./form.js" */
/** @import { Ctx, JobRow } from "./types" */

/** One field's control in the form, its error note, and the label holding both.
 * @typedef {{spec: FieldSpec, input: HTMLInputElement | HTMLSelectElement, note: HTMLDivElement, label: HTMLLabelElement}} Control */

/** The control of one field: a checkbox, a select of its choices, or a text input.
 * @param {FieldSpec} f @returns {HTMLInputElement | HTMLSelectElement} */
function fieldInput(f) {
  if (f.type === "bool") return el("input", { type: "checkbox", name: f.name, title: f.hint });
  if (f.type === "choice") {
    const s = el("select", { name: f.name });
    setOptions(s, f.choices ?? []);
    return s;
  }
  return el("input", { type: "text", name: f.name, spellcheck: "false", title: f.hint });
}

/** The branch panel in its container.
 * @param {HTMLElement} container @param {Ctx} ctx */
export function createBranchPanel(container, ctx) {
  container.classList.add("lv-branch");
  const header = el("div", { class: "lv-branch-header" });
  const form = el("form", { class: "lv-form", autocomplete: "off", onsubmit: (e) => e.preventDefault() });
  const buttons = el("div", { class: "lv-buttons" });
  const jobsBox = el("div", { class: "lv-jobs" });
  const distBox = el("div", { class: "lv-distances" });
  // hide and delete the open checkpoint or its branch; a delete's confirmation shows right here
  const manage = el("div", { class: "lv-manage" });
  const confirmText = el("span", { class: "lv-confirm-text" });
  const confirmBox = el("div", { class: "lv-confirm", role: "alertdialog" }, confirmText,
    button("lv-confirm-yes", "Confirm", "delete them: this cannot be undone", () => {
      const ids = ctx.state.confirmDelete.ids ?? [];
      if (ids.length) ctx.send({ type: "delete", ids, confirm: true });
    }),
    button("lv-confirm-no", "Cancel", "keep them", () => ctx.send({ type: "cancel_delete" })));
  confirmBox.hidden = true;
  container.append(header, form, buttons, manage, confirmBox);  // the jobs and distances go in the panel's tabs (widget.js)

  /** @type {readonly FieldSpec[]} */
  let fields = [];
  let builtFrom = "";  // the fields (as JSON) the form's controls were built from
  /** @type {Map<string, Control>} */
  const controls = new Map();
  /** @type {Record<string, unknown>} */
  let original = {};

  /** (Re)build the form's controls when the kernel's fields change.
   * @param {readonly FieldSpec[]} specs @returns {boolean} true when the controls were (re)built */
  function buildForm(specs) {
    const key = JSON.stringify(specs);
    if (key === builtFrom) return false;
    builtFrom = key;
    fields = specs;
    controls.clear();
    for (const f of specs) {
      const input = fieldInput(f);
      input.dataset.field = f.name;
      input.addEventListener("input", () => markEdited(f.name));
      input.addEventListener("change", () => markEdited(f.name));
      const note = el("div", { class: "lv-field-error" });
      const label = labelled(f.label, input, note);
      /** @type {HTMLElement} */ (label.firstChild).title = f.hint ? `${f.label}: ${f.hint}` : f.label;  // shown whole on hover
      label.className = `lv-field lv-group-${f.group}`;
      label.dataset.field = f.name;
      controls.set(f.name, { spec: f, input, note, label });
    }
    form.replaceChildren(...Array.from(controls.values(), (c) => c.label));
    return true;
  }

  /** @param {string} name */
  function raw(name) {
    const i = controls.get(name)?.input;
    if (!i) return undefined;
    return i instanceof HTMLInputElement && i.type === "checkbox" ? i.checked : i.value;
  }
  /** @param {string} name */
  function markEdited(name) {
    const c = controls.get(name);
    if (!c) return;
    c.label.classList.toggle("lv-edited", isEdited(c.spec, raw(name), original[name]));
    c.note.textContent = "";
    markInvalid(c.input, false);
  }
  /** The parsed values of the named fields, or null (each refusal shown under its field and in the banner).
   * @param {readonly string[]} names @returns {Record<string, unknown> | null} */
  function collect(names) {
    if (!names.every((n) => controls.has(n))) return null;  // the kernel's fields have not arrived
    const rawValues = Object.fromEntries(names.map((n) => [n, raw(n)]));
    const { values, errors } = parseFields(fields, rawValues, names);
    for (const n of names) {
      const c = /** @type {Control} */ (controls.get(n));
      c.note.textContent = errors[n] ?? "";
      markInvalid(c.input, Boolean(errors[n]));
    }
    const msgs = Object.values(errors);
    if (msgs.length) { ctx.showError(msgs.join("; ")); return null; }
    return values;
  }
  /** @param {string} what @returns {boolean} */
  function needClicked(what) {
    if (ctx.state.clicked === null || ctx.state.clicked === undefined) {
      ctx.showError(`${what}: click a checkpoint in the trajectory first`);
      return false;
    }
    return true;
  }

  /** @param {string} name @param {string} label @param {() => void} fn @param {string} title */
  const action = (name, label, fn, title) => {
    const b = button(`lv-${name}`, label, title, fn);
    b.dataset.action = name;
    buttons.append(b);
  };
  action("train", "Train", () => {
    const v = collect([...trainFieldNames(fields), "epochs"]);
    if (!v) return;
    const { epochs, ...hparams } = v;
    if (hparams.seed === null) delete hparams.seed;
    ctx.send({ type: "train", from: ctx.state.clicked ?? null, epochs, hparams });
  }, "train a new branch from the open checkpoint with these hyperparameters");
  action("disturb", "Disturb", () => {
    if (!needClicked("Disturb")) return;
    const v = collect(["magnitude", "seed"]);
    if (!v) return;
    ctx.send({ type: "disturb", from: ctx.state.clicked, magnitude: v.magnitude, seed: v.seed });
  }, "make a new branch root: the open checkpoint plus random noise of this magnitude");
  action("interpolate", "Interpolate", () => {
    const sel = ctx.state.selection;
    if (sel.length !== 2) { ctx.showError(`Interpolate needs exactly two selected checkpoints, ${sel.length} are selected`); return; }
    const v = collect(["n"]);
    if (!v) return;
    ctx.send({ type: "interpolate", a: sel[0], b: sel[1], n: v.n });
  }, "interpolate n points between the two selected checkpoints");
  action("surface", "Surface", () => {
    if (!needClicked("Surface")) return;
    const v = collect(["directions", "range", "x_range", "y_range", "resolution", "adaptive"]);
    if (!v) return;
    ctx.send(surfaceMessage(v, ctx.state.clicked, ctx.state.selection));
  }, "compute a loss surface around the open checkpoint");
  action("cancel", "Cancel", () => ctx.send({ type: "cancel" }), "cancel every running job");
  action("reset", "Reset", () => renderForm({ reset: true }), "put the open checkpoint's values back into every field");

  /** The open checkpoint's id and branch, or null.
   * @returns {{id: number, branch: number} | null} */
  function opened() {
    const id = ctx.state.clicked;
    const r = id === null || id === undefined ? undefined : ctx.state.table.index.get(id);
    return r === undefined || id === null ? null : { id, branch: Math.round(ctx.state.table.branches[r]) };
  }
  /** @param {string} cls @param {string} label @param {string} title @param {(o: {id: number, branch: number}) => void} fn */
  const managing = (cls, label, title, fn) => {
    const b = button(cls, label, title, () => { const o = opened(); if (o) fn(o); else ctx.showError(`${label}: click a checkpoint in the trajectory first`); });
    manage.append(b);
    return b;
  };
  const hideBtn = managing("lv-hide", "Hide", "hide the open checkpoint from every view (show hidden brings it back)", (o) => {
    ctx.setTrait("hidden", withId(ctx.state.hidden, o.id));
    ctx.click(null);
  });
  const hideBranchBtn = managing("lv-hide-branch", "Hide branch", "hide the open checkpoint's branch from every view", (o) => {
    ctx.setTrait("hidden_branches", withId(ctx.state.hiddenBranches, o.branch));
    ctx.click(null);
  });
  const deleteBtn = managing("lv-delete", "Delete", "delete the open checkpoint and its file (asks first)",
    (o) => ctx.send({ type: "delete", ids: [o.id] }));
  const deleteBranchBtn = managing("lv-delete-branch", "Delete branch", "delete the open checkpoint's branch and all that grew from it (asks first)",
    (o) => ctx.send({ type: "delete", branch: o.branch }));

  /** The hide and delete controls (enabled with an open checkpoint) and the delete waiting for confirmation. */
  function renderManage() {
    const o = opened();
    for (const b of [hideBtn, hideBranchBtn, deleteBtn, deleteBranchBtn]) b.disabled = o === null;
    hideBranchBtn.textContent = o ? `Hide branch ${o.branch}` : "Hide branch";
    deleteBranchBtn.textContent = o ? `Delete branch ${o.branch}` : "Delete branch";
    const pending = ctx.state.confirmDelete;
    const asking = Boolean(pending.ids?.length);
    confirmBox.hidden = !asking;
    confirmText.textContent = asking ? (pending.text ?? `Delete ${pending.ids?.length} checkpoint(s)?`) : "";
    confirmBox.dataset.ids = asking ? (pending.ids ?? []).join(",") : "";
    // next to the button that asked: the open checkpoint's Delete when it is the one, else the branch's
    confirmBox.dataset.for = asking && o && confirmsIds(pending, [o.id]) ? "checkpoint" : asking ? "branch" : "";
  }

  /** @type {Record<string, unknown> | null} */
  let loaded = null;  // the kernel's form last loaded into the controls
  /** Show a value from the kernel in a field's control.
   * @param {Control} c @param {unknown} v */
  function show({ spec: f, input: i }, v) {
    const value = displayValue(f, v);
    if (i instanceof HTMLInputElement && i.type === "checkbox") i.checked = Boolean(value);
    else if (i instanceof HTMLSelectElement) {
      setOptions(i, f.choices ?? []);
      if (value && !Array.from(i.options).some((o) => o.value === value)) i.append(el("option", { value: String(value), text: String(value) }));
      i.value = String(value);
    } else i.value = String(value);
  }

  /** Redraw the form. The user's edits are never overwritten: the controls are filled afresh only when
   * another checkpoint is opened or Reset is pressed (`reset`); a new form from the kernel for the same
   * checkpoint writes only the fields the user has not edited.
   * @param {{reset?: boolean}} [opts] */
  function renderForm({ reset = false } = {}) {
    const s = ctx.state;
    const rebuilt = buildForm(s.options.fields ?? []);
    const next = s.form ?? {};
    const reload = reset || rebuilt || opensAnother(loaded, next);
    const rawValues = Object.fromEntries(Array.from(controls.keys(), (n) => [n, raw(n)]));
    const updates = formUpdates(fields, rawValues, loaded ?? {}, next, reload);
    for (const [name, v] of Object.entries(updates)) show(/** @type {Control} */ (controls.get(name)), v);
    loaded = { ...next };
    original = loaded;
    for (const name of controls.keys()) markEdited(name);
    form.dataset.checkpoint = String(next.checkpoint ?? "");
    const t = s.table;
    const id = s.clicked;
    const r = id === null || id === undefined ? undefined : t.index.get(id);
    if (r === undefined) {
      header.innerHTML = "<b>no checkpoint open</b>: click a point (Train starts from the first checkpoint)";
    } else {
      const loss = t.metrics.train_loss ? ` · train loss ${fmt(t.metrics.train_loss[r])}` : "";
      header.innerHTML = `<b>checkpoint ${id}</b> · ${t.kinds[r]} · branch ${Math.round(t.branches[r])} · ${timeLabel(t)} ${fmt(t.epochs[r])}${loss}`;
    }
    container.dataset.clicked = id === null || id === undefined ? "" : String(id);
  }

  // Job rows are keyed by job id and updated in place: progress arrives many times a second, and a row
  // rebuilt on every update would swallow a click on its Cancel button.
  /** @typedef {{row: HTMLDivElement, title: HTMLSpanElement, fill: HTMLDivElement, msg: HTMLSpanElement, cancel: HTMLButtonElement}} JobParts */
  /** @type {Map<number, JobParts>} */
  const jobRows = new Map();
  const noJobs = el("span", { class: "lv-muted", text: "no jobs yet: Train, Disturb, Interpolate and Surface run here" });
  /** @param {number} id @returns {JobParts} */
  function jobRow(id) {
    let parts = jobRows.get(id);
    if (!parts) {
      const title = el("span", { class: "lv-job-title" });
      const fill = el("div", { class: "lv-bar-fill" });
      const msg = el("span", { class: "lv-job-msg" });
      const cancel = button("lv-job-cancel", "Cancel", undefined, () => ctx.send({ type: "cancel", job: id }));
      const row = el("div", { class: "lv-job" }, title, el("div", { class: "lv-bar" }, fill), msg, cancel);
      row.dataset.job = String(id);
      parts = { row, title, fill, msg, cancel };
      jobRows.set(id, parts);
    }
    return parts;
  }

  function renderJobs() {
    /** @type {JobRow[]} */
    const jobs = (ctx.state.jobs ?? []).slice().reverse();
    const live = new Set(jobs.map((j) => j.id));
    for (const id of [...jobRows.keys()]) if (!live.has(id)) jobRows.delete(id);
    const rows = jobs.map((j) => {
      const { row, title, fill, msg, cancel } = jobRow(j.id);
      row.className = `lv-job lv-job-${j.state}`;
      row.dataset.state = j.state;
      title.textContent = `${j.kind} #${j.id} · ${j.state}`;
      fill.style.width = `${Math.round(100 * (j.progress ?? 0))}%`;
      msg.textContent = j.error ? j.error : `${j.done ?? 0}/${j.total ?? 0} ${j.message ?? ""}`;
      cancel.hidden = !(j.state === "running" || j.state === "queued");
      return row;
    });
    // re-append only when the order changed, so rows (and a button under the pointer) stay in the DOM
    const current = [...jobsBox.children];
    if (!rows.length) { if (!current.length || current[0] !== noJobs) jobsBox.replaceChildren(noJobs); return; }
    if (current.length !== rows.length || rows.some((r, i) => current[i] !== r)) jobsBox.replaceChildren(...rows);
  }

  function renderDistances() {
    const d = ctx.state.distances;
    if (!d || d.n < 2) {
      const auto = ctx.state.options.limits?.auto_distances_max;
      distBox.textContent = `select 2 or more checkpoints${auto === undefined ? "" : ` (Distances button for more than ${auto})`}`;
      return;
    }
    const head = el("tr", {}, el("th", { text: "" }), ...d.ids.map((id) => el("th", { text: String(id) })));
    const body = d.ids.map((id, i) => el("tr", {}, el("th", { text: String(id) }), ...d.ids.map((_, j) => el("td", { text: fmt(d.d[i * d.n + j], 3) }))));
    distBox.replaceChildren(el("table", { class: "lv-dist-table" }, head, ...body));
  }

  return { renderForm, renderJobs, renderDistances, renderManage, controls, jobsBox, distBox };
}
