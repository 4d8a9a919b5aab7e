// Wire format shared with lossviz/widget.py: arrays cross as {view, dtype: "float32", shape}; in the browser the
// view is a DataView over the message's binary buffer. Everything here is pure and runs under node too.

/** Decode a wire array to {data, shape}: data a Float32Array (dtype "float32", the default) or a Uint8Array
 * (dtype "uint8": 0/1 masks). Accepts DataView, ArrayBuffer, typed arrays and, for mocks, plain JS arrays.
 * Returns null for null/undefined. Copies only when the buffer is misaligned. */
export function decodeArray(wire) {
  if (wire === null || wire === undefined) return null;
  const dtype = wire.dtype ?? "float32";
  if (dtype !== "float32" && dtype !== "uint8") {
    throw new Error(`lossviz: unsupported wire dtype ${dtype}; the widget sends float32 and uint8 only`);
  }
  const Typed = dtype === "uint8" ? Uint8Array : Float32Array;
  const width = Typed.BYTES_PER_ELEMENT;
  const view = wire.view !== undefined ? wire.view : wire;
  const shape = wire.shape !== undefined ? Array.from(wire.shape) : null;
  let data;
  if (view instanceof Typed) {
    data = view;
  } else if (Array.isArray(view)) {
    data = Typed.from(view.flat(Infinity), (v) => (v === null ? NaN : v));
  } else if (view instanceof ArrayBuffer) {
    data = new Typed(view);
  } else if (ArrayBuffer.isView(view)) {
    if (view.byteLength % width !== 0) throw new Error(`lossviz: buffer of ${view.byteLength} bytes is not ${dtype}`);
    if (view.byteOffset % width === 0) {
      data = new Typed(view.buffer, view.byteOffset, view.byteLength / width);
    } else {
      data = new Typed(view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength));
    }
  } else {
    throw new Error(`lossviz: cannot decode ${Object.prototype.toString.call(view)} as an array`);
  }
  const fullShape = shape ?? [data.length];
  const size = fullShape.reduce((a, b) => a * b, 1);
  if (size !== data.length) {
    throw new Error(`lossviz: array shape [${fullShape}] needs ${size} values, buffer holds ${data.length}`);
  }
  return { data, shape: fullShape };
}

/** Encode a Float32Array (or numbers) to the wire form, as the kernel would send it (used by mocks/tests);
 * dtype "uint8" encodes a 0/1 mask. */
export function encodeArray(values, shape, dtype = "float32") {
  const Typed = dtype === "uint8" ? Uint8Array : Float32Array;
  const data = values instanceof Typed ? values : Typed.from(values);
  return { view: new DataView(data.buffer, data.byteOffset, data.byteLength), dtype, shape: shape ?? [data.length] };
}

/** Rows of a (ny, nx) array as subarray views (what plotly wants for z). */
export function rows(decoded) {
  if (!decoded) return [];
  const [ny, nx] = decoded.shape.length === 2 ? decoded.shape : [1, decoded.shape[0]];
  const out = new Array(ny);
  for (let i = 0; i < ny; i++) out[i] = decoded.data.subarray(i * nx, (i + 1) * nx);
  return out;
}

/** Value i of a float32 id column as an integer (NaN -> null: no parent). */
export function idAt(column, i) {
  const v = column[i];
  return Number.isNaN(v) ? null : Math.round(v);
}

/** Decode the `checkpoints` trait into columns plus an id -> row index map. */
export function decodeCheckpoints(trait) {
  const empty = { n: 0, ids: new Float32Array(0), parents: new Float32Array(0), branches: new Float32Array(0),
    epochs: new Float32Array(0), kindCodes: new Float32Array(0), kinds: [], kindNames: [], status: [],
    metrics: {}, metricNames: [], hparams: [], index: new Map() };
  if (!trait || !trait.ids) return empty;
  const col = (k) => decodeArray(trait[k]).data;
  const ids = col("ids");
  const n = ids.length;
  const kindNames = trait.kind_names ?? [];
  const kindCodes = col("kinds");
  const metrics = {};
  for (const [name, wire] of Object.entries(trait.metrics ?? {})) metrics[name] = decodeArray(wire).data;
  const index = new Map();
  for (let i = 0; i < n; i++) index.set(Math.round(ids[i]), i);
  return {
    n, ids, parents: col("parents"), branches: col("branches"), epochs: col("epochs"), kindCodes,
    kinds: Array.from(kindCodes, (c) => kindNames[Math.round(c)] ?? "?"), kindNames,
    status: trait.status ?? new Array(n).fill("ok"), metrics, metricNames: Object.keys(metrics),
    hparams: trait.hparams ?? new Array(n).fill({}), index,
  };
}

/** Decode the `projection` trait into {method, ids: int[], x: Float32Array, y: Float32Array, meta}. */
export function decodeProjection(trait) {
  if (!trait || !trait.ids) return { method: trait?.method ?? "layout", ids: [], x: new Float32Array(0), y: new Float32Array(0), meta: {} };
  const ids = Array.from(decodeArray(trait.ids).data, Math.round);
  const coords = decodeArray(trait.coords);
  const n = ids.length;
  const x = new Float32Array(n), y = new Float32Array(n);
  for (let i = 0; i < n; i++) { x[i] = coords.data[2 * i]; y[i] = coords.data[2 * i + 1]; }
  return { method: trait.method, ids, x, y, meta: trait.meta ?? {} };
}

/** The surface's per-point done mask (uint8 on the wire: 1 computed, 0 not yet; same shape as z) as a
 * Uint8Array, or null when the kernel sent none (then NaN is taken to mean "not computed yet"). */
export function decodeDoneMask(wire, z) {
  const m = decodeArray(wire);
  if (!m) return null;
  if (m.data.length !== z.data.length) {
    throw new Error(`lossviz: surface done_mask holds ${m.data.length} values, z holds ${z.data.length}`);
  }
  return m.data instanceof Uint8Array ? m.data : Uint8Array.from(m.data, (v) => (v > 0.5 ? 1 : 0));
}

/** Decode the `surface` trait. z is (ny, nx) for planes, (nx,) for lines. */
export function decodeSurface(trait) {
  if (!trait || !trait.x) return null;
  const x = decodeArray(trait.x).data;
  const y = trait.y ? decodeArray(trait.y).data : null;
  const z = decodeArray(trait.z);
  const doneMask = decodeDoneMask(trait.done_mask, z);
  let trajectory = null;
  if (trait.trajectory && trait.trajectory.ids) {
    const t = decodeProjection({ method: "surface", ids: trait.trajectory.ids, coords: trait.trajectory.coords });
    trajectory = { ids: t.ids, x: t.x, y: t.y };
  }
  return {
    x, y, z, ndim: y ? 2 : 1, metric: trait.metric ?? "", metrics: trait.metrics ?? [], progress: trait.progress ?? 1,
    done: trait.done ?? 0, total: trait.total ?? z.data.length, doneMask, center: trait.center ?? null,
    critical: trait.critical ?? [], trajectory, meta: trait.meta ?? {}, job: trait.job ?? null,
    adaptive: trait.adaptive ?? null,  // {n_evaluated, total, rounds} for an adaptive surface
  };
}

/** Decode the `curves` trait (1-D lines and interpolations): [{name, x, metrics: {name: Float32Array}}]. */
export function decodeCurves(trait) {
  return (trait ?? []).map((c) => ({
    name: c.name, kind: c.kind ?? "line", x: decodeArray(c.x).data,
    metrics: Object.fromEntries(Object.entries(c.metrics ?? {}).map(([k, v]) => [k, decodeArray(v).data])),
  }));
}

/** Decode `distances`: {ids: int[], d: Float32Array (n*n), n}. */
export function decodeDistances(trait) {
  if (!trait || !trait.ids) return null;
  const ids = Array.from(decodeArray(trait.ids).data, Math.round);
  return { ids, n: ids.length, d: decodeArray(trait.d).data };
}

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
  "#bcbd22", "#7f7f7f", "#393b79", "#e7969c", "#637939", "#ad494a", "#3182bd", "#f28e2b"];

/** Colour of branch b (stable across projections). */
export function branchColor(b) {
  const i = ((Math.round(b) % PALETTE.length) + PALETTE.length) % PALETTE.length;
  return PALETTE[i];
}

/** Format a number for cards and tables. */
export function fmt(v, digits = 4) {
  if (v === null || v === undefined) return "–";
  if (typeof v !== "number") return String(v);
  if (Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "inf" : "-inf";
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(2) : Number(v.toPrecision(digits)).toString();
}
