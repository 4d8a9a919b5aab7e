import { test } from "node:test";
import assert from "node:assert/strict";
import { encodeArray, decodeCheckpoints, decodeProjection, decodeSurface } from "../codecs.js";
import { hiddenIds, hiddenCount, withId, outlierNote, outlierMarks, timeLabel, controlError, confirmsIds } from "../visibility.js";
import { scatterPoints, axisTitles, metricColour, hoverCardHtml } from "../scatter.js";
import { metricSeries } from "../curves.js";
import { trajectoryTraces } from "../contour.js";

// branch 1: ids 10, 11, 12 ; branch 2 (forked at 11): ids 13, 14 ; logged by steps 0, 100, ...
const wire = {
  ids: encodeArray([10, 11, 12, 13, 14]), parents: encodeArray([NaN, 10, 11, 11, 13]), branches: encodeArray([1, 1, 1, 2, 2]),
  epochs: encodeArray([0, 100, 200, 200, 300]), kinds: encodeArray([0, 1, 1, 1, 1]), kind_names: ["init", "train"],
  metrics: { train_loss: encodeArray([2, 1, 0.5, 1e12, 0.8]) }, hparams: Array(5).fill({}), status: Array(5).fill("ok"),
};
const table = decodeCheckpoints(wire);

test("hidden ids come from the ids and from the hidden branches", () => {
  assert.deepEqual([...hiddenIds(table, [10], [])], [10]);
  const gone = hiddenIds(table, [10], [2]);
  assert.deepEqual([...gone].sort((a, b) => a - b), [10, 13, 14]);
  assert.equal(hiddenCount(table, gone), 3);
  assert.equal(hiddenCount(table, new Set([99])), 0);  // an id no longer in the table is not counted
  assert.deepEqual(withId([3, 1], 2), [1, 2, 3]);
  assert.deepEqual(withId([1, 2], 2), [1, 2]);
});

test("hidden checkpoints leave the scatter, the metric curves and the contour path", () => {
  const proj = decodeProjection({ method: "pca", ids: encodeArray([10, 11, 12, 13, 14]),
    coords: encodeArray([0, 0, 1, 0, 2, 0, 1, 1, 1, 2], [5, 2]) });
  const gone = hiddenIds(table, [12], [2]);
  assert.deepEqual(scatterPoints(table, proj, gone).ids, [10, 11]);
  const series = metricSeries(table, "train_loss", gone);
  assert.deepEqual(series.map((s) => [s.branch, s.ids]), [[1, [10, 11]]]);
  const surface = { trajectory: { ids: [10, 11, 12, 13, 14], x: [0, 1, 2, 3, 4], y: [0, 0, 0, 1, 1] } };
  const traces = trajectoryTraces(/** @type {any} */ (surface), /** @type {any} */ ({ table, selectionSet: new Set(), hiddenSet: gone }));
  assert.deepEqual(traces.find((t) => t.name === "trajectory").customdata, [10, 11]);
  assert.equal(traces.filter((t) => t.name === "branch 2").length, 0);
});

test("outliers: a note naming them, marks at their point or pinned to the right edge", () => {
  assert.equal(outlierNote([]), "");
  assert.equal(outlierNote([13]), "1 outlier left out (id 13)");
  assert.equal(outlierNote([1, 2, 3, 4, 5, 6, 7, 8]), "8 outliers left out (ids 1, 2, 3, 4, 5, 6, …)");
  assert.equal(outlierNote([13], { placed: true }), "1 outlier (id 13) marked, left out of projections and colour scales");
  const pts = { ids: [10, 11, 13], xs: [0, 1, 5], ys: [0, 1, 2] };
  const marks = outlierMarks([13, 20, 21], pts, [0, 10], [-1, 2]);
  assert.deepEqual(marks.placed, [true, false, false]);
  assert.deepEqual([marks.x[0], marks.y[0]], [5, 2]);  // placed: at the point itself
  assert.ok(marks.x[1] === marks.x[2] && marks.x[1] > 9.5 && marks.x[1] < 10);  // the others: inside the right edge
  assert.deepEqual([marks.y[1], marks.y[2]], [0, 1]);  // spread along it, one third and two thirds up
});

test("the colour scale is computed without the outliers", () => {
  const values = Array.from(table.metrics.train_loss);
  assert.deepEqual(metricColour(values), { lo: 0.5, hi: Math.fround(1e12) });  // float32 on the wire
  const ids = Array.from(table.ids, Math.round);
  assert.deepEqual(metricColour(values.filter((_, k) => ids[k] !== 13)), { lo: 0.5, hi: 2 });
});

test("a project logged by steps says step on its time axis and hover text", () => {
  assert.equal(timeLabel(table), "epoch");  // the kernel sent no time_label
  const bySteps = decodeCheckpoints({ ...wire, time_label: "step" });
  assert.equal(timeLabel(bySteps), "step");
  assert.match(hoverCardHtml(bySteps, 1), /step 100/);
  assert.doesNotMatch(hoverCardHtml(bySteps, 1), /epoch/);
  const layout = decodeProjection({ method: "layout", ids: encodeArray([10]), coords: encodeArray([0, 0], [1, 2]) });
  assert.deepEqual(axisTitles(layout, timeLabel(bySteps)), ["step", "branch (lane)"]);
});

test("the projection's and surface's axis labels from the kernel", () => {
  const pca = decodeProjection({ method: "pca", ids: encodeArray([10]), coords: encodeArray([0, 0], [1, 2]),
    labels: ["PC1: 91.8 %", "PC2: 4.1 %"], outliers: [13], count: 2, total: 5 });
  assert.deepEqual(axisTitles(pca), ["PC1: 91.8 %", "PC2: 4.1 %"]);
  assert.deepEqual([pca.outliers, pca.count, pca.total], [[13], 2, 5]);
  const bare = decodeProjection({ method: "tsne" });
  assert.deepEqual([bare.outliers, bare.labels, axisTitles(bare)], [[], [], ["t-SNE 1", "t-SNE 2"]]);
  const surf = decodeSurface({ x: encodeArray([0, 1]), y: encodeArray([0, 1]), z: encodeArray([1, 2, 3, 4], [2, 2]), labels: ["PC1: 50 %", "PC2: 20 %"] });
  assert.deepEqual(surf?.labels, ["PC1: 50 %", "PC2: 20 %"]);
});

test("control errors and the pending delete", () => {
  assert.equal(controlError({ open_project: "no such project" }, "open_project"), "no such project");
  assert.equal(controlError({}, "create_project"), "");
  assert.equal(confirmsIds({ ids: [3, 1], text: "?" }, [1, 3]), true);
  assert.equal(confirmsIds({ ids: [1] }, [1, 3]), false);
  assert.equal(confirmsIds({}, [1]), false);
});
