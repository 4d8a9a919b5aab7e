// Bundle the Explorer front end with esbuild: js/widget.js -> src/lossviz/static/widget.js (+ widget.css).
// plotly.js is a custom bundle (lib/core + the traces in js/plotly.js); the build prints the sizes and fails
// when the minified JS exceeds the 2 MB budget.
import * as esbuild from "esbuild";
import { statSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const outdir = join(root, "src", "lossviz", "static");
const BUDGET_BYTES = 2_000_000; // 2 MB, decimal
const watch = process.argv.includes("--watch");

mkdirSync(outdir, { recursive: true });

const jsOptions = {
  entryPoints: [join(root, "js", "widget.js")],
  outfile: join(outdir, "widget.js"),
  bundle: true,
  minify: !watch,
  format: "esm",
  platform: "browser",
  target: "es2020",
  define: { "define.amd": "false", global: "globalThis", "process.env.NODE_DEBUG": "false" },
  alias: { regl: "@plotly/regl", stream: "stream-browserify", buffer: join(root, "js", "shims", "buffer.cjs") },
  // plotly's registry requires maplibre's CSS only for map traces, which this bundle does not register
  loader: { ".css": "empty" },
  legalComments: "none",
  logLevel: "warning",
};
const cssOptions = {
  entryPoints: [join(root, "js", "widget.css")],
  outfile: join(outdir, "widget.css"),
  bundle: true,
  minify: !watch,
  logLevel: "warning",
};

if (watch) {
  const a = await esbuild.context(jsOptions);
  const b = await esbuild.context(cssOptions);
  await Promise.all([a.watch(), b.watch()]);
  console.log("watching js/ ...");
} else {
  await esbuild.build(jsOptions);
  await esbuild.build(cssOptions);
  const js = statSync(jsOptions.outfile).size;
  const css = statSync(cssOptions.outfile).size;
  const mb = (n) => (n / 1e6).toFixed(3);
  console.log(`lossviz bundle: widget.js ${js} bytes (${mb(js)} MB, budget ${mb(BUDGET_BYTES)} MB), widget.css ${css} bytes`);
  if (js > BUDGET_BYTES) {
    console.error(`widget.js is ${js} bytes, over the ${BUDGET_BYTES}-byte budget: register fewer plotly traces in js/plotly.js`);
    process.exit(1);
  }
}
