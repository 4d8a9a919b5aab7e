// @ts-check
// What every plotly view of the Explorer draws with: one config, and the note an empty plot shows.

/** The plotly config of every view: no mode bar, resized with its cell. */
export const PLOT_CONFIG = { displayModeBar: false, responsive: true };

/** A grey note in the middle of an empty plot (a plotly annotation).
 * @param {string} text */
export function emptyNote(text) {
  return { text, showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5, font: { color: "#888" } };
}
