import { test } from "node:test";
import assert from "node:assert/strict";
import { connectMessage, connectionPlot, fmtBarrier, isConnection } from "../connect.js";
import { DENSITY_FLOOR, floored, spectrumPlot, valueAt } from "../spectrum.js";
import { surfaceMessage } from "../form.js";
import { OPTIONS } from "./fixtures.js";

/** A connection as lossviz/widget/research.py sends it: the loss along t as given functions. */
function connection(lineLoss, curveLoss, n = 11) {
  const t = Array.from({ length: n }, (_, i) => i / (n - 1));
  const profile = (f) => {
    const train_loss = t.map(f), test_loss = t.map((x) => f(x) + 0.1);
    const barrier = (v) => Math.max(...v) - (v[0] + v[v.length - 1]) / 2;
    return { values: { train_loss, test_loss, train_acc: t.map(() => 90), test_acc: t.map(() => 80) },
      barriers: { train_loss: barrier(train_loss), test_loss: barrier(test_loss) } };
  };
  return { a: 3, b: 9, curve: "bezier", n_bends: 1, epochs: 4, t, line: profile(lineLoss), path: profile(curveLoss),
    barriers: { line: 0, curve: 0 }, losses: [1, 0.5] };
}

test("Connect needs two selected checkpoints and whole epochs, in words", () => {
  assert.deepEqual(connectMessage([2, 5], "polychain", " 3 "), { msg: { type: "connect", a: 2, b: 5, curve: "polychain", epochs: 3 } });
  assert.match(connectMessage([2], "bezier", "3").error, /exactly two selected checkpoints, 1 are selected/);
  assert.match(connectMessage([1, 2, 3], "bezier", "3").error, /3 are selected/);
  assert.match(connectMessage([1, 2], "bezier", "2.5").error, /not a whole number ≥ 1/);
  assert.match(connectMessage([1, 2], "bezier", "0").error, /not a whole number ≥ 1/);
  assert.match(connectMessage([1, 2], "bezier", "").error, /not a whole number/);
});

test("the connection's traces: line and curve loss with their barriers, accuracy on the right axis", () => {
  // line: a bump of height 1 over ends at 0 (barrier 1); curve: a flat valley (barrier 0)
  const conn = connection((t) => 4 * t * (1 - t), () => 0.2);
  assert.ok(isConnection(conn) && !isConnection({}) && !isConnection(null));
  assert.equal(connectionPlot({}, "train_loss"), null);
  const p = connectionPlot(conn, "train_loss");
  assert.equal(p.traces.length, 4);
  const [lineLoss, lineAcc, curveLoss, curveAcc] = p.traces;
  assert.deepEqual(lineLoss.y, conn.line.values.train_loss);
  assert.deepEqual(curveLoss.y, conn.path.values.train_loss);
  assert.equal(lineAcc.yaxis, "y2");
  assert.equal(curveAcc.yaxis, "y2");
  assert.equal(lineLoss.yaxis, undefined);
  assert.match(lineLoss.name, /^line 3 → 9 train_loss · barrier 1\.00$/);
  assert.match(curveLoss.name, /^bezier 3 → 9 train_loss · barrier 0\.00$/);
  assert.match(p.title, /connect 3 → 9 \(bezier, 4 ep\.\): train loss barrier line 1\.00, bezier 0\.00/);
  assert.equal(p.yaxis2.overlaying, "y");
  // a test metric in the 1-D view: the test split's profiles and barriers
  const q = connectionPlot(conn, "test_acc");
  assert.deepEqual(q.traces[0].y, conn.line.values.test_loss);
  assert.match(q.title, /test loss barrier line 1\.00/);
  assert.equal(fmtBarrier(undefined), "–");
  assert.equal(fmtBarrier(0.012345), "0.0123");
});

test("Hessian directions go through the surface message as chosen", () => {
  assert.ok(OPTIONS.directions.includes("hessian"));
  const msg = surfaceMessage({ directions: "hessian", range: "auto", resolution: 11 }, 4, [1, 2, 3]);
  assert.equal(msg.directions, "hessian");
  assert.equal(msg.checkpoints, undefined); // only PCA sends the selection
  assert.deepEqual(OPTIONS.connect_curves, ["bezier", "polychain"]);
});

test("spectrum: the density floored for a log axis, the top eigenvalues marked at its height", () => {
  assert.deepEqual(floored([0, 2, -1, NaN, 1e-9]), [2 * DENSITY_FLOOR, 2, 2 * DENSITY_FLOOR, 2 * DENSITY_FLOOR, 2 * DENSITY_FLOOR]);
  // linear interpolation is exact on a linear function, and clamps outside the grid
  const grid = [0, 0.5, 1, 2, 4];
  const f = (x) => 3 * x + 1;
  for (const x of [0, 0.2, 0.75, 1.5, 3.9]) assert.ok(Math.abs(valueAt(grid, grid.map(f), x) - f(x)) < 1e-12);
  assert.equal(valueAt(grid, grid.map(f), -5), f(0));
  assert.equal(valueAt(grid, grid.map(f), 9), f(4));
  // a Gaussian density on a grid; top eigenvalues 2 and 1
  const g = Array.from({ length: 201 }, (_, i) => -1 + (i * 4) / 200);
  const d = g.map((x) => Math.exp(-0.5 * ((x - 0.5) / 0.3) ** 2));
  const sp = { checkpoint: 7, eigenvalues: [2, 1], trace: 12.5, trace_stderr: 0.25, density_trace: 12, nodes: [0, 1, 2],
    weights: [0.5, 0.3, 0.2], grid: g, density: d };
  const p = spectrumPlot(sp);
  assert.equal(spectrumPlot({}), null);
  assert.equal(p.traces.length, 2);
  assert.ok(p.traces[0].y.every((v) => v > 0));
  assert.deepEqual(p.traces[1].x, [2, 1]);
  const expected = [2, 1].map((x) => Math.max(Math.exp(-0.5 * ((x - 0.5) / 0.3) ** 2), DENSITY_FLOOR));
  p.traces[1].y.forEach((v, i) => assert.ok(Math.abs(v - expected[i]) / expected[i] < 0.02, `${v} vs ${expected[i]}`));
  assert.deepEqual(p.traces[1].text, ["λ1", "λ2"]);
  assert.equal(p.title, "checkpoint 7: trace 12.50 ± 0.2500 · λ1 2.000");
});
