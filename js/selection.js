// @ts-check
// Pure selection geometry and logic for the trajectory scatter: brush (drag through points), lasso, deselect,
// pan/zoom ranges. Pixel coordinates everywhere; node-testable.

export const BRUSH_RADIUS_PX = 8;

/** A point [x, y] in pixels; a path or polygon is a list of them.
 * @typedef {[number, number]} Pixel */

/** How a selection changes: add hits, remove them, or replace the selection by them.
 * @typedef {"add" | "remove" | "replace"} SelectionMode */

/** Distance from point p to segment [a, b].
 * @param {number} px @param {number} py @param {number} ax @param {number} ay @param {number} bx @param {number} by
 * @returns {number} */
export function segmentDistance(px, py, ax, ay, bx, by) {
  const dx = bx - ax, dy = by - ay;
  const len2 = dx * dx + dy * dy;
  let t = len2 > 0 ? ((px - ax) * dx + (py - ay) * dy) / len2 : 0;
  t = Math.max(0, Math.min(1, t));
  const cx = ax + t * dx - px, cy = ay + t * dy - py;
  return Math.sqrt(cx * cx + cy * cy);
}

/** Distance from p to a polyline path [[x, y], ...] (a single point path is a dot).
 * @param {number} px @param {number} py @param {readonly Pixel[]} path @returns {number} */
export function pathDistance(px, py, path) {
  if (path.length === 0) return Infinity;
  if (path.length === 1) return Math.hypot(px - path[0][0], py - path[0][1]);
  let best = Infinity;
  for (let k = 1; k < path.length; k++) {
    const d = segmentDistance(px, py, path[k - 1][0], path[k - 1][1], path[k][0], path[k][1]);
    if (d < best) best = d;
  }
  return best;
}

/** Indices of points (xs[i], ys[i]) within `radius` px of the brush path.
 * @param {ArrayLike<number>} xs @param {ArrayLike<number>} ys @param {readonly Pixel[]} path @param {number} [radius]
 * @returns {number[]} */
export function brushHits(xs, ys, path, radius = BRUSH_RADIUS_PX) {
  /** @type {number[]} */
  const out = [];
  if (path.length === 0) return out;
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const [x, y] of path) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
  for (let i = 0; i < xs.length; i++) {
    const x = xs[i], y = ys[i];
    if (!(x >= x0 - radius && x <= x1 + radius && y >= y0 - radius && y <= y1 + radius)) continue; // also drops NaN
    if (pathDistance(x, y, path) <= radius) out.push(i);
  }
  return out;
}

/** Even-odd rule point-in-polygon; the polygon is closed implicitly.
 * @param {number} x @param {number} y @param {readonly Pixel[]} poly @returns {boolean} */
export function pointInPolygon(x, y, poly) {
  let inside = false;
  for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
    const xi = poly[i][0], yi = poly[i][1], xj = poly[j][0], yj = poly[j][1];
    if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/** Indices of points inside the lasso polygon (fewer than 3 vertices selects nothing).
 * @param {ArrayLike<number>} xs @param {ArrayLike<number>} ys @param {readonly Pixel[]} poly @returns {number[]} */
export function lassoHits(xs, ys, poly) {
  /** @type {number[]} */
  const out = [];
  if (poly.length < 3) return out;
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const [x, y] of poly) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
  for (let i = 0; i < xs.length; i++) {
    const x = xs[i], y = ys[i];
    if (!(x >= x0 && x <= x1 && y >= y0 && y <= y1)) continue;
    if (pointInPolygon(x, y, poly)) out.push(i);
  }
  return out;
}

/** Which gesture a drag starts, from its modifier keys: Shift pans, Ctrl/Cmd lassos, otherwise brush;
 * Alt turns brush or lasso into deselect.
 * @param {{shiftKey?: boolean, ctrlKey?: boolean, metaKey?: boolean, altKey?: boolean}} mods
 * @returns {{gesture: "pan", mode: null} | {gesture: "brush" | "lasso", mode: SelectionMode}} */
export function gestureFor(mods) {
  if (mods.shiftKey) return { gesture: "pan", mode: null };
  const gesture = mods.ctrlKey || mods.metaKey ? "lasso" : "brush";
  return { gesture, mode: mods.altKey ? "remove" : "add" };
}

/** New selection (sorted unique ids) after adding or removing `hits` (ids).
 * @param {Iterable<number>} current @param {Iterable<number>} hits @param {SelectionMode | null} mode @returns {number[]} */
export function applySelection(current, hits, mode) {
  const set = new Set(current);
  if (mode === "remove") for (const id of hits) set.delete(id);
  else if (mode === "replace") { set.clear(); for (const id of hits) set.add(id); }
  else for (const id of hits) set.add(id);
  return Array.from(set).sort((a, b) => a - b);
}

/** True when two id lists hold the same ids in the same order.
 * @param {readonly number[]} a @param {readonly number[]} b @returns {boolean} */
export function sameIds(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Linear map from data value to pixel on an axis box: range [r0, r1] -> [p0, p0 + len] (y flips).
 * @param {number} v @param {readonly number[]} range @param {number} p0 @param {number} len @param {boolean} [flip]
 * @returns {number} */
export function toPixel(v, range, p0, len, flip = false) {
  const t = (v - range[0]) / (range[1] - range[0]);
  return flip ? p0 + len * (1 - t) : p0 + len * t;
}

/** Inverse of toPixel.
 * @param {number} p @param {readonly number[]} range @param {number} p0 @param {number} len @param {boolean} [flip]
 * @returns {number} */
export function toData(p, range, p0, len, flip = false) {
  let t = (p - p0) / len;
  if (flip) t = 1 - t;
  return range[0] + t * (range[1] - range[0]);
}

/** Range zoomed by `factor` (<1 zooms in) around the data value `at`, which stays under the cursor.
 * @param {readonly number[]} range @param {number} at @param {number} factor @returns {[number, number]} */
export function zoomRange(range, at, factor) {
  return [at + (range[0] - at) * factor, at + (range[1] - at) * factor];
}

/** Range shifted so that a drag of `dpx` pixels moves the content with the pointer.
 * @param {readonly number[]} range @param {number} dpx @param {number} len @param {boolean} [flip]
 * @returns {[number, number]} */
export function panRange(range, dpx, len, flip = false) {
  const d = ((range[1] - range[0]) * dpx) / len;
  return flip ? [range[0] + d, range[1] + d] : [range[0] - d, range[1] - d];
}

/** Index of the nearest point within `radius` px of (px, py), or -1.
 * @param {ArrayLike<number>} xs @param {ArrayLike<number>} ys @param {number} px @param {number} py @param {number} [radius]
 * @returns {number} */
export function nearestPoint(xs, ys, px, py, radius = BRUSH_RADIUS_PX) {
  let best = -1, bestD = radius;
  for (let i = 0; i < xs.length; i++) {
    const d = Math.hypot(xs[i] - px, ys[i] - py);
    if (d <= bestD) { best = i; bestD = d; }
  }
  return best;
}
