// @ts-check
// Custom plotly.js bundle: the plotly core (as in plotly.js/lib/core, minus the components the Explorer never
// uses: updatemenus, sliders, range slider/selector, images, error bars, 3-D annotations, and plotly's own
// box/lasso selections, since the scatter's gestures are ours) plus only the trace types it draws.
// No Promise polyfill (plotly's core imports native-promise-only; every browser the bundle targets, ES2020, has
// Promise). Unregistered components are looked up through Registry.getComponentMethod, which returns a no-op.
import "plotly.js/build/plotcss";
import Registry from "plotly.js/src/registry";
import plotApi from "plotly.js/src/plot_api";
import Plots from "plotly.js/src/plots/plots";
import Fx from "plotly.js/src/components/fx";
import scatter from "plotly.js/lib/scatter";
import scattergl from "plotly.js/lib/scattergl";
import contour from "plotly.js/lib/contour";
import heatmap from "plotly.js/lib/heatmap";
import surface from "plotly.js/lib/surface";
import scatter3d from "plotly.js/lib/scatter3d";
import annotations from "plotly.js/src/components/annotations";
import shapes from "plotly.js/src/components/shapes";
import grid from "plotly.js/src/components/grid";
import colorscale from "plotly.js/src/components/colorscale";
import colorbar from "plotly.js/src/components/colorbar";
import legend from "plotly.js/src/components/legend";
import modebar from "plotly.js/src/components/modebar";
import localeEn from "plotly.js/src/locale-en";
import localeEnUs from "plotly.js/src/locale-en-us";

/** @import { PlotlyApi } from "./types" */

/** @type {Record<string, unknown>} */
const api = { register: Registry.register };
for (const name of Object.keys(plotApi)) {
  if (name.charAt(0) !== "_") api[name] = plotApi[name];
  Registry.register({ moduleType: "apiMethod", name, fn: plotApi[name] });
}
Registry.register(scatter);
// order as in plotly's core: legend after shapes, fx after legend
Registry.register([annotations, shapes, grid, colorscale, colorbar, legend, Fx, modebar]);
Registry.register([localeEn, localeEnUs]);
Registry.register([scattergl, contour, heatmap, surface, scatter3d]);
api.Plots = { resize: Plots.resize };

/** plotly's API (react, relayout, purge, downloadImage, ...) with Plots.resize */
const Plotly = /** @type {PlotlyApi} */ (/** @type {unknown} */ (api));
export default Plotly;
