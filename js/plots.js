// @ts-check
// What every plotly view of the Explorer draws with: one config, and the note an empty plot shows.

/** The plotly config of every view: no mode bar, resized with its cell. */
export const PLOT_CONFIG = { displayModeBar: false, responsive: true };

/** A grey note in the middle of an empty plot (a plotly annotation).
 * @param {string} text */
export function emptyNote(text) {
  return { text, showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5, font: { color: "#888" } };
}

/** A colour bar titled `title` on its `side`. Its tick labels are drawn as they are (`ticklabeloverflow: "allow"`: they
 * sit in the margin the bar pushes): plotly's default measures every label on every redraw to hide those
 * past the plot's edge, a sixth of the time a filling contour takes to redraw.
 * @param {string} title @param {"right" | "top"} [side] where the title goes (default "right") */
export function colorBar(title, side = "right") {
  return { title: { text: title, side }, thickness: 10, ticklabeloverflow: "allow" };
}
