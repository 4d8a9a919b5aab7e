// @ts-check
// The DOM helpers every view builds with: an element from its tag, attributes and children; a button; a
// labelled control; a select whose options follow a list; an input marked invalid; a plot's container.

/** A child of el(): nodes and strings are appended, null/undefined/false/"" skipped.
 * @typedef {Node | string | null | undefined | false} Child */

/** Attributes of el(): `class`, `text` (the text content), `on<event>` listeners, any other key an attribute
 * (undefined values skipped).
 * @typedef {Record<string, string | number | ((event: Event) => void) | undefined>} Attrs */

/** A new element.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Attrs} [attrs]
 * @param {...Child} children
 * @returns {HTMLElementTagNameMap[K]} */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined) continue;
    if (typeof v === "function") e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = String(v);
    else if (k === "text") e.textContent = String(v);
    else e.setAttribute(k, String(v));
  }
  for (const c of children) if (c) e.append(c);
  return e;
}

/** A new SVG element with attributes.
 * @template {keyof SVGElementTagNameMap} K
 * @param {K} tag @param {Record<string, string>} [attrs] @param {...Node} children
 * @returns {SVGElementTagNameMap[K]} */
export function svg(tag, attrs = {}, ...children) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  e.append(...children);
  return e;
}

/** A `lv-btn` button of class `cls` with its text, tooltip and what a click does.
 * @param {string} cls @param {string} text @param {string | undefined} title @param {() => void} onClick
 * @returns {HTMLButtonElement} */
export function button(cls, text, title, onClick) {
  return el("button", { type: "button", class: `lv-btn ${cls}`, text, title, onclick: onClick });
}

/** A label: a caption, then the controls.
 * @param {string} caption @param {...Child} controls @returns {HTMLLabelElement} */
export function labelled(caption, ...controls) {
  return el("label", {}, el("span", { text: caption }), ...controls);
}

/** Make a select's options the given values; rebuilt only when they changed, so an open select stays open.
 * @param {HTMLSelectElement} control @param {readonly string[]} values */
export function setOptions(control, values) {
  const have = Array.from(control.options, (o) => o.value);
  if (have.length === values.length && have.every((v, i) => v === values[i])) return;
  control.replaceChildren(...values.map((v) => el("option", { value: v, text: v })));
}

/** A select of class `cls` with a tooltip and its options.
 * @param {string} cls @param {readonly string[]} values @param {string} title @returns {HTMLSelectElement} */
export function select(cls, values, title) {
  const s = el("select", { class: cls, title });
  setOptions(s, values);
  return s;
}

/** Mark a control as holding an invalid value (or clear the mark).
 * @param {Element} control @param {boolean} invalid */
export function markInvalid(control, invalid) {
  control.classList.toggle("lv-invalid", invalid);
}

/** The `lv-plot lv-<name>-plot` element a view draws its plotly figure in, appended to its cell.
 * @param {HTMLElement} container @param {string} name @returns {import("./types").PlotElement} */
export function plotIn(container, name) {
  return container.appendChild(el("div", { class: `lv-plot lv-${name}-plot` }));
}

/** Save bytes from the kernel as a file: a temporary link to an object URL, clicked.
 * @param {string} filename @param {string} mime @param {BlobPart} data */
export function download(filename, mime, data) {
  const url = URL.createObjectURL(new Blob([data], { type: mime }));
  const a = el("a", { href: url, download: filename });
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/** Tabs: a bar of buttons, one shown body at a time; `show(name)` switches (the bar's buttons do too).
 * @param {string} cls @param {[string, string, HTMLElement][]} entries  [name, caption, body]
 * @returns {{el: HTMLDivElement, show(name: string): void}} */
export function tabs(cls, entries) {
  const bar = el("div", { class: "lv-tabbar", role: "tablist" });
  const bodies = el("div", { class: "lv-tabbodies" });
  /** @param {string} name */
  const show = (name) => {
    for (const b of bar.children) b.classList.toggle("lv-tab-on", /** @type {HTMLElement} */ (b).dataset.tab === name);
    for (const b of bodies.children) /** @type {HTMLElement} */ (b).hidden = /** @type {HTMLElement} */ (b).dataset.tab !== name;
  };
  for (const [name, caption, body] of entries) {
    const b = button(`lv-tab lv-tab-${name}`, caption, undefined, () => show(name));
    b.dataset.tab = name;
    b.setAttribute("role", "tab");
    bar.append(b);
    const wrap = el("div", { class: `lv-tabbody lv-tabbody-${name}`, role: "tabpanel" }, body);
    wrap.dataset.tab = name;
    bodies.append(wrap);
  }
  if (entries.length) show(entries[0][0]);
  return { el: el("div", { class: `lv-tabs ${cls}` }, bar, bodies), show };
}

/** True when a keydown inside the widget must not reach JupyterLab, which would take plain keys in a focused
 * select or input (`r`, `m`, `y`, `a`, `b`, `d d`, ...) as notebook shortcuts. Escape, Shift/Ctrl/Cmd+Enter
 * (run the cell) and Ctrl/Cmd+S (save) still reach the notebook.
 * @param {{key: string, shiftKey?: boolean, ctrlKey?: boolean, metaKey?: boolean}} e @returns {boolean} */
export function keepsKey(e) {
  if (e.key === "Escape") return false;
  if (e.key === "Enter" && (e.shiftKey || e.ctrlKey || e.metaKey)) return false;
  if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "s") return false;
  return true;
}
