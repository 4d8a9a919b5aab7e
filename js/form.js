// @ts-check
// The branch panel's fields: how each is parsed and checked, and which ones the user edited. Pure, node-testable.
// The fields themselves come from the kernel (options.fields, lossviz/widget/options.py), never from here.

/** One field of the branch panel's form, as the kernel sends it in `options.fields`.
 * @typedef {object} FieldSpec
 * @property {string} name  the hyperparameter or message key
 * @property {string} label  what the form shows, and the subject of its error messages
 * @property {"float" | "int" | "text" | "bool" | "choice" | "range"} type  range: a "min:max" text, min < max, or "auto"
 * @property {string} group  "train", "disturb", "interpolate" or "surface"
 * @property {number} [min]
 * @property {number} [max]
 * @property {boolean} [minExclusive]  min itself refused
 * @property {boolean} [optional]  may be left empty (then null)
 * @property {string[]} [choices]  a choice's values
 * @property {string} [hint]  tooltip */

/** The parsed fields of a form: values by name, and the words of each refusal by name.
 * @typedef {{values: Record<string, unknown>, errors: Record<string, string>}} Parsed */

/** The field called `name`, or undefined.
 * @param {readonly FieldSpec[]} fields @param {string} name @returns {FieldSpec | undefined} */
export function fieldNamed(fields, name) {
  return fields.find((f) => f.name === name);
}

/** The hyperparameters a Train sends: the train group but the epochs to train.
 * @param {readonly FieldSpec[]} fields @returns {string[]} */
export function trainFieldNames(fields) {
  return fields.filter((f) => f.group === "train" && f.name !== "epochs").map((f) => f.name);
}

/** The Surface button's message from parsed surface fields; `adaptive: true` only when ticked.
 * @param {Record<string, unknown>} values @param {number | null | undefined} center @param {Iterable<number>} selection
 * @returns {Record<string, unknown>} */
export function surfaceMessage(values, center, selection) {
  /** @type {Record<string, unknown>} */
  const msg = { type: "surface", center, directions: values.directions, range: values.range, resolution: values.resolution };
  if (values.directions === "pca") msg.checkpoints = [...selection];
  if (values.x_range) msg.x_range = values.x_range; // empty: the range above
  if (values.y_range) msg.y_range = values.y_range;
  if (values.adaptive === true) msg.adaptive = true;
  return msg;
}

/** Parse the text (or checkbox state) of one field: {value} or {error: "words"}.
 * @param {FieldSpec} spec @param {unknown} raw
 * @returns {{value: string | number | boolean | null, error?: undefined} | {error: string, value?: undefined}} */
export function parseField(spec, raw) {
  const text = typeof raw === "string" ? raw.trim() : raw;
  if (spec.type === "bool") return { value: raw === true || raw === "true" || raw === "on" };
  if (text === "" || text === null || text === undefined) {
    return spec.optional ? { value: null } : { error: `${spec.label} is empty: enter a value` };
  }
  if (spec.type === "choice" || spec.type === "text") return { value: String(text) };
  if (spec.type === "range") {
    if (String(text).toLowerCase() === "auto") return { value: "auto" }; // fitted to the trajectory by the kernel
    const m = /^\s*(-?[\d.eE+-]+)\s*:\s*(-?[\d.eE+-]+)\s*$/.exec(String(text));
    const lo = m ? Number(m[1]) : NaN, hi = m ? Number(m[2]) : NaN;
    if (!Number.isFinite(lo) || !Number.isFinite(hi)) return { error: `${spec.label} "${text}" is not min:max, e.g. -1:1` };
    if (!(hi > lo)) return { error: `${spec.label}: max (${hi}) must be greater than min (${lo})` };
    return { value: `${lo}:${hi}` };
  }
  const num = Number(text);
  if (!Number.isFinite(num)) return { error: `${spec.label} "${text}" is not a number` };
  if (spec.type === "int" && !Number.isInteger(num)) return { error: `${spec.label} must be a whole number, got ${text}` };
  if (spec.min !== undefined && (spec.minExclusive ? num <= spec.min : num < spec.min)) {
    return { error: `${spec.label} must be ${spec.minExclusive ? "greater than" : "at least"} ${spec.min}, got ${text}` };
  }
  if (spec.max !== undefined && num > spec.max) return { error: `${spec.label} must be at most ${spec.max}, got ${text}` };
  return { value: num };
}

/** Parse the named fields (all by default) from raw inputs {name: raw}; names not among the fields are skipped.
 * @param {readonly FieldSpec[]} fields @param {Record<string, unknown>} raw @param {readonly string[]} [names]
 * @returns {Parsed} */
export function parseFields(fields, raw, names = fields.map((f) => f.name)) {
  /** @type {Parsed} */
  const out = { values: {}, errors: {} };
  for (const name of names) {
    const spec = fieldNamed(fields, name);
    if (!spec) continue;
    const r = parseField(spec, raw[name]);
    if (r.error !== undefined) out.errors[name] = r.error; else out.values[name] = r.value;
  }
  return out;
}

/** Text shown in an input for a value from the kernel (a checkbox's state for a bool).
 * @param {FieldSpec} spec @param {unknown} value @returns {string | boolean} */
export function displayValue(spec, value) {
  if (spec.type === "bool") return Boolean(value);
  if (value === null || value === undefined) return "";
  return String(value);
}

/** True when the user changed the field from the value the kernel filled in.
 * @param {FieldSpec} spec @param {unknown} raw @param {unknown} original @returns {boolean} */
export function isEdited(spec, raw, original) {
  if (spec.type === "bool") return Boolean(raw) !== Boolean(original);
  const shown = displayValue(spec, original);
  if (String(raw).trim() === shown) return false;
  const a = parseField(spec, raw), b = parseField(spec, shown);
  if (a.error || b.error) return true;
  return a.value !== b.value;
}
