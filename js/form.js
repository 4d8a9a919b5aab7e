// The branch panel's fields: how each is parsed and checked, and which ones the user edited. Pure, node-testable.

export const FIELDS = [
  { name: "lr", label: "learning rate", type: "float", min: 0, minExclusive: true, group: "train" },
  { name: "optimizer", label: "optimizer", type: "choice", optionsKey: "optimizers", group: "train" },
  { name: "momentum", label: "momentum", type: "float", min: 0, group: "train" },
  { name: "nesterov", label: "nesterov", type: "bool", group: "train" },
  { name: "weight_decay", label: "weight decay", type: "float", min: 0, group: "train" },
  { name: "batch_size", label: "batch size", type: "int", min: 1, group: "train" },
  { name: "schedule", label: "schedule", type: "text", group: "train",
    hint: "constant, cosine, cosine:200, step:30:0.1, multistep:150,225:0.1, cifar" },
  { name: "seed", label: "seed", type: "int", min: 0, optional: true, group: "train" },
  { name: "epochs", label: "epochs to train", type: "int", min: 1, group: "train" },
  { name: "magnitude", label: "disturb magnitude", type: "float", min: 0, minExclusive: true, group: "disturb" },
  { name: "n", label: "interpolation points (ends included)", type: "int", min: 2, max: 1000, group: "interpolate" },
  { name: "directions", label: "surface directions", type: "choice", optionsKey: "directions", group: "surface" },
  { name: "range", label: "surface range (min:max)", type: "range", group: "surface" },
  { name: "resolution", label: "surface resolution", type: "int", min: 3, max: 401, group: "surface" },
  { name: "adaptive", label: "adaptive (fewer points)", type: "bool", group: "surface",
    hint: "a coarse lattice (13 points a side), then rounds where the surface bends, at most a fifth of the grid; "
      + "the rest interpolated. Saves work from about 30 points a side" },
];

/** The Surface button's message from parsed surface fields; `adaptive: true` only when ticked. */
export function surfaceMessage(values, center, selection) {
  const msg = { type: "surface", center, directions: values.directions, range: values.range, resolution: values.resolution };
  if (values.directions === "pca") msg.checkpoints = [...selection];
  if (values.adaptive === true) msg.adaptive = true;
  return msg;
}

export const TRAIN_FIELDS = FIELDS.filter((f) => f.group === "train" && f.name !== "epochs").map((f) => f.name);

/** Parse the text (or checkbox state) of one field: {value} or {error: "words"}. */
export function parseField(spec, raw) {
  const text = typeof raw === "string" ? raw.trim() : raw;
  if (spec.type === "bool") return { value: raw === true || raw === "true" || raw === "on" };
  if (text === "" || text === null || text === undefined) {
    return spec.optional ? { value: null } : { error: `${spec.label} is empty: enter a value` };
  }
  if (spec.type === "choice" || spec.type === "text") return { value: String(text) };
  if (spec.type === "range") {
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

/** Parse the named fields from raw inputs {name: raw}; returns {values, errors: {name: msg}}. */
export function parseFields(raw, names = FIELDS.map((f) => f.name)) {
  const values = {}, errors = {};
  for (const name of names) {
    const spec = FIELDS.find((f) => f.name === name);
    if (!spec) continue;
    const r = parseField(spec, raw[name]);
    if (r.error) errors[name] = r.error; else values[name] = r.value;
  }
  return { values, errors };
}

/** Text shown in an input for a value from the kernel. */
export function displayValue(spec, value) {
  if (spec.type === "bool") return Boolean(value);
  if (value === null || value === undefined) return "";
  return String(value);
}

/** True when the user changed the field from the value the kernel filled in. */
export function isEdited(spec, raw, original) {
  if (spec.type === "bool") return Boolean(raw) !== Boolean(original);
  const shown = displayValue(spec, original);
  if (String(raw).trim() === shown) return false;
  const a = parseField(spec, raw), b = parseField(spec, shown);
  if (a.error || b.error) return true;
  return a.value !== b.value;
}
