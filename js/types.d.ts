// Types of the Explorer's front end that are not one module's: the anywidget model and its traits (as the
// kernel, the lossviz/widget package, sends them), the `options` constants, and the slice of the Plotly API the views use.
import type {
  Checkpoints, CheckpointsWire, Curve, CurveWire, Distances, DistancesWire, Projection, ProjectionWire, Surface, SurfaceWire,
} from "./codecs.js";
import type { FieldSpec } from "./form.js";

/** Form and view limits, sent by the kernel once. */
export interface Limits {
  max_jobs_shown: number;
  auto_distances_max: number;  // the kernel computes distances on its own up to this many selected
  max_distances: number;
  levels_min: number;
  levels_max: number;
  // the form's bounds, also in options.fields (the front end reads them there)
  interpolation_min?: number;
  interpolation_max?: number;
  resolution_min?: number;
  resolution_max?: number;
}

/** The `options` trait: every constant the front end shares with the kernel. Empty until the kernel sends it. */
export interface Options {
  optimizers?: string[];
  directions?: string[];
  projections?: string[];
  contour_modes?: string[];
  models?: string[];
  datasets?: string[];
  fields?: FieldSpec[];
  limits?: Limits;
  create_defaults?: { model?: string; data?: string };  // what Create makes when nothing is chosen
  connect_curves?: string[];  // the curves Connect fits (lossviz/widget/research.py)
  connect_epochs?: number;
}

/** A delete waiting for the user's confirmation (the `confirm_delete` trait); empty when none. */
export interface ConfirmDelete {
  ids?: number[];
  text?: string;
}

/** A row of the `jobs` trait. */
export interface JobRow {
  id: number;
  kind: string;
  state: string;  // "queued", "running", "done", "failed", "cancelled"
  progress?: number;
  done?: number;
  total?: number;
  message?: string;
  error?: string;
}

/** A row of the `projects` trait. */
export interface ProjectRow {
  path: string;
  name?: string;
  model?: string;
  data?: string;
  n_checkpoints?: number;
}

/** The synced traits of lossviz.Explorer. */
export interface Traits {
  height: number;
  checkpoints: CheckpointsWire | Record<string, never>;
  projection: ProjectionWire;
  projection_method: string;
  selection: number[];
  clicked: number | null;
  form: Record<string, unknown>;
  options: Options;
  color_by: string;
  surface: SurfaceWire;
  surface_metric: string;
  contour_mode: string;
  log_scale: boolean;
  vmin: number | null;
  vmax: number | null;
  levels: number;
  curves: CurveWire[];
  distances: DistancesWire;
  jobs: JobRow[];
  error: string;
  message: string;
  projects: ProjectRow[];
  project_root: string;
  project: { path?: string; name?: string };
  include_outliers: boolean;
  outliers: number[];
  hidden: number[];
  hidden_branches: number[];
  show_critical: boolean;
  control_errors: Record<string, string>;
  confirm_delete: ConfirmDelete;
  connection: Record<string, unknown>;  // js/connect.js Connection, or empty
  spectrum: Record<string, unknown>;  // js/spectrum.js Spectrum, or empty
  stored_surfaces: { key: string; label: string; complete: boolean }[];  // newest first
}

/** The anywidget model (the part of its interface the Explorer uses). */
export interface AnyModel<T = Traits> {
  get<K extends keyof T>(key: K): T[K];
  set<K extends keyof T>(key: K, value: T[K]): void;
  save_changes(): void;
  send(content: object): void;
  on(event: "msg:custom", callback: (msg: unknown, buffers: DataView<ArrayBuffer>[]) => void): void;
  on(event: `change:${string & keyof T}`, callback: () => void): void;
  // ipywidgets' model events: the widget manager marks the comm dead on a kernel restart; the kernel closed it
  on(event: "comm_live_update" | "comm:close", callback: () => void): void;
  off(event: string, callback: (...args: never[]) => void): void;
}

/** What anywidget passes to render(). */
export interface RenderProps {
  model: AnyModel;
  el: HTMLElement;
}

/** The part of plotly's full layout the scatter reads: the plot area (px) and the axis ranges. */
export interface FullLayout {
  _size: { l: number; t: number; w: number; h: number };
  xaxis?: { range: [number, number] };
  yaxis: { range: [number, number] };
}

/** A div plotly has drawn in. */
export interface PlotElement extends HTMLDivElement {
  _fullLayout?: FullLayout;
}

/** The Plotly API of the custom bundle (js/plotly.js), as far as the views call it. */
export interface PlotlyApi {
  react(el: HTMLElement, data: object[], layout: object, config?: object): Promise<unknown>;
  relayout(el: HTMLElement, update: object): Promise<unknown>;
  purge(el: HTMLElement): void;
  downloadImage(el: HTMLElement, options: { format: string; filename: string; scale?: number }): Promise<unknown>;
  Plots: { resize(el: HTMLElement): Promise<unknown> };
  register(modules: unknown): void;
}

/** A view of the Explorer: its plot element, a redraw from ctx.state, and teardown. */
export interface View {
  el: PlotElement;
  render(): void;
  destroy(): void;
  /** false while the view's plot holds nothing of the user's to show (the 3-D view's hidden warm-up scene) */
  isShown?(): boolean;
}

/** The surface's view options (contour style, log scale, colour limits, levels). */
export interface ViewOptions {
  mode: string;
  log: boolean;
  vmin: number | null;
  vmax: number | null;
  levels: number;
}

/** The traits decoded for drawing (widget.js readState), read again before each batch of redraws. */
export interface State {
  table: Checkpoints;
  projection: Projection;
  selection: number[];
  selectionSet: Set<number>;
  clicked: number | null;
  form: Record<string, unknown>;
  options: Options;
  colorBy: string;
  surface: Surface | null;
  surfaceMetric: string;
  view: ViewOptions;
  curves: Curve[];
  distances: Distances | null;
  jobs: JobRow[];
  error: string;
  message: string;
  projects: ProjectRow[];
  projectRoot: string;
  project: { path?: string; name?: string };
  includeOutliers: boolean;
  outliers: number[];
  hidden: number[];
  hiddenBranches: number[];
  hiddenSet: Set<number>;  // checkpoint ids hidden, by id or by branch
  showCritical: boolean;
  controlErrors: Record<string, string>;
  confirmDelete: ConfirmDelete;
  connection: Record<string, unknown>;
}

/** What the views and panels share: plotly, the state, and the actions that talk to the kernel. */
export interface Ctx {
  Plotly: PlotlyApi;
  state: State;
  send(msg: object): void;
  setSelection(ids: number[]): void;
  click(id: number | null): void;
  showError(msg: string): void;
  /** Set a view trait the kernel follows (hidden, hidden_branches, include_outliers, show_critical, ...). */
  setTrait<K extends keyof Traits>(name: K, value: Traits[K]): void;
}
