import { test } from "node:test";
import assert from "node:assert/strict";
import { encodeArray, decodeCheckpoints, decodeProjection } from "../codecs.js";
import { scatterPoints, laneTicks, branchCounts } from "../scatter.js";
import { decimateGrid } from "../grids.js";
import { keepsKey } from "../dom.js";
import { snapshotProblem, plainJson, standaloneFigure } from "../snapshot.js";
import { trajectoryTraces } from "../contour.js";

// branches 1 (ids 0-2) and 2 (ids 3-4, forked at 1) in lanes 0 and 1
const table = decodeCheckpoints({
  ids: encodeArray([0, 1, 2, 3, 4]), parents: encodeArray([NaN, 0, 1, 1, 3]), branches: encodeArray([1, 1, 1, 2, 2]),
  epochs: encodeArray([0, 1, 2, 2, 3]), kinds: encodeArray([0, 1, 1, 1, 1]), kind_names: ["init", "train"],
  metrics: {}, hparams: Array(5).fill({}), status: Array(5).fill("ok"),
});
const layout = decodeProjection({ method: "layout", ids: encodeArray([0, 1, 2, 3, 4]), coords: encodeArray([0, 0, 1, 0, 2, 0, 2, 1, 3, 1], [5, 2]) });

test("layout lanes are named by their branch's number", () => {
  assert.deepEqual(laneTicks(table, scatterPoints(table, layout)), { tickvals: [0, 1], ticktext: ["1", "2"] });
  assert.deepEqual(branchCounts(table), [[1, 3], [2, 2]]);
});

test("the contour path is one line per branch, from the parent, in epoch order (not one id-ordered line)", () => {
  // trajectory given out of id order: 4, 0, 3, 2, 1
  const surface = { trajectory: { ids: [4, 0, 3, 2, 1], x: [40, 0, 30, 20, 10], y: [4, 0, 3, 2, 1] } };
  const state = { table, selectionSet: new Set([3]) };
  const traces = trajectoryTraces(/** @type {any} */ (surface), /** @type {any} */ (state));
  const lines = traces.filter((t) => String(t.name).startsWith("branch "));
  assert.deepEqual(lines.map((t) => [t.name, t.x]), [["branch 1", [0, 10, 20]], ["branch 2", [10, 30, 40]]]);
  assert.notEqual(lines[0].line.color, lines[1].line.color);
  const sel = traces.find((t) => t.name === "selected");
  assert.deepEqual(sel.x, [30]);
  // 3-D: always three traces (a WebGL scene is rebuilt when the count changes), even with no trajectory
  const lifted = trajectoryTraces(/** @type {any} */ (surface), /** @type {any} */ (state), (x, y) => x + y);
  assert.equal(lifted.length, 3);
  assert.deepEqual(lifted[0].z.filter(Number.isFinite), [0, 11, 22, 11, 33, 44]);
  assert.equal(trajectoryTraces(/** @type {any} */ ({ trajectory: null }), /** @type {any} */ (state), (x) => x).length, 3);
});

test("decimateGrid keeps every stride-th row and column, and the last ones", () => {
  const nx = 7, ny = 5, z = Float32Array.from({ length: nx * ny }, (_, k) => k);
  const xs = [0, 1, 2, 3, 4, 5, 6], ys = [10, 11, 12, 13, 14];
  const d = decimateGrid(z, nx, ny, xs, ys, 4);
  assert.equal(d.stride, 2);
  assert.deepEqual(d.x, [0, 2, 4, 6]);
  assert.deepEqual(d.y, [10, 12, 14]);
  // z[i][j] = i * nx + j at the picked rows and columns
  assert.deepEqual(Array.from(d.z), [0, 2, 4, 6, 14, 16, 18, 20, 28, 30, 32, 34]);
  const same = decimateGrid(z, nx, ny, xs, ys, 10);
  assert.equal(same.stride, 1);
  assert.deepEqual(Array.from(same.z), Array.from(z));
  // 401 at most 121 per side: stride 4, 101 kept
  const big = decimateGrid(new Float32Array(401 * 401), 401, 401, Array(401).fill(0), Array(401).fill(0), 121);
  assert.equal(big.stride, 4);
  assert.equal(big.x.length, 101);
  // 201 at most 81 per side: stride 3 would leave an uneven last step (198 -> 200); 4 divides 200: 51 evenly spaced
  const xs201 = Array.from({ length: 201 }, (_, j) => j);
  const even = decimateGrid(new Float32Array(201 * 201), 201, 201, xs201, xs201, 81);
  assert.equal(even.stride, 4);
  assert.equal(even.x.length, 51);
  assert.ok(even.x.every((v, k) => k === 0 || v - even.x[k - 1] === 4));
  // 200 (199 is prime): no even stride under twice the least, so the least (3) with the last column kept
  const xs200 = Array.from({ length: 200 }, (_, j) => j);
  const uneven = decimateGrid(new Float32Array(200 * 200), 200, 200, xs200, xs200, 81);
  assert.equal(uneven.stride, 3);
  assert.deepEqual(uneven.x.slice(-2), [198, 199]);
});

test("plain keys stay in the widget; Escape, run-cell and save reach the notebook", () => {
  for (const key of ["r", "m", "y", "a", "b", "d", "z", "1", "ArrowDown", "Enter", "Backspace"]) assert.equal(keepsKey({ key }), true, key);
  assert.equal(keepsKey({ key: "Escape" }), false);
  assert.equal(keepsKey({ key: "Enter", shiftKey: true }), false);
  assert.equal(keepsKey({ key: "Enter", ctrlKey: true }), false);
  assert.equal(keepsKey({ key: "s", metaKey: true }), false);
  assert.equal(keepsKey({ key: "c", ctrlKey: true }), true);
});

test("a saved view from a file is checked before anything is restored", () => {
  const good = { lossviz_view: 1, traits: { selection: [1, 2], log_scale: true, vmin: null, clicked: 3 }, scatter: { x: [0, 1], y: [-1, 1] } };
  assert.equal(snapshotProblem(good), "");
  assert.match(snapshotProblem(null), /JSON object/);
  assert.match(snapshotProblem({ traits: {} }), /not a lossviz saved view/);
  assert.match(snapshotProblem({ lossviz_view: 1, traits: { selection: "all" } }), /"selection".*not valid/);
  assert.match(snapshotProblem({ lossviz_view: 1, traits: { model_path: "/etc" } }), /"model_path", which a view does not have/);
  assert.match(snapshotProblem({ lossviz_view: 1, traits: {}, scatter: { x: [1, 1], y: [0, 1] } }), /scatter zoom/);
  assert.match(snapshotProblem({ lossviz_view: 1, traits: { levels: 2.5 } }), /"levels"/);
});

test("figures become plain JSON for the standalone page, with plotly's own zoom and hover", () => {
  assert.deepEqual(plainJson({ a: new Float32Array([1, 2]), _private: 1, f: () => 1, b: [new Uint8Array([3])] }), { a: [1, 2], b: [[3]] });
  const fig = standaloneFigure("scatter", { data: [{ type: "scatter", x: new Float32Array([1]), hoverinfo: "none", customdata: [7] }],
    layout: { dragmode: false, hovermode: false, uirevision: "x", height: 300 } });
  assert.deepEqual(fig.data, [{ type: "scatter", x: [1], customdata: [7], hovertemplate: "checkpoint %{customdata}<extra></extra>" }]);
  assert.deepEqual(fig.layout, { dragmode: "zoom", hovermode: "closest", autosize: true });
});
