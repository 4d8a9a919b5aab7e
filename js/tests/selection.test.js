import { test } from "node:test";
import assert from "node:assert/strict";
import {
  segmentDistance, pathDistance, brushHits, pointInPolygon, lassoHits, gestureFor, applySelection,
  toPixel, toData, zoomRange, panRange, nearestPoint, BRUSH_RADIUS_PX,
} from "../selection.js";

test("segment distance: perpendicular foot, endpoints, degenerate segment", () => {
  assert.equal(segmentDistance(5, 3, 0, 0, 10, 0), 3);
  assert.equal(segmentDistance(-3, 4, 0, 0, 10, 0), 5); // nearest is the start point
  assert.equal(segmentDistance(13, 4, 0, 0, 10, 0), 5); // nearest is the end point
  assert.equal(segmentDistance(3, 4, 0, 0, 0, 0), 5);
});

test("path distance is the minimum over segments and matches brute force sampling", () => {
  const path = [[0, 0], [10, 0], [10, 10], [30, 25]];
  for (const [px, py] of [[5, 5], [12, 3], [40, 40], [20, 10], [-4, -3]]) {
    let brute = Infinity;
    for (let k = 1; k < path.length; k++) {
      for (let s = 0; s <= 2000; s++) {
        const t = s / 2000;
        const x = path[k - 1][0] + t * (path[k][0] - path[k - 1][0]);
        const y = path[k - 1][1] + t * (path[k][1] - path[k - 1][1]);
        brute = Math.min(brute, Math.hypot(px - x, py - y));
      }
    }
    assert.ok(Math.abs(pathDistance(px, py, path) - brute) < 1e-2, `(${px},${py})`);
  }
});

test("brush selects points within 8 px of the drag path, not beyond", () => {
  assert.equal(BRUSH_RADIUS_PX, 8);
  const xs = [50, 50, 50, 100, 150, 0, NaN];
  const ys = [107.9, 108.1, 92, 100, 100, 0, 100];
  const hits = brushHits(xs, ys, [[0, 100], [100, 100]]);
  assert.deepEqual(hits, [0, 2, 3]);
  assert.deepEqual(brushHits(xs, ys, [[150, 95]]), [4]); // a click-like single point path
  assert.deepEqual(brushHits(xs, ys, []), []);
});

test("point in polygon: convex, concave, outside, even-odd", () => {
  const square = [[0, 0], [10, 0], [10, 10], [0, 10]];
  assert.equal(pointInPolygon(5, 5, square), true);
  assert.equal(pointInPolygon(15, 5, square), false);
  assert.equal(pointInPolygon(-0.1, 5, square), false);
  const u = [[0, 0], [30, 0], [30, 30], [20, 30], [20, 10], [10, 10], [10, 30], [0, 30]]; // a U shape
  assert.equal(pointInPolygon(15, 20, u), false); // in the notch
  assert.equal(pointInPolygon(5, 20, u), true);
  assert.equal(pointInPolygon(25, 20, u), true);
  assert.equal(pointInPolygon(15, 5, u), true);
});

test("lasso hits agree with an independent winding-number test on random points", () => {
  const poly = [[10, 10], [90, 20], [60, 50], [95, 90], [20, 80], [40, 45]];
  const winding = (x, y) => { // winding number via summed angles
    let total = 0;
    for (let i = 0; i < poly.length; i++) {
      const [ax, ay] = poly[i], [bx, by] = poly[(i + 1) % poly.length];
      let d = Math.atan2(by - y, bx - x) - Math.atan2(ay - y, ax - x);
      while (d > Math.PI) d -= 2 * Math.PI;
      while (d < -Math.PI) d += 2 * Math.PI;
      total += d;
    }
    return Math.abs(total) > Math.PI;
  };
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 100;
  const xs = [], ys = [];
  for (let k = 0; k < 2000; k++) { xs.push(rand()); ys.push(rand()); }
  const hits = new Set(lassoHits(xs, ys, poly));
  let inside = 0;
  for (let k = 0; k < xs.length; k++) {
    assert.equal(hits.has(k), winding(xs[k], ys[k]), `point ${k}`);
    if (hits.has(k)) inside++;
  }
  assert.ok(inside > 100 && inside < 1900);
  assert.deepEqual(lassoHits(xs, ys, [[0, 0], [100, 100]]), []);
});

test("modifier keys pick the gesture; Alt deselects with brush or lasso", () => {
  assert.deepEqual(gestureFor({}), { gesture: "brush", mode: "add" });
  assert.deepEqual(gestureFor({ ctrlKey: true }), { gesture: "lasso", mode: "add" });
  assert.deepEqual(gestureFor({ metaKey: true }), { gesture: "lasso", mode: "add" });
  assert.deepEqual(gestureFor({ altKey: true }), { gesture: "brush", mode: "remove" });
  assert.deepEqual(gestureFor({ altKey: true, ctrlKey: true }), { gesture: "lasso", mode: "remove" });
  assert.equal(gestureFor({ shiftKey: true }).gesture, "pan");
});

test("selection add/remove/replace keeps sorted unique ids", () => {
  assert.deepEqual(applySelection([5, 1], [3, 1, 9], "add"), [1, 3, 5, 9]);
  assert.deepEqual(applySelection([1, 3, 5, 9], [3, 9, 42], "remove"), [1, 5]);
  assert.deepEqual(applySelection([1, 3], [], "remove"), [1, 3]);
  assert.deepEqual(applySelection([1, 3], [7, 2], "replace"), [2, 7]);
});

test("pixel/data maps are inverse; zoom keeps the cursor's value fixed; pan follows the pointer", () => {
  const range = [-2, 6];
  for (const v of [-2, 0, 1.5, 6]) {
    assert.ok(Math.abs(toData(toPixel(v, range, 40, 400), range, 40, 400) - v) < 1e-12);
    assert.ok(Math.abs(toData(toPixel(v, range, 10, 300, true), range, 10, 300, true) - v) < 1e-12);
  }
  assert.equal(toPixel(6, range, 10, 300, true), 10); // y axis: top of the box is the max
  const z = zoomRange(range, 1, 0.5);
  assert.deepEqual(z, [-0.5, 3.5]);
  // the value under the cursor stays at the same pixel
  assert.ok(Math.abs(toPixel(1, range, 40, 400) - toPixel(1, z, 40, 400)) < 1e-9);
  assert.ok(Math.abs(toPixel(1, range, 40, 400) - toPixel(1, zoomRange(range, 1, 3), 40, 400)) < 1e-9);
  const p = panRange(range, 50, 400); // drag right by 50 px of 400 -> content moves right -> range moves left by 1
  assert.deepEqual(p, [-3, 5]);
  assert.deepEqual(panRange(range, 50, 400, true), [-1, 7]);
});

test("nearest point within the radius, else -1", () => {
  const xs = [0, 10, 20], ys = [0, 0, 0];
  assert.equal(nearestPoint(xs, ys, 11, 2), 1);
  assert.equal(nearestPoint(xs, ys, 15, 30), -1);
});
