import { test } from "node:test";
import assert from "node:assert/strict";
import { encodeArray, decodeCheckpoints, decodeProjection, decodeSurface } from "../codecs.js";
import { scatterPoints, branchLines, hoverCardHtml, paddedRange } from "../scatter.js";
import { metricSeries } from "../curves.js";
import { displayValues, surfaceTitle } from "../contour.js";

// branch 0: 0 -> 1 -> 2 ; branch 1 forks at 1: 3 -> 4 ; checkpoint 5 not projected
const table = decodeCheckpoints({
  ids: encodeArray([0, 1, 2, 3, 4, 5]), parents: encodeArray([NaN, 0, 1, 1, 3, 4]), branches: encodeArray([0, 0, 0, 1, 1, 1]),
  epochs: encodeArray([0, 1, 2, 1, 2, 3]), kinds: encodeArray([0, 1, 1, 2, 1, 1]), kind_names: ["init", "train", "disturb"],
  metrics: { train_loss: encodeArray([2, 1, 0.5, 1.2, 0.8, 0.7]), test_loss: encodeArray([2.1, 1.1, 0.6, 1.3, NaN, 0.9]) },
  hparams: Array(6).fill({ lr: 0.1, schedule: { name: "step" }, disturb: { source: 1 } }), status: ["ok", "ok", "ok", "ok", "ok", "diverged"],
});
const projection = decodeProjection({ method: "layout", ids: encodeArray([4, 3, 2, 1, 0]), coords: encodeArray([4, 1, 3, 1, 2, 0, 1, 0, 0, 0], [5, 2]) });

test("scatter points follow the projection and skip unplaced checkpoints", () => {
  const pts = scatterPoints(table, projection);
  assert.deepEqual(pts.ids, [4, 3, 2, 1, 0]);
  assert.deepEqual(pts.rows, [4, 3, 2, 1, 0]);
  assert.deepEqual(pts.xs, [4, 3, 2, 1, 0]);
});

test("branch lines start at the parent of the branch's first point and follow epochs", () => {
  const lines = branchLines(table, scatterPoints(table, projection));
  const b0 = lines.find((l) => l.branch === 0), b1 = lines.find((l) => l.branch === 1);
  assert.deepEqual(b0.x, [0, 1, 2]); // root branch: no parent
  assert.deepEqual(b1.x, [1, 3, 4]); // starts at checkpoint 1 (x = 1), then 3, then 4
  assert.deepEqual(b1.y, [0, 1, 1]);
});

test("hover card names id, epoch, kind, branch, metrics and scalar hyperparameters", () => {
  const html = hoverCardHtml(table, 3);
  assert.match(html, /checkpoint 3/);
  assert.match(html, /disturb/);
  assert.match(html, /branch 1/);
  assert.match(html, /epoch 1/);
  assert.match(html, /train_loss 1\.2/);
  assert.match(html, /lr 0\.1/);
  assert.match(html, /schedule step/);
  assert.match(hoverCardHtml(table, 5), /diverged/);
});

test("metric series per branch sorted by epoch, NaN kept as a gap", () => {
  const s = metricSeries(table, "test_loss");
  const b1 = s.find((q) => q.branch === 1);
  assert.deepEqual(b1.ids, [3, 4, 5]);
  assert.ok(Number.isNaN(b1.y[1]));
  assert.deepEqual(metricSeries(table, "nope"), []);
});

test("contour display values: preview-filled while incomplete, log10 on request", () => {
  const z = { data: new Float32Array([1, NaN, NaN, 100]), shape: [2, 2] };
  const partial = displayValues({ z, done: 2, total: 4 }, false);
  assert.ok(!Array.from(partial.data).some(Number.isNaN));
  const full = displayValues({ z: { data: new Float32Array([1, 10, 100, 1000]), shape: [2, 2] }, done: 4, total: 4 }, true);
  assert.deepEqual(Array.from(full.data), [0, 1, 2, 3]);
});

test("contour display values: a decoded done mask keeps diverged cells as gaps in the preview", () => {
  // 1x4 line of a 2-D grid: computed 3, diverged (done, NaN), not yet, computed 5
  const s = decodeSurface({ x: encodeArray([0, 1, 2, 3]), y: encodeArray([0]), z: encodeArray([3, NaN, NaN, 5], [1, 4]),
    done: 3, total: 4, done_mask: encodeArray([1, 1, 0, 1], [1, 4], "uint8") });
  assert.deepEqual(Array.from(s.doneMask), [1, 1, 0, 1]);
  const shown = Array.from(displayValues(s, false).data);
  assert.ok(Number.isNaN(shown[1]));
  assert.deepEqual([shown[0], shown[2], shown[3]], [3, 5, 5]); // cell 2 takes its nearer computed neighbour
  assert.throws(() => decodeSurface({ x: encodeArray([0, 1]), y: encodeArray([0]), z: encodeArray([1, 2], [1, 2]),
    done_mask: encodeArray([1], [1], "uint8") }), /done_mask holds 1 values, z holds 2/);
});

test("scatter ranges pad the data by 6 % and never collapse", () => {
  const r = paddedRange([0, 10, NaN, 5]);
  assert.ok(Math.abs(r[0] + 0.6) < 1e-12 && Math.abs(r[1] - 10.6) < 1e-12);
  assert.deepEqual(paddedRange([3, 3]), [2.5, 3.5]);
  assert.deepEqual(paddedRange([]), [0, 1]);
});

test("the contour title says how many points an adaptive surface evaluated", () => {
  const wire = { x: encodeArray([0, 1, 2]), y: encodeArray([0, 1, 2]), z: encodeArray([1, 2, 3, 4, 5, 6, 7, 8, 9], [3, 3]),
    metric: "train_loss", center: 7, progress: 1, done: 9, total: 9 };
  const full = decodeSurface(wire);
  assert.equal(full.adaptive, null);
  assert.equal(surfaceTitle(full), "train_loss around checkpoint 7");
  const adaptive = decodeSurface({ ...wire, adaptive: { n_evaluated: 5, total: 9, rounds: 2 } });
  assert.equal(surfaceTitle(adaptive),
    'train_loss around checkpoint 7<br><span style="font-size:10px">adaptive: 5 of 9 points evaluated, the rest interpolated</span>');
  assert.equal(surfaceTitle({ ...full, progress: 0.44 }), "train_loss around checkpoint 7 · 44 % computed");
});
