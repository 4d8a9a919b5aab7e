// @ts-check
// What the views leave out and mark: hidden checkpoints and branches (the `hidden` and `hidden_branches`
// traits), the outliers the last projection left out (`outliers`), and what the time axis counts
// (`checkpoints.time_label`). Pure functions: they run under node too.

/** @import { Checkpoints } from "./codecs.js" */

/** The ids of the table's checkpoints that are hidden, by id or by their branch.
 * @param {Checkpoints} table @param {readonly number[]} hidden @param {readonly number[]} hiddenBranches
 * @returns {Set<number>} */
export function hiddenIds(table, hidden, hiddenBranches) {
  const out = new Set(hidden);
  if (!hiddenBranches.length) return out;
  const branches = new Set(hiddenBranches);
  for (let r = 0; r < table.n; r++) if (branches.has(Math.round(table.branches[r]))) out.add(Math.round(table.ids[r]));
  return out;
}

/** How many of the table's checkpoints are hidden (what "show hidden (n)" says).
 * @param {Checkpoints} table @param {Set<number>} gone @returns {number} */
export function hiddenCount(table, gone) {
  let n = 0;
  for (let r = 0; r < table.n; r++) if (gone.has(Math.round(table.ids[r]))) n++;
  return n;
}

/** `hidden` with `id` added (sorted, once).
 * @param {readonly number[]} list @param {number} id @returns {number[]} */
export function withId(list, id) {
  return [...new Set([...list, id])].sort((a, b) => a - b);
}

/** The scatter's note on the outliers, e.g. "2 outliers left out (ids 7, 9)"; "" when none. `placed`: the
 * view shows them (the layout places every checkpoint), marked, and leaves them out of the colour scale only.
 * @param {readonly number[]} outliers @param {{most?: number, placed?: boolean}} [opts] ids named at most
 * @returns {string} */
export function outlierNote(outliers, { most = 6, placed = false } = {}) {
  const n = outliers.length;
  if (!n) return "";
  const named = outliers.slice(0, most).join(", ") + (n > most ? ", …" : "");
  const what = `${n} outlier${n === 1 ? "" : "s"}`, ids = `id${n === 1 ? "" : "s"} ${named}`;
  return placed ? `${what} (${ids}) marked, left out of projections and colour scales` : `${what} left out (${ids})`;
}

/** Where the scatter marks each outlier: at its own point when the projection placed it (the layout view
 * places every checkpoint), else pinned to the right edge of the plot, spread along it.
 * @param {readonly number[]} outliers @param {{ids: number[], xs: number[], ys: number[]}} pts
 * @param {readonly number[]} xr @param {readonly number[]} yr  the axis ranges shown
 * @returns {{ids: number[], x: number[], y: number[], placed: boolean[]}} */
export function outlierMarks(outliers, pts, xr, yr) {
  const at = new Map(pts.ids.map((id, k) => [id, k]));
  const loose = outliers.filter((id) => !at.has(id));
  /** @type {{ids: number[], x: number[], y: number[], placed: boolean[]}} */
  const out = { ids: [], x: [], y: [], placed: [] };
  let j = 0;
  for (const id of outliers) {
    const k = at.get(id);
    out.ids.push(id);
    if (k !== undefined) { out.x.push(pts.xs[k]); out.y.push(pts.ys[k]); out.placed.push(true); continue; }
    const edge = xr[1] - 0.02 * (xr[1] - xr[0]);
    out.x.push(edge);
    out.y.push(yr[0] + ((j + 1) / (loose.length + 1)) * (yr[1] - yr[0]));
    out.placed.push(false);
    j++;
  }
  return out;
}

/** The label of the time axis: the table's `time_label` ("step" for a project logged by steps), else "epoch".
 * @param {Checkpoints} table @returns {string} */
export function timeLabel(table) {
  return table.timeLabel === "step" ? "step" : "epoch";
}

/** The control error of `control` (the `control_errors` trait), "" when none.
 * @param {Record<string, string>} errors @param {string} control @returns {string} */
export function controlError(errors, control) {
  const e = errors?.[control];
  return typeof e === "string" ? e : "";
}

/** Whether the delete waiting for confirmation (`confirm_delete`) is the one of these ids.
 * @param {{ids?: number[], text?: string}} pending @param {readonly number[]} ids @returns {boolean} */
export function confirmsIds(pending, ids) {
  const p = pending?.ids;
  if (!p || p.length !== ids.length) return false;
  const a = [...p].sort((x, y) => x - y), b = [...ids].sort((x, y) => x - y);
  return a.every((v, i) => v === b[i]);
}
