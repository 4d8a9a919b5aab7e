import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeCheckpoints, decodeSurface, encodeArray } from "../codecs.js";
import { SIDE_3D, sceneFigure, warmUpScenes } from "../surface3d.js";

/** The traces' kinds and how many points each draws. @param {object[]} traces */
const shape = (traces) => traces.map((t) => [t.type, t.mode ?? "", t.type === "surface" ? t.z.length : t.x.filter(Number.isFinite).length]);

test("the 3-D figure resamples the grid to SIDE_3D and lifts the trajectory onto it", () => {
  const n = 11, xs = Array.from({ length: n }, (_, j) => -1 + 2 * j / (n - 1));
  const surf = decodeSurface({ x: encodeArray(xs), y: encodeArray(xs), z: encodeArray(xs.flatMap((y) => xs.map((x) => x + 2 * y)), [n, n]),
    metric: "train_loss", progress: 1, trajectory: { ids: encodeArray([0, 1]), coords: encodeArray([0.25, -0.5, 0.5, 0.5], [2, 2]) } });
  const table = decodeCheckpoints({ ids: encodeArray([0, 1]), parents: encodeArray([NaN, 0]), branches: encodeArray([0, 0]),
    epochs: encodeArray([0, 1]), kinds: encodeArray([0, 1]), kind_names: ["init", "train"], metrics: {}, hparams: [{}, {}], status: ["ok", "ok"] });
  const state = { table, selectionSet: new Set([1]), hiddenSet: new Set(), view: { log: false, vmin: null, vmax: null } };
  const fig = sceneFigure(surf, state, 300);
  assert.deepEqual(shape(fig.traces), [["surface", "", SIDE_3D], ["scatter3d", "lines", 2], ["scatter3d", "markers", 2], ["scatter3d", "markers", 1]]);
  // a plane is its own bilinear interpolation: the lifted points lie on x + 2y
  const markers = fig.traces[2];
  for (let k = 0; k < 2; k++) assert.ok(Math.abs(markers.z[k] - (markers.x[k] + 2 * markers.y[k])) < 1e-6);
  assert.equal(fig.note, `drawn at ${SIDE_3D}×${SIDE_3D} of 11×11 · exact values: contour`);
  assert.equal(fig.layout.scene.zaxis.showticklabels, true);
  assert.equal(sceneFigure({ ...surf, progress: 0.5 }, state, 300).layout.scene.zaxis.showticklabels, false);
});

test("the warm-up figures have a real figure's traces, each trajectory trace drawn and empty", () => {
  const figs = warmUpScenes().map(({ surf, state }) => sceneFigure(surf, state, 300));
  // the same traces as a real figure (plotly rebuilds a scene whose number of traces changes), with the
  // selected, then the trajectory's traces left empty in turn: each combination is a GL pipeline of its own
  assert.deepEqual(figs.map((f) => shape(f.traces)), [
    [["surface", "", SIDE_3D], ["scatter3d", "lines", 3], ["scatter3d", "markers", 3], ["scatter3d", "markers", 1]],
    [["surface", "", SIDE_3D], ["scatter3d", "lines", 3], ["scatter3d", "markers", 3], ["scatter3d", "markers", 0]],
    [["surface", "", SIDE_3D], ["scatter3d", "lines", 0], ["scatter3d", "markers", 0], ["scatter3d", "markers", 0]],
  ]);
  for (const f of figs) {
    assert.deepEqual(f.traces[0].contours.z.project, { z: true });
    assert.equal(f.layout.scene.zaxis.showticklabels, true);
  }
});
