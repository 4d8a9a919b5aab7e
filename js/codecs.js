// @ts-check
// Wire format shared with the kernel (the lossviz/widget package): arrays cross as {view, dtype: "float32",
// shape}; in the browser the view is a DataView over the message's binary buffer. Everything here is pure and
// runs under node too.

/** Values of a decoded array: float32 numbers, or a 0/1 uint8 mask.
 * @typedef {Float32Array | Uint8Array} Values */

/** What the bytes of a wire array may arrive as (plain, possibly nested, arrays come from mocks; null is NaN).
 * @typedef {DataView | ArrayBuffer | ArrayBufferView | NestedNumbers} WireView */

/** @typedef {Array<number | null | NestedNumbers>} NestedNumbers */

/** An array on the wire.
 * @typedef {object} WireArray
 * @property {WireView} view
 * @property {"float32" | "uint8"} [dtype]  float32 when absent
 * @property {number[]} [shape]  [length] when absent */

/** A decoded array: flat row-major values and their shape.
 * @typedef {object} Decoded
 * @property {Values} data
 * @property {number[]} shape */

/** The `checkpoints` trait: one column per field, one row per checkpoint.
 * @typedef {object} CheckpointsWire
 * @property {WireArray} ids
 * @property {WireArray} parents  NaN: no parent
 * @property {WireArray} branches
 * @property {WireArray} epochs
 * @property {WireArray} kinds  codes into kind_names
 * @property {string[]} [kind_names]
 * @property {string[]} [status]  "ok", or why the checkpoint is unusable (e.g. "diverged")
 * @property {Record<string, WireArray>} [metrics]
 * @property {Record<string, unknown>[]} [hparams]
 * @property {string} [time_label]  what the epoch column counts: "epoch", or "step" for a project logged by steps */

/** The decoded checkpoint table: columns (row r is one checkpoint) and an id -> row index.
 * @typedef {object} Checkpoints
 * @property {number} n  rows
 * @property {Values} ids
 * @property {Values} parents  the parent's id, NaN for none (read with idAt)
 * @property {Values} branches
 * @property {Values} epochs
 * @property {Values} kindCodes
 * @property {string[]} kinds  each row's kind name ("?" for an unknown code)
 * @property {string[]} kindNames
 * @property {string[]} status
 * @property {Record<string, Values>} metrics  metric name -> column
 * @property {string[]} metricNames
 * @property {Record<string, unknown>[]} hparams
 * @property {Map<number, number>} index  checkpoint id -> row
 * @property {string} timeLabel  "epoch" or "step" */

/** The `projection` trait: checkpoint ids and their (n, 2) plane coordinates.
 * @typedef {object} ProjectionWire
 * @property {string} [method]
 * @property {WireArray} [ids]
 * @property {WireArray} [coords]
 * @property {Record<string, unknown>} [meta]  e.g. explained_variance_ratio for PCA
 * @property {number[]} [outliers]  ids of the checkpoints it left out (outlying or diverged)
 * @property {number} [count]  checkpoints projected plus outliers left out
 * @property {number} [total]  checkpoints in the table when it was asked for
 * @property {string[]} [labels]  axis titles, e.g. ["PC1: 91.8 %", "PC2: 4.1 %"] */

/** The decoded projection: point k is checkpoint ids[k] at (x[k], y[k]).
 * @typedef {object} Projection
 * @property {string} method
 * @property {number[]} ids
 * @property {Float32Array} x
 * @property {Float32Array} y
 * @property {Record<string, unknown>} meta
 * @property {number[]} outliers
 * @property {string[]} labels
 * @property {number | null} count
 * @property {number | null} total */

/** A critical point of the surface (the kernel's critical_markers).
 * @typedef {object} Critical
 * @property {string} kind  "minimum", "maximum" or "saddle"
 * @property {number | null} x
 * @property {number | null} y
 * @property {number} [prominence]  how far it stands out (the markers are ranked by it) */

/** Refinement summary of an adaptive surface.
 * @typedef {object} Adaptive
 * @property {number | null} [n_evaluated]
 * @property {number} [total]
 * @property {number} [rounds] */

/** The `surface` trait: axes, values (z: (ny, nx) for a plane, (nx,) for a line) and how far it is computed.
 * @typedef {object} SurfaceWire
 * @property {WireArray} [x]
 * @property {WireArray} [y]
 * @property {WireArray} [z]
 * @property {WireArray} [done_mask]  uint8, 1 where computed
 * @property {{ids?: WireArray, coords?: WireArray}} [trajectory]
 * @property {string} [metric]
 * @property {string[]} [metrics]
 * @property {number} [progress]
 * @property {number} [done]
 * @property {number} [total]
 * @property {number | null} [center]
 * @property {Critical[]} [critical]
 * @property {Record<string, unknown>} [meta]
 * @property {number | null} [job]
 * @property {Adaptive | null} [adaptive]
 * @property {string[]} [labels]  axis titles (PCA: "PC1: 91.8 %") */

/** What a decoded surface holds whatever its dimension.
 * @typedef {object} SurfaceCommon
 * @property {Values} x
 * @property {Decoded} z
 * @property {string} metric
 * @property {string[]} metrics
 * @property {number} progress  0..1
 * @property {number} done  points computed
 * @property {number} total
 * @property {Uint8Array | null} doneMask  null: NaN means "not computed yet"
 * @property {number | null} center  the checkpoint at the origin
 * @property {Critical[]} critical
 * @property {{ids: number[], x: Float32Array, y: Float32Array} | null} trajectory  checkpoints on the plane
 * @property {Record<string, unknown>} meta
 * @property {number | null} job
 * @property {Adaptive | null} adaptive  {n_evaluated, total, rounds} for an adaptive surface
 * @property {string[]} labels  axis titles ([] when the kernel sent none) */

/** The decoded surface: a plane (ndim 2, with y) or a line (ndim 1).
 * @typedef {SurfaceCommon & ({ndim: 2, y: Values} | {ndim: 1, y: null})} Surface */

/** One curve of the `curves` trait (a 1-D line or an interpolation).
 * @typedef {object} CurveWire
 * @property {string} name
 * @property {string} [kind]
 * @property {WireArray} x
 * @property {Record<string, WireArray>} [metrics] */

/** @typedef {{name: string, kind: string, x: Values, metrics: Record<string, Values>}} Curve */

/** The `distances` trait: ids and their (n, n) distance matrix.
 * @typedef {object} DistancesWire
 * @property {WireArray} [ids]
 * @property {WireArray} [d] */

/** @typedef {{ids: number[], n: number, d: Values}} Distances  d[i * n + j]: distance from ids[i] to ids[j] */


/** @param {"float32" | "uint8"} dtype @param {ArrayBufferLike} buffer @param {number} [offset] @param {number} [length]
 * @returns {Values} */
function typedView(dtype, buffer, offset, length) {
  return dtype === "uint8" ? new Uint8Array(buffer, offset, length) : new Float32Array(buffer, offset, length);
}

/** @param {"float32" | "uint8"} dtype @param {ArrayLike<number>} values @returns {Values} */
function typedFrom(dtype, values) {
  return dtype === "uint8" ? Uint8Array.from(values) : Float32Array.from(values);
}

/** Decode a wire array to {data, shape}: data a Float32Array (dtype "float32", the default) or a Uint8Array
 * (dtype "uint8": 0/1 masks). Accepts DataView, ArrayBuffer, typed arrays and, for mocks, plain JS arrays.
 * Returns null for null/undefined. Copies only when the buffer is misaligned.
 * @overload
 * @param {null | undefined} wire
 * @returns {null}
 */
/**
 * @overload
 * @param {WireArray | WireView} wire
 * @returns {Decoded}
 */
/**
 * @overload
 * @param {WireArray | WireView | null | undefined} wire
 * @returns {Decoded | null}
 */
/**
 * @param {WireArray | WireView | null | undefined} wire
 * @returns {Decoded | null}
 */
export function decodeArray(wire) {
  if (wire === null || wire === undefined) return null;
  const { view, dtype = "float32", shape } = "view" in wire ? wire : { view: wire };
  if (dtype !== "float32" && dtype !== "uint8") {
    throw new Error(`lossviz: unsupported wire dtype ${dtype}; the widget sends float32 and uint8 only`);
  }
  const width = dtype === "uint8" ? 1 : 4;
  /** @type {Values} */
  let data;
  if (dtype === "uint8" ? view instanceof Uint8Array : view instanceof Float32Array) {
    data = /** @type {Values} */ (view);
  } else if (Array.isArray(view)) {
    data = typedFrom(dtype, /** @type {(number | null)[]} */ (/** @type {unknown[]} */ (view).flat(Infinity)).map((v) => (v === null ? NaN : v)));
  } else if (view instanceof ArrayBuffer) {
    data = typedView(dtype, view);
  } else if (ArrayBuffer.isView(view)) {
    if (view.byteLength % width !== 0) throw new Error(`lossviz: buffer of ${view.byteLength} bytes is not ${dtype}`);
    if (view.byteOffset % width === 0) {
      data = typedView(dtype, view.buffer, view.byteOffset, view.byteLength / width);
    } else {
      data = typedView(dtype, view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength));
    }
  } else {
    throw new Error(`lossviz: cannot decode ${Object.prototype.toString.call(view)} as an array`);
  }
  const fullShape = shape !== undefined ? Array.from(shape) : [data.length];
  const size = fullShape.reduce((a, b) => a * b, 1);
  if (size !== data.length) {
    throw new Error(`lossviz: array shape [${fullShape}] needs ${size} values, buffer holds ${data.length}`);
  }
  return { data, shape: fullShape };
}

/** Encode a Float32Array (or numbers) to the wire form, as the kernel would send it (used by mocks/tests);
 * dtype "uint8" encodes a 0/1 mask.
 * @param {ArrayLike<number>} values @param {number[]} [shape] @param {"float32" | "uint8"} [dtype]
 * @returns {WireArray & {view: DataView}} */
export function encodeArray(values, shape, dtype = "float32") {
  const data = (dtype === "uint8" ? values instanceof Uint8Array : values instanceof Float32Array)
    ? /** @type {Values} */ (values) : typedFrom(dtype, values);
  return { view: new DataView(data.buffer, data.byteOffset, data.byteLength), dtype, shape: shape ?? [data.length] };
}

/** Rows of a (ny, nx) array as subarray views (what plotly wants for z).
 * @param {Decoded | null} decoded @returns {Values[]} */
export function rows(decoded) {
  if (!decoded) return [];
  const [ny, nx] = decoded.shape.length === 2 ? decoded.shape : [1, decoded.shape[0]];
  const out = new Array(ny);
  for (let i = 0; i < ny; i++) out[i] = decoded.data.subarray(i * nx, (i + 1) * nx);
  return out;
}

/** Value i of a float32 id column as an integer (NaN -> null: no parent).
 * @param {ArrayLike<number>} column @param {number} i @returns {number | null} */
export function idAt(column, i) {
  const v = column[i];
  return Number.isNaN(v) ? null : Math.round(v);
}

/** Decode the `checkpoints` trait into columns plus an id -> row index map.
 * @param {CheckpointsWire | Record<string, never> | null | undefined} trait @returns {Checkpoints} */
export function decodeCheckpoints(trait) {
  const empty = { n: 0, ids: new Float32Array(0), parents: new Float32Array(0), branches: new Float32Array(0),
    epochs: new Float32Array(0), kindCodes: new Float32Array(0), kinds: [], kindNames: [], status: [],
    metrics: {}, metricNames: [], hparams: [], index: new Map(), timeLabel: "epoch" };
  if (!trait || !("ids" in trait) || !trait.ids) return empty;
  /** @param {"ids" | "parents" | "branches" | "epochs" | "kinds"} k */
  const col = (k) => decodeArray(trait[k]).data;
  const ids = col("ids");
  const n = ids.length;
  const kindNames = trait.kind_names ?? [];
  const kindCodes = col("kinds");
  /** @type {Record<string, Values>} */
  const metrics = {};
  for (const [name, wire] of Object.entries(trait.metrics ?? {})) metrics[name] = decodeArray(wire).data;
  /** @type {Map<number, number>} */
  const index = new Map();
  for (let i = 0; i < n; i++) index.set(Math.round(ids[i]), i);
  return {
    n, ids, parents: col("parents"), branches: col("branches"), epochs: col("epochs"), kindCodes,
    kinds: Array.from(kindCodes, (c) => kindNames[Math.round(c)] ?? "?"), kindNames,
    status: trait.status ?? new Array(n).fill("ok"), metrics, metricNames: Object.keys(metrics),
    hparams: trait.hparams ?? new Array(n).fill({}), index, timeLabel: trait.time_label === "step" ? "step" : "epoch",
  };
}

/** Decode the `projection` trait into {method, ids: int[], x: Float32Array, y: Float32Array, meta}.
 * @param {ProjectionWire | null | undefined} trait @returns {Projection} */
export function decodeProjection(trait) {
  const extra = { outliers: (trait?.outliers ?? []).map(Math.round), labels: trait?.labels ?? [],
    count: trait?.count ?? null, total: trait?.total ?? null };
  if (!trait || !trait.ids || !trait.coords) {
    return { method: trait?.method ?? "layout", ids: [], x: new Float32Array(0), y: new Float32Array(0), meta: {}, ...extra };
  }
  const ids = Array.from(decodeArray(trait.ids).data, Math.round);
  const coords = decodeArray(trait.coords);
  const n = ids.length;
  const x = new Float32Array(n), y = new Float32Array(n);
  for (let i = 0; i < n; i++) { x[i] = coords.data[2 * i]; y[i] = coords.data[2 * i + 1]; }
  return { method: trait.method ?? "layout", ids, x, y, meta: trait.meta ?? {}, ...extra };
}

/** The surface's per-point done mask (uint8 on the wire: 1 computed, 0 not yet; same shape as z) as a
 * Uint8Array, or null when the kernel sent none (then NaN is taken to mean "not computed yet").
 * @param {WireArray | null | undefined} wire @param {Decoded} z @returns {Uint8Array | null} */
export function decodeDoneMask(wire, z) {
  const m = decodeArray(wire);
  if (!m) return null;
  if (m.data.length !== z.data.length) {
    throw new Error(`lossviz: surface done_mask holds ${m.data.length} values, z holds ${z.data.length}`);
  }
  return m.data instanceof Uint8Array ? m.data : Uint8Array.from(m.data, (v) => (v > 0.5 ? 1 : 0));
}

/** `decode` memoized on its wire value: the same trait value (a kernel's message sets a new one) decodes once,
 * to the same object, so a view can tell an unchanged input by identity. A null or missing value is decoded
 * each time (it is cheap).
 * @template {object} W, D
 * @param {(wire: W | null | undefined) => D} decode @returns {(wire: W | null | undefined) => D} */
export function decodedOnce(decode) {
  /** @type {WeakMap<W, D>} */
  const seen = new WeakMap();
  return (wire) => {
    if (wire === null || wire === undefined || typeof wire !== "object") return decode(wire);
    if (!seen.has(wire)) seen.set(wire, decode(wire));
    return /** @type {D} */ (seen.get(wire));
  };
}

/** Decode the `surface` trait. z is (ny, nx) for planes, (nx,) for lines.
 * @param {SurfaceWire | null | undefined} trait @returns {Surface | null} */
export function decodeSurface(trait) {
  if (!trait || !trait.x || !trait.z) return null;
  const x = decodeArray(trait.x).data;
  const z = decodeArray(trait.z);
  const doneMask = decodeDoneMask(trait.done_mask, z);
  let trajectory = null;
  if (trait.trajectory && trait.trajectory.ids) {
    const t = decodeProjection({ method: "surface", ids: trait.trajectory.ids, coords: trait.trajectory.coords });
    trajectory = { ids: t.ids, x: t.x, y: t.y };
  }
  /** @type {SurfaceCommon} */
  const common = {
    x, z, metric: trait.metric ?? "", metrics: trait.metrics ?? [], progress: trait.progress ?? 1,
    done: trait.done ?? 0, total: trait.total ?? z.data.length, doneMask, center: trait.center ?? null,
    critical: trait.critical ?? [], trajectory, meta: trait.meta ?? {}, job: trait.job ?? null,
    adaptive: trait.adaptive ?? null,  // {n_evaluated, total, rounds} for an adaptive surface
    labels: trait.labels ?? [],
  };
  return trait.y ? { ...common, ndim: 2, y: decodeArray(trait.y).data } : { ...common, ndim: 1, y: null };
}

/** Decode the `curves` trait (1-D lines and interpolations): [{name, x, metrics: {name: Float32Array}}].
 * @param {CurveWire[] | null | undefined} trait @returns {Curve[]} */
export function decodeCurves(trait) {
  return (trait ?? []).map((c) => ({
    name: c.name, kind: c.kind ?? "line", x: decodeArray(c.x).data,
    metrics: Object.fromEntries(Object.entries(c.metrics ?? {}).map(([k, v]) => [k, decodeArray(v).data])),
  }));
}

/** Decode `distances`: {ids: int[], d: Float32Array (n*n), n}.
 * @param {DistancesWire | null | undefined} trait @returns {Distances | null} */
export function decodeDistances(trait) {
  if (!trait || !trait.ids || !trait.d) return null;
  const ids = Array.from(decodeArray(trait.ids).data, Math.round);
  return { ids, n: ids.length, d: decodeArray(trait.d).data };
}

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
  "#bcbd22", "#7f7f7f", "#393b79", "#e7969c", "#637939", "#ad494a", "#3182bd", "#f28e2b"];

/** Colour of branch b (stable across projections).
 * @param {number} b @returns {string} */
export function branchColor(b) {
  const i = ((Math.round(b) % PALETTE.length) + PALETTE.length) % PALETTE.length;
  return PALETTE[i];
}

/** Format a number for cards and tables.
 * @param {unknown} v @param {number} [digits] @returns {string} */
export function fmt(v, digits = 4) {
  if (v === null || v === undefined) return "–";
  if (typeof v !== "number") return String(v);
  if (Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "inf" : "-inf";
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(2) : Number(v.toPrecision(digits)).toString();
}
