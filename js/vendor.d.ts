// The untyped plotly.js internals that js/plotly.js assembles its custom bundle from (plotly.js ships no
// types); the shape of the API they build is PlotlyApi in js/types.d.ts.

declare module "native-promise-only";
declare module "plotly.js/build/plotcss";

declare module "plotly.js/src/registry" {
  const Registry: { register(modules: unknown): void };
  export default Registry;
}
declare module "plotly.js/src/plot_api" {
  const plotApi: Record<string, unknown>;
  export default plotApi;
}
declare module "plotly.js/src/plots/plots" {
  const Plots: { resize(el: HTMLElement): Promise<unknown> };
  export default Plots;
}
// trace types, components and locales: opaque modules handed to Registry.register
declare module "plotly.js/lib/*" {
  const module: object;
  export default module;
}
declare module "plotly.js/src/components/*" {
  const module: object;
  export default module;
}
declare module "plotly.js/src/locale-*" {
  const module: object;
  export default module;
}
