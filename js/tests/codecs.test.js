import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeArray, encodeArray, rows, decodeCheckpoints, decodeProjection, decodeSurface, idAt, fmt, branchColor, decodedOnce } from "../codecs.js";

test("float32 wire arrays decode from DataView with offset, keep shape, and round-trip", () => {
  const src = new Float32Array([0, 1.5, -2, NaN, 3e-8, 7]);
  const buf = new ArrayBuffer(4 + src.byteLength);
  new Float32Array(buf, 4).set(src);
  const view = new DataView(buf, 4, src.byteLength);
  const d = decodeArray({ view, dtype: "float32", shape: [2, 3] });
  assert.deepEqual(d.shape, [2, 3]);
  assert.equal(d.data.length, 6);
  assert.ok(Number.isNaN(d.data[3]));
  assert.equal(d.data[1], 1.5);
  assert.equal(d.data[4], Math.fround(3e-8));
  const r = rows(d);
  assert.equal(r.length, 2);
  assert.deepEqual(Array.from(r[1]).slice(1), [Math.fround(3e-8), 7]);
  const again = decodeArray(encodeArray(d.data, d.shape));
  assert.deepEqual(Array.from(again.data).map(String), Array.from(src).map(String));
});

test("misaligned buffers are copied, wrong sizes and dtypes are refused", () => {
  const buf = new ArrayBuffer(4 * 3 + 2);
  const f = new Float32Array([1, 2, 3]);
  new Uint8Array(buf, 2).set(new Uint8Array(f.buffer));
  const d = decodeArray({ view: new DataView(buf, 2, 12), dtype: "float32", shape: [3] });
  assert.deepEqual(Array.from(d.data), [1, 2, 3]);
  assert.throws(() => decodeArray({ view: new DataView(f.buffer), dtype: "float32", shape: [2, 2] }), /needs 4 values/);
  assert.throws(() => decodeArray({ view: new DataView(f.buffer), dtype: "float64", shape: [3] }), /dtype float64/);
  assert.equal(decodeArray(null), null);
});

test("checkpoint table decodes to columns with an id index; NaN parent is no parent", () => {
  const trait = {
    ids: encodeArray([0, 1, 2, 7]), parents: encodeArray([NaN, 0, 1, 1]), branches: encodeArray([0, 0, 0, 1]),
    epochs: encodeArray([0, 1, 2, 1]), kinds: encodeArray([0, 1, 1, 2]), kind_names: ["init", "train", "disturb"],
    metrics: { train_loss: encodeArray([2, 1, 0.5, 0.9]) }, hparams: [{ lr: 0.1 }, { lr: 0.1 }, { lr: 0.1 }, { lr: 0.1 }],
    status: ["ok", "ok", "ok", "ok"],
  };
  const t = decodeCheckpoints(trait);
  assert.equal(t.n, 4);
  assert.deepEqual(t.kinds, ["init", "train", "train", "disturb"]);
  assert.equal(t.index.get(7), 3);
  assert.equal(idAt(t.parents, 0), null);
  assert.equal(idAt(t.parents, 3), 1);
  assert.deepEqual(Array.from(t.metrics.train_loss), [2, 1, 0.5, Math.fround(0.9)]);
  assert.equal(decodeCheckpoints({}).n, 0);
});

test("projection and surface decode", () => {
  const p = decodeProjection({ method: "pca", ids: encodeArray([3, 4]), coords: encodeArray([1, 2, 3, 4], [2, 2]) });
  assert.deepEqual(p.ids, [3, 4]);
  assert.deepEqual(Array.from(p.x), [1, 3]);
  assert.deepEqual(Array.from(p.y), [2, 4]);
  const s = decodeSurface({ x: encodeArray([0, 1, 2]), y: encodeArray([0, 1]), z: encodeArray([1, 2, 3, 4, 5, 6], [2, 3]),
    metric: "train_loss", progress: 0.5, trajectory: { ids: encodeArray([1]), coords: encodeArray([0.5, 0.25], [1, 2]) } });
  assert.equal(s.ndim, 2);
  assert.deepEqual(s.z.shape, [2, 3]);
  assert.deepEqual(s.trajectory.ids, [1]);
  assert.equal(s.trajectory.y[0], 0.25);
  assert.equal(decodeSurface(null), null);
});

test("uint8 masks decode from a DataView at any offset, keep shape, and round-trip", () => {
  const buf = new ArrayBuffer(3 + 6);
  new Uint8Array(buf, 3).set([1, 0, 1, 1, 0, 0]);
  const d = decodeArray({ view: new DataView(buf, 3, 6), dtype: "uint8", shape: [2, 3] });
  assert.ok(d.data instanceof Uint8Array);
  assert.deepEqual(Array.from(d.data), [1, 0, 1, 1, 0, 0]);
  assert.deepEqual(d.shape, [2, 3]);
  const back = decodeArray(encodeArray([0, 1, 1], [3], "uint8"));
  assert.deepEqual(Array.from(back.data), [0, 1, 1]);
  assert.throws(() => decodeArray({ view: new DataView(buf, 3, 6), dtype: "uint8", shape: [4] }), /needs 4 values/);
  const s = decodeSurface({ x: encodeArray([0, 1]), y: encodeArray([0]), z: encodeArray([1, NaN], [1, 2]),
    done: 2, total: 2, done_mask: encodeArray([1, 1], [1, 2], "uint8") });
  assert.deepEqual(Array.from(s.doneMask), [1, 1]);
  assert.equal(decodeSurface({ x: encodeArray([0]), z: encodeArray([1]) }).doneMask, null); // older kernels
});

test("formatting and colours", () => {
  assert.equal(fmt(3), "3");
  assert.equal(fmt(0.123456), "0.1235");
  assert.equal(fmt(1e-5), "1.00e-5");
  assert.equal(fmt(NaN), "NaN");
  assert.equal(fmt(null), "–");
  assert.equal(branchColor(0), branchColor(16));
  assert.notEqual(branchColor(0), branchColor(1));
});

test("decodedOnce decodes a wire value once, to the same object; a new value (or none) decodes again", () => {
  let calls = 0;
  const surfaceOf = decodedOnce((w) => { calls++; return decodeSurface(w); });
  const wire = { x: encodeArray([0, 1, 2]), z: encodeArray([1, 2, 3], [3]) };
  const a = surfaceOf(wire);
  assert.equal(a?.ndim, 1);
  assert.equal(surfaceOf(wire), a);
  assert.equal(calls, 1);
  const b = surfaceOf({ ...wire });  // the kernel's next message: an equal value, a new object
  assert.notEqual(b, a);
  assert.deepEqual(Array.from(b?.z.data ?? []), [1, 2, 3]);
  assert.equal(surfaceOf(null), null);
  assert.equal(surfaceOf(undefined), null);
  assert.equal(calls, 4);
});
