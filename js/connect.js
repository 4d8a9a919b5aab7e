// @ts-check
// Mode connectivity in the Explorer (issue 15): the Connect and Spectrum controls under the branch panel, and
// the `connection` trait (lossviz/widget/research.py) drawn in the 1-D view: the fitted curve's loss and
// accuracy along t next to the straight line's, both loss barriers in the legend and the title. The message
// and trace builders are pure (node-tested).
import { button, el, labelled, select, setOptions } from "./dom.js";

/** @import { Ctx } from "./types" */

/** Metrics along one path: values per "<split>_<metric>" at each t, and each split's loss barrier.
 * @typedef {{values: Record<string, number[]>, barriers: Record<string, number>}} Profile */
/** The `connection` trait (empty object before any Connect).
 * @typedef {{a: number, b: number, curve: string, n_bends: number, epochs: number, t: number[], line: Profile,
 *   path: Profile, barriers: {line: number, curve: number}, losses: number[]}} Connection */

/** The Connect button's message, or the words of a refusal.
 * @param {readonly number[]} selection @param {string} curve @param {string} epochsText
 * @returns {{msg: {type: "connect", a: number, b: number, curve: string, epochs: number}} | {error: string}} */
export function connectMessage(selection, curve, epochsText) {
  if (selection.length !== 2) return { error: `Connect needs exactly two selected checkpoints, ${selection.length} are selected` };
  const text = String(epochsText).trim();
  const epochs = Number(text);
  if (text === "" || !Number.isInteger(epochs) || epochs < 1) return { error: `Connect epochs "${text}" is not a whole number ≥ 1` };
  return { msg: { type: "connect", a: selection[0], b: selection[1], curve, epochs } };
}

/** A barrier as the legend shows it.
 * @param {number | undefined} v @returns {string} */
export function fmtBarrier(v) {
  return typeof v === "number" && Number.isFinite(v) ? v.toPrecision(3) : "–";
}

/** True when the trait holds a connection.
 * @param {unknown} c @returns {c is Connection} */
export function isConnection(c) {
  return Boolean(c && typeof c === "object" && Array.isArray(/** @type {Connection} */ (c).t) && /** @type {Connection} */ (c).path);
}

/** The connection's traces for the 1-D view: the loss of `metric`'s split (train unless the metric is a test
 * one) along t for the line (dashed) and the curve (solid) on the left axis, their accuracy (thin, dotted) on a
 * right axis; each loss trace's name carries its barrier. null without a connection.
 * @param {unknown} conn @param {string} metric
 * @returns {{traces: object[], title: string, yaxis2: object, legend: object} | null} */
export function connectionPlot(conn, metric) {
  if (!isConnection(conn)) return null;
  const split = metric.startsWith("test") ? "test" : "train";
  const lossKey = `${split}_loss`, accKey = `${split}_acc`;
  const ends = `${conn.a} → ${conn.b}`;
  /** @type {object[]} */
  const traces = [];
  /** @type {[string, Profile, string, "solid" | "dash"][]} */
  const paths = [["line", conn.line, "#7f7f7f", "dash"], [conn.curve, conn.path, "#d62728", "solid"]];
  const barriers = [];
  for (const [name, p, color, dash] of paths) {
    const barrier = p.barriers[lossKey];
    barriers.push(`${name} ${fmtBarrier(barrier)}`);
    if (p.values[lossKey]) {
      traces.push({ type: "scatter", mode: "lines", x: conn.t, y: p.values[lossKey], name: `${name} ${ends} ${lossKey} · barrier ${fmtBarrier(barrier)}`,
        line: { color, width: 2, dash }, hovertemplate: `${name} ${lossKey} %{y:.4g} at t %{x:.2f}<extra></extra>` });
    }
    if (p.values[accKey]) {
      traces.push({ type: "scatter", mode: "lines", x: conn.t, y: p.values[accKey], yaxis: "y2", name: `${name} ${accKey} %`,
        line: { color, width: 1, dash: "dot" }, hovertemplate: `${name} ${accKey} %{y:.3g} % at t %{x:.2f}<extra></extra>` });
    }
  }
  const title = `connect ${ends} (${conn.curve}, ${conn.epochs} ep.): ${split} loss barrier ${barriers.join(", ")}`;
  return { traces, title, yaxis2: { title: { text: "acc %" }, overlaying: "y", side: "right", showgrid: false },
    legend: { x: 1.08, xanchor: "left", font: { size: 9 } } };
}

/** The Connect and Spectrum controls (a strip appended under the branch panel).
 * @param {Ctx} ctx @returns {{el: HTMLDivElement, render(): void}} */
export function createResearchControls(ctx) {
  const curveSel = select("lv-connect-curve", ["bezier", "polychain"], "curve fitted between the two selected checkpoints");
  const epochsIn = el("input", { type: "text", class: "lv-connect-epochs", title: "epochs of training the curve's bend", size: 3 });
  const connectBtn = button("lv-connect", "Connect", "fit a low-loss curve between the two selected checkpoints (Garipov et al. 2018)", () => {
    const r = connectMessage(ctx.state.selection, curveSel.value, epochsIn.value);
    if ("error" in r) { ctx.showError(r.error); return; }
    ctx.send(r.msg);
  });
  const spectrumBtn = button("lv-spectrum-btn", "Spectrum", "Hessian eigenvalue density (SLQ) of the open checkpoint", () => {
    const id = ctx.state.clicked;
    if (id === null || id === undefined) { ctx.showError("Spectrum: click a checkpoint in the trajectory first"); return; }
    ctx.send({ type: "spectrum", checkpoint: id });
  });
  const strip = el("div", { class: "lv-research" }, labelled("curve", curveSel), labelled("epochs", epochsIn), connectBtn, spectrumBtn);
  let filled = false;
  function render() {
    const o = ctx.state.options;
    setOptions(curveSel, o.connect_curves ?? ["bezier", "polychain"]);
    if (!filled && o.connect_epochs !== undefined) { epochsIn.value = String(o.connect_epochs); filled = true; }
    const n = ctx.state.selection.length;
    connectBtn.title = n === 2 ? `fit a ${curveSel.value} from checkpoint ${ctx.state.selection[0]} to ${ctx.state.selection[1]}`
      : `Connect needs two selected checkpoints (${n} selected)`;
    const id = ctx.state.clicked;
    spectrumBtn.title = id === null || id === undefined ? "Spectrum: open a checkpoint first" : `Hessian eigenvalue density of checkpoint ${id}`;
  }
  return { el: strip, render };
}
