import { test } from "node:test";
import assert from "node:assert/strict";
import * as full from "culori";
import * as shim from "../shims/culori.js";

// colours the Explorer draws with and plotly's defaults (its colour module parses each through culori)
const COLOURS = [
  "#1f77b4", "#fff", "#111", "#888", "#e31a1c", "#00a651", "#fafafa", "#44444480", "#abcd",
  "rgba(0,0,0,0)", "rgba(255,255,255,0.9)", "rgb(31, 119, 180)", "rgb(10% 20% 30% / 0.5)",
  "hsl(210, 50%, 40%)", "hsla(0, 100%, 50%, 0.25)", "white", "black", "darkslategray", "transparent",
];

test("the culori stand-in parses, formats and measures the Explorer's colours as culori does", () => {
  const [toRgbFull, toRgbShim] = [full.converter("rgb"), shim.converter("rgb")];
  const [toHslFull, toHslShim] = [full.converter("hsl"), shim.converter("hsl")];
  for (const c of COLOURS) {
    const want = toRgbFull(c), got = toRgbShim(c);
    assert.ok(want, c);
    assert.deepEqual(got, want, c);
    assert.deepEqual(toHslShim(c), toHslFull(c), c);
    assert.equal(shim.formatHex(got), full.formatHex(want), c);
    assert.equal(shim.formatRgb(got), full.formatRgb(want), c);
    assert.equal(shim.wcagLuminance(got), full.wcagLuminance(want), c);
    assert.equal(shim.wcagContrast(got, "#fff"), full.wcagContrast(want, "#fff"), c);
  }
  assert.equal(toRgbShim("not a colour"), undefined);
});
