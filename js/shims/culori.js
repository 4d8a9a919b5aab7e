// @ts-check
// Stand-in for `culori` in the browser bundle. plotly's colour module (components/color) asks culori for five
// functions on CSS colours; `require("culori")` brings culori's whole bundle, every colour space registered
// (64 kB minified). The Explorer's colours are hex, rgb()/rgba(), hsl() and named, so the spaces those need
// are registered here (rgb parses hex, rgb(), named and "transparent"; lrgb is what WCAG luminance
// converts to), from culori's tree-shakeable entry (plotly's own TODO: "import from culori/fn").
import { converter, formatHex, formatRgb, modeHsl, modeLrgb, modeRgb, useMode, wcagContrast, wcagLuminance } from "culori/fn";

useMode(modeRgb);
useMode(modeLrgb);
useMode(modeHsl);

export { converter, formatHex, formatRgb, wcagContrast, wcagLuminance };
