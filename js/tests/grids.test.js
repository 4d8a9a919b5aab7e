import { test } from "node:test";
import assert from "node:assert/strict";
import { fillNearest, bilinear, resampleGrid, finiteRange, log10Values, contourLevels, colourLimits } from "../grids.js";
import { LIMITS } from "./fixtures.js";

test("fillNearest fills every gap from the nearest computed cell and keeps computed cells", () => {
  const nx = 5, ny = 4, z = new Float32Array(nx * ny).fill(NaN);
  z[0] = 1; z[nx * ny - 1] = 9; // corners
  const f = fillNearest(z, nx, ny);
  assert.equal(f[0], 1);
  assert.equal(f[nx * ny - 1], 9);
  for (let i = 0; i < ny; i++) for (let j = 0; j < nx; j++) {
    const d0 = i + j, d1 = (ny - 1 - i) + (nx - 1 - j);
    const v = f[i * nx + j];
    if (d0 < d1) assert.equal(v, 1); else if (d1 < d0) assert.equal(v, 9); else assert.ok(v === 1 || v === 9);
  }
  assert.ok(Number.isNaN(fillNearest(new Float32Array([NaN, NaN]), 2, 1)[0])); // nothing computed: unchanged
});

test("fillNearest with a done mask fills only cells not computed yet; computed NaN cells stay gaps", () => {
  const nx = 5, ny = 4, n = nx * ny;
  const z = new Float32Array(n).fill(NaN), done = new Uint8Array(n);
  const seeds = { 0: 1, 4: 2, 12: 5, 19: 7 }; // computed finite cells
  for (const [k, v] of Object.entries(seeds)) { z[k] = v; done[k] = 1; }
  const gaps = [1, 6, 7, 11, 13]; // computed and NaN (diverged): around the centre seed and next to a corner
  for (const k of gaps) done[k] = 1;
  const f = fillNearest(z, nx, ny, done);
  for (const k of gaps) assert.ok(Number.isNaN(f[k]), `diverged cell ${k} must stay a gap, got ${f[k]}`);
  for (const [k, v] of Object.entries(seeds)) assert.equal(f[k], v);
  // every other cell: the value of a computed cell at the least Manhattan distance (gaps do not block the way)
  for (let k = 0; k < n; k++) {
    if (done[k]) continue;
    const i = (k / nx) | 0, j = k % nx;
    const dist = Object.keys(seeds).map((s) => Math.abs(((s / nx) | 0) - i) + Math.abs((s % nx) - j));
    const best = Math.min(...dist);
    const allowed = Object.values(seeds).filter((_v, q) => dist[q] === best);
    assert.ok(allowed.includes(f[k]), `cell ${k}: ${f[k]} not among nearest ${allowed}`);
  }
  // without the mask every NaN counts as missing: the old preview paints over the gaps
  const old = fillNearest(z, nx, ny);
  for (const k of gaps) assert.ok(!Number.isNaN(old[k]));
  // a fully computed grid with gaps is returned unchanged
  const all = new Uint8Array(n).fill(1);
  const same = fillNearest(z, nx, ny, all);
  for (let k = 0; k < n; k++) assert.ok(Object.is(same[k], z[k]) || (Number.isNaN(same[k]) && Number.isNaN(z[k])));
  assert.throws(() => fillNearest(z, nx, ny, new Uint8Array(3)), /done mask of 3 cells/);
});

test("bilinear is exact on a plane and NaN outside", () => {
  const xs = [-1, 0, 2], ys = [0, 1, 3, 4];
  const f = (x, y) => 2 * x - 3 * y + 0.5;
  const z = new Float64Array(12);
  for (let i = 0; i < 4; i++) for (let j = 0; j < 3; j++) z[i * 3 + j] = f(xs[j], ys[i]);
  for (const [x, y] of [[-1, 0], [0.3, 2.2], [2, 4], [1.7, 0.1]]) assert.ok(Math.abs(bilinear(xs, ys, z, x, y) - f(x, y)) < 1e-12);
  assert.ok(Number.isNaN(bilinear(xs, ys, z, 2.1, 1)));
});

test("ranges, logs, levels and colour limits", () => {
  assert.deepEqual(finiteRange([NaN, 3, -1, Infinity, 2]), [-1, 3]);
  assert.equal(finiteRange([NaN]), null);
  const l = log10Values(new Float32Array([100, 0, -1, 0.001]));
  assert.equal(l[0], 2); assert.ok(Number.isNaN(l[1]) && Number.isNaN(l[2])); assert.ok(Math.abs(l[3] + 3) < 1e-6);
  const c = contourLevels(0, 1, 11, LIMITS);
  assert.ok(Math.abs(c.size - 0.1) < 1e-12);
  // levels outside the kernel's limits are held within them
  assert.ok(Math.abs(contourLevels(0, 1, 1, LIMITS).size - 1 / (LIMITS.levels_min - 1)) < 1e-12);
  assert.ok(Math.abs(contourLevels(0, 1, 1e6, LIMITS).size - 1 / (LIMITS.levels_max - 1)) < 1e-12);
  assert.deepEqual(contourLevels(3, 3, 11, LIMITS), { start: 3, end: 3, size: 1 });
  assert.deepEqual(colourLimits([1, 10, 100], { log: true }), [0, 2]);
  assert.deepEqual(colourLimits([1, 10, 100], { vmin: 5, vmax: 50 }), [5, 50]);
  assert.deepEqual(colourLimits([1, 10, 100], { log: true, vmax: 10 }), [0, 1]);
});

test("resampleGrid: a plane is resampled exactly onto even axes over the same ranges; grid points keep their values", () => {
  const xs = [-1, -0.5, 0, 0.5, 1], ys = [0, 1, 2];  // 5 x 3
  const f = (x, y) => 3 * x - 2 * y + 0.5;
  const z = new Float64Array(15).map((_, k) => f(xs[k % 5], ys[Math.floor(k / 5)]));
  const r = resampleGrid(z, xs, ys, 9, 7);
  assert.deepEqual([r.x.length, r.y.length, r.z.length], [9, 7, 63]);
  assert.deepEqual([r.x[0], r.x[8], r.y[0], r.y[6]], [-1, 1, 0, 2]);
  for (let i = 0; i < 7; i++) for (let j = 0; j < 9; j++) assert.ok(Math.abs(r.z[i * 9 + j] - f(r.x[j], r.y[i])) < 1e-6);
  // a gap (NaN) stays out of the grid points next to it, and shows where the mesh crosses it
  const gap = Float64Array.from(z); gap[7] = NaN;  // (x 0, y 1)
  const g = resampleGrid(gap, xs, ys, 9, 7);
  assert.equal(g.z[3 * 9 + 6], f(0.5, 1));  // grid point (0.5, 1): exact
  assert.ok(Number.isNaN(g.z[3 * 9 + 4]) && Number.isNaN(g.z[3 * 9 + 5]));  // on the gap, and between it and (0.5, 1)
  // a 401-point axis onto 121 points: every third lands on every tenth grid point
  const big = Array.from({ length: 401 }, (_, j) => -1 + (2 * j) / 400);
  const row = resampleGrid(Float64Array.from(big, (x) => x * x), big, [0], 121, 1);
  for (let c = 0; c < 121; c += 3) assert.equal(row.z[c], Math.fround(big[(10 * c) / 3] ** 2));
});
