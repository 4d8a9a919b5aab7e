// Bundle the Explorer front end with esbuild: js/widget.js -> src/lossviz/static/widget.js (+ widget.css).
// plotly.js is a custom bundle (lib/core + the traces in js/plotly.js); the build prints the sizes and fails
// when the minified JS exceeds the 2 MB budget.
import * as esbuild from "esbuild";
import { statSync, mkdirSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const outdir = join(root, "src", "lossviz", "static");
const BUDGET_BYTES = 2_000_000; // 2 MB, decimal
const watch = process.argv.includes("--watch");

/** Source patches of plotly's bundled stackgl modules: [what, the text replaced, its replacement]. The build
 * fails when a text is not found (a plotly upgrade changed it: look at the patch again).
 * - The 3-D pick buffer (gl-select-static) read its pixels back in a timer 1 ms after every draw: a synchronous
 *   readPixels, which waits for the whole GL queue, the first draws' shader compilation included (seconds of
 *   work in software GL). It is read when a pick asks for it instead (a hover, when the queue is idle), so a
 *   3-D view can be drawn hidden and its shaders compiled without the page waiting (js/surface3d.js). */
const STACKGL_PATCHES = [
  ["pick buffer read on first query",
    "  this._readTimeout = setTimeout(this._readCallback, 1)\n}",
    "  this._unread = true\n}"],
  ["pick buffer query reads it first",
    "proto.query = function(x, y, radius) {\n  if(!this.gl) {\n    return null\n  }\n",
    "proto.query = function(x, y, radius) {\n  if(!this.gl) {\n    return null\n  }\n  if(this._unread) {\n    this._unread = false\n    this._readCallback()\n    this.gl.bindFramebuffer(this.gl.FRAMEBUFFER, null)\n  }\n"],
  // - The 3-D axes (gl-axes3d) made a new line program each time their ticks changed (every new surface):
  //   a new program is a new pipeline to compile. One program per context serves every tick set.
  ["axis lines keep their program",
    "  this.vertBuffer.dispose()\n  this.shader.dispose()\n}\n\nfunction createLines(gl, bounds, ticks) {",
    "  this.vertBuffer.dispose()\n}\n\nfunction createLines(gl, bounds, ticks) {"],
  ["axis lines share one program per context",
    "  var shader = createShader(gl)\n  shader.attributes.position.location = 0\n  return new Lines(",
    "  var shader = gl.__lossvizAxisLines || (gl.__lossvizAxisLines = createShader(gl))\n  shader.attributes.position.location = 0\n  return new Lines("],
];

/** @type {import("esbuild").Plugin} */
const patchStackgl = {
  name: "patch-stackgl",
  setup(build) {
    build.onLoad({ filter: /plotly\.js[\\/]stackgl_modules[\\/]index\.js$/ }, async (args) => {
      let text = await readFile(args.path, "utf8");
      for (const [what, from, to] of STACKGL_PATCHES) {
        if (text.split(from).length !== 2) throw new Error(`plotly stackgl patch "${what}": its text is not found once in ${args.path}`);
        text = text.replace(from, to);
      }
      return { contents: text, loader: "js" };
    });
  },
};

/** plotly's `require("culori")` resolves to js/shims/culori.js: the colour spaces the Explorer's colours use. */
/** @type {import("esbuild").Plugin} */
const culoriSpaces = {
  name: "culori-spaces",
  setup(build) {
    build.onResolve({ filter: /^culori$/ }, () => ({ path: join(root, "js", "shims", "culori.js") }));
  },
};

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
  plugins: [patchStackgl, culoriSpaces],
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
