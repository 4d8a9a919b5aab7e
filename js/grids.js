// @ts-check
// Pure helpers for surface grids (row-major (ny, nx), row = y, column = x; NaN = not computed yet).

/** Numbers indexed and iterated: typed arrays and plain arrays.
 * @typedef {ArrayLike<number> & Iterable<number>} Numbers */

/** Fill the cells not computed yet with the value of the nearest computed cell (grid-index BFS, 4-neighbour),
 * so a surface computed coarse-to-fine draws as a blocky preview that sharpens as points arrive. `done`
 * (optional, length nx*ny, truthy = computed) marks the computed cells: those are never changed, so a
 * computed NaN (a diverged point) stays a gap; the search passes through gaps. Without `done`, every NaN
 * cell counts as not computed. Returns a new array.
 * @param {ArrayLike<number>} z @param {number} nx @param {number} ny @param {ArrayLike<number> | null} [done]
 * @returns {Float32Array} */
export function fillNearest(z, nx, ny, done = null) {
  const n = nx * ny;
  if (done && done.length !== n) throw new Error(`lossviz: done mask of ${done.length} cells for a ${ny}x${nx} grid`);
  const out = new Float32Array(z);
  const carried = new Float32Array(z); // the value each reached cell passes on (gaps pass their source's)
  const queue = new Int32Array(n);
  const seen = new Uint8Array(n);
  let head = 0, tail = 0;
  for (let k = 0; k < n; k++) {
    if ((!done || done[k]) && !Number.isNaN(z[k])) { queue[tail++] = k; seen[k] = 1; }
  }
  if (tail === 0 || tail === n) return out;
  while (head < tail) {
    const k = queue[head++];
    const i = (k / nx) | 0, j = k - i * nx;
    const nb = [j > 0 ? k - 1 : -1, j < nx - 1 ? k + 1 : -1, i > 0 ? k - nx : -1, i < ny - 1 ? k + nx : -1];
    for (const m of nb) {
      if (m >= 0 && !seen[m]) {
        seen[m] = 1; carried[m] = carried[k]; queue[tail++] = m;
        if (!done || !done[m]) out[m] = carried[k];
      }
    }
  }
  return out;
}

/** The cell of ascending axis `a` holding v and v's fraction across it: [i, t] with a[i] + t (a[i+1] - a[i]) = v
 * (t = 0 on a one-point axis).
 * @param {ArrayLike<number>} a @param {number} v @returns {[number, number]} */
function cellOf(a, v) {
  let lo = 0, hi = a.length - 1;
  while (hi - lo > 1) { const mid = (lo + hi) >> 1; if (a[mid] <= v) lo = mid; else hi = mid; }
  return hi > lo ? [lo, (v - a[lo]) / (a[hi] - a[lo])] : [lo, 0];
}

/** a + t (b - a), exactly a at t = 0 and b at t = 1 (so a gap next to an exact grid point stays out of it).
 * @param {number} a @param {number} b @param {number} t */
const lerp = (a, b, t) => (t === 0 ? a : t === 1 ? b : a + t * (b - a));

/** Bilinear interpolation of z (ny, nx) on axes xs, ys (ascending) at (px, py); NaN outside the grid.
 * @param {ArrayLike<number>} xs @param {ArrayLike<number>} ys @param {ArrayLike<number>} z @param {number} px @param {number} py
 * @returns {number} */
export function bilinear(xs, ys, z, px, py) {
  const nx = xs.length, ny = ys.length;
  if (!(px >= xs[0] && px <= xs[nx - 1] && py >= ys[0] && py <= ys[ny - 1])) return NaN;
  const [j, tx] = cellOf(xs, px), [i, ty] = cellOf(ys, py);
  const j1 = Math.min(j + 1, nx - 1), i1 = Math.min(i + 1, ny - 1);
  return lerp(lerp(z[i * nx + j], z[i * nx + j1], tx), lerp(z[i1 * nx + j], z[i1 * nx + j1], tx), ty);
}

/** z (ny, nx) on axes xs, ys resampled bilinearly onto `mx` x `my` evenly spaced points spanning the same
 * ranges: {z (my, mx), x, y}. Points that fall on a grid point keep its value exactly.
 * @param {ArrayLike<number>} z @param {ArrayLike<number>} xs @param {ArrayLike<number>} ys @param {number} mx @param {number} my
 * @returns {{z: Float32Array, x: number[], y: number[]}} */
export function resampleGrid(z, xs, ys, mx, my) {
  /** @param {ArrayLike<number>} a @param {number} m */
  const even = (a, m) => Array.from({ length: m }, (_, k) => (m > 1 ? a[0] + ((a[a.length - 1] - a[0]) * k) / (m - 1) : a[0]));
  const x = even(xs, mx), y = even(ys, my);
  const cx = x.map((v) => cellOf(xs, v)), cy = y.map((v) => cellOf(ys, v));
  const nx = xs.length, ny = ys.length, out = new Float32Array(mx * my);
  for (let r = 0; r < my; r++) {
    const [i, ty] = cy[r], i1 = Math.min(i + 1, ny - 1);
    for (let c = 0; c < mx; c++) {
      const [j, tx] = cx[c], j1 = Math.min(j + 1, nx - 1);
      out[r * mx + c] = lerp(lerp(z[i * nx + j], z[i * nx + j1], tx), lerp(z[i1 * nx + j], z[i1 * nx + j1], tx), ty);
    }
  }
  return { z: out, x, y };
}

/** [min, max] over finite values (null when none).
 * @param {Iterable<number>} values @returns {[number, number] | null} */
export function finiteRange(values) {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) if (Number.isFinite(v)) { if (v < lo) lo = v; if (v > hi) hi = v; }
  return lo <= hi ? [lo, hi] : null;
}

/** log10 of every value; values <= 0 become NaN (shown as gaps), so the colour scale is honest.
 * @param {ArrayLike<number>} values @returns {Float32Array} */
export function log10Values(values) {
  const out = new Float32Array(values.length);
  for (let k = 0; k < values.length; k++) out[k] = values[k] > 0 ? Math.log10(values[k]) : NaN;
  return out;
}

/** Contour spec {start, end, size} for `levels` levels between lo and hi (both inclusive); `levels` is held
 * within the kernel's limits.
 * @param {number} lo @param {number} hi @param {number} levels
 * @param {{levels_min: number, levels_max: number}} limits
 * @returns {{start: number, end: number, size: number}} */
export function contourLevels(lo, hi, levels, { levels_min, levels_max }) {
  const n = Math.min(levels_max, Math.max(levels_min, Math.round(levels)));
  if (!(hi > lo)) return { start: lo, end: lo, size: 1 };
  const size = (hi - lo) / (n - 1);
  return { start: lo, end: hi, size };
}

/** Colour limits after the view options: log scale and optional vmin/vmax (in data units).
 * @param {Numbers} values
 * @param {{log?: boolean, vmin?: number | null, vmax?: number | null}} [options]
 * @returns {[number, number]} */
export function colourLimits(values, { log = false, vmin = null, vmax = null } = {}) {
  const finite = finiteRange(log ? log10Values(values) : values);
  /** @param {number} v */
  const tr = (v) => (log ? (v > 0 ? Math.log10(v) : NaN) : v);
  let lo = vmin !== null && vmin !== undefined ? tr(vmin) : finite ? finite[0] : 0;
  let hi = vmax !== null && vmax !== undefined ? tr(vmax) : finite ? finite[1] : 1;
  if (!Number.isFinite(lo)) lo = finite ? finite[0] : 0;
  if (!Number.isFinite(hi)) hi = finite ? finite[1] : 1;
  if (hi < lo) [lo, hi] = [hi, lo];
  return [lo, hi];
}

/** Every `stride`-th row and column of a (ny, nx) grid, the last row and column always kept, with the smallest
 * stride that leaves at most `maxSide` per side: {z, x, y, stride}. A stride under twice that one which divides
 * both `nx - 1` and `ny - 1` is taken when there is one: the kept grid is then evenly spaced, which plotly draws
 * as one pixel per cell (a small image) rather than a rectangle per cell on a canvas as big as the plot.
 * @param {ArrayLike<number>} z @param {number} nx @param {number} ny @param {ArrayLike<number>} xs
 * @param {ArrayLike<number>} ys @param {number} maxSide
 * @returns {{z: Float32Array, x: number[], y: number[], stride: number}} */
export function decimateGrid(z, nx, ny, xs, ys, maxSide) {
  const least = Math.max(1, Math.ceil((Math.max(nx, ny) - 1) / Math.max(1, maxSide - 1)));
  /** @param {number} s */
  const even = (s) => (nx - 1) % s === 0 && (ny < 2 || (ny - 1) % s === 0);
  let stride = least;
  while (stride < 2 * least && !even(stride)) stride++;
  if (!even(stride)) stride = least;
  /** @param {number} n */
  const picks = (n) => { const p = []; for (let i = 0; i < n; i += stride) p.push(i); if (p[p.length - 1] !== n - 1) p.push(n - 1); return p; };
  const cols = picks(nx), rowsPicked = picks(ny);
  const out = new Float32Array(cols.length * rowsPicked.length);
  let k = 0;
  for (const i of rowsPicked) for (const j of cols) out[k++] = z[i * nx + j];
  return { z: out, x: cols.map((j) => xs[j]), y: rowsPicked.map((i) => ys[i]), stride };
}
