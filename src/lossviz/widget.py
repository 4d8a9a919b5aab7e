"""``Explorer(session)``: the lossviz notebook widget (one composite anywidget).

Traitlets and message handlers only: every action is delegated to a :class:`lossviz.session.Session`
(see ``notes/API.md``, "Session layer contract"). Arrays cross to the browser as float32 binary buffers
``{"view": memoryview, "dtype": "float32", "shape": [...]}`` (0/1 masks: ``"dtype": "uint8"``), never as JSON lists.

Front-end commands arrive as custom messages ``{"type": ..., ...}`` (see :data:`COMMANDS`); a bad payload
or a failing session call sets the ``error`` trait (words naming the problem and the fix) and never raises
into the kernel. Session events arrive on worker threads and update traits (coalesced by ``throttle``
seconds).
"""

from __future__ import annotations

import math
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import anywidget
import numpy as np
import traitlets as t

_STATIC = Path(__file__).parent / "static"
_ESM_PATH = _STATIC / "widget.js"
_CSS_PATH = _STATIC / "widget.css"
_NOT_BUILT_ESM = """
export default { render({ el }) {
  el.textContent = "lossviz: the Explorer front end is not built. Run `npm install && npm run build` in the "
    + "repository (or `pip install -e .`), then restart the kernel.";
} };
"""

TRAIN_KEYS = ("lr", "optimizer", "momentum", "nesterov", "weight_decay", "batch_size", "schedule", "seed")
FORM_EXTRAS = {"epochs": 1, "magnitude": 0.1, "n": 5, "directions": "random", "range": "-1:1", "resolution": 21,
               "adaptive": False}
DEFAULT_OPTIONS = {
    "optimizers": ["sgd", "adam", "adamw", "adagrad", "rmsprop"],
    "directions": ["random", "pca"],
    "projections": ["layout", "pca", "tsne", "surface"],
    "models": ["mlp"],
    "datasets": ["spirals"],
}
METRIC_ORDER = ("train_loss", "train_acc", "test_loss", "test_acc")
KIND_NAMES = ("init", "train", "disturb", "interpolate", "import")
PROJECTIONS = ("layout", "pca", "tsne", "surface")
MAX_JOBS_SHOWN = 20
AUTO_DISTANCES_MAX = 16
MAX_DISTANCES = 400


# ----------------------------------------------------------------------------------------- wire format
def wire_array(values: Any) -> dict:
    """A float32 C-contiguous array as the wire dict ``{"view", "dtype", "shape"}`` (a binary buffer)."""
    arr = np.ascontiguousarray(np.asarray(values, dtype=np.float32))
    return {"view": memoryview(arr.reshape(-1)), "dtype": "float32", "shape": list(arr.shape)}


def wire_mask(values: Any) -> dict:
    """A 0/1 mask as the wire dict ``{"view", "dtype": "uint8", "shape"}`` (one byte a point)."""
    arr = np.ascontiguousarray(np.asarray(values, dtype=bool).astype(np.uint8))
    return {"view": memoryview(arr.reshape(-1)), "dtype": "uint8", "shape": list(arr.shape)}


def to_wire(value: Any, widget: Any = None) -> Any:
    """Recursively replace numpy arrays by wire dicts (the traits' ``to_json``: uint8 arrays as
    :func:`wire_mask`, all others as float32 :func:`wire_array`); JSON-unsafe floats -> None."""
    if isinstance(value, np.ndarray):
        return wire_mask(value) if value.dtype == np.uint8 else wire_array(value)
    if isinstance(value, Mapping):
        return {str(k): to_wire(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_wire(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def json_safe(value: Any) -> Any:
    """A JSON-able copy: NaN/inf -> None, numpy scalars -> Python, tuples -> lists, others -> str."""
    if value is None or isinstance(value, (bool, str, int)) and not isinstance(value, np.integer):
        return value
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray) and value.size <= 64:
        return json_safe(value.tolist())
    return str(value)


def schedule_text(schedule: Any) -> str:
    """A schedule (dict from the store or a string) as the text the form shows, e.g. ``step:30:0.1``."""
    if schedule is None:
        return "constant"
    if isinstance(schedule, str):
        return schedule
    if isinstance(schedule, Mapping):
        name = str(schedule.get("name", "constant"))
        if name == "step":
            return f"step:{schedule.get('step_size', 30)}:{schedule.get('gamma', 0.1)}"
        if name == "multistep":
            ms = ",".join(str(int(m)) for m in schedule.get("milestones", ()))
            return f"multistep:{ms}:{schedule.get('gamma', 0.1)}"
        if name == "cosine":
            t_max = schedule.get("t_max")
            eta = schedule.get("eta_min", 0.0)
            return "cosine" if t_max is None and not eta else f"cosine:{'' if t_max is None else t_max}:{eta}"
        return name
    return str(schedule)


def _field(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def metric_names(checkpoints: Iterable[Any]) -> list[str]:
    """Metric names over all checkpoints: the standard four first (when present), then the rest sorted."""
    names: set[str] = set()
    for c in checkpoints:
        names.update((_field(c, "metrics") or {}).keys())
    return [m for m in METRIC_ORDER if m in names] + sorted(names - set(METRIC_ORDER))


def checkpoint_table(checkpoints: Sequence[Any]) -> dict:
    """The ``checkpoints`` trait: columns as float32 arrays (parent NaN = none, kind as a code into
    ``kind_names``, missing metric NaN) plus small JSON lists (status, hparams)."""
    n = len(checkpoints)
    kinds = list(KIND_NAMES)
    for c in checkpoints:
        k = str(_field(c, "kind", "train"))
        if k not in kinds:
            kinds.append(k)
    col = lambda f: np.array([f(c) for c in checkpoints], dtype=np.float32).reshape(n)  # noqa: E731
    parent = lambda c: np.nan if _field(c, "parent") is None else float(_field(c, "parent"))  # noqa: E731
    names = metric_names(checkpoints)

    def metric(c: Any, m: str) -> float:
        v = (_field(c, "metrics") or {}).get(m)
        try:
            return float(v) if v is not None else np.nan
        except (TypeError, ValueError):
            return np.nan

    return {
        "n": n,
        "ids": col(lambda c: float(_field(c, "id"))),
        "parents": col(parent),
        "branches": col(lambda c: float(_field(c, "branch", 0))),
        "epochs": col(lambda c: float(_field(c, "epoch", 0.0))),
        "kinds": col(lambda c: float(kinds.index(str(_field(c, "kind", "train"))))),
        "kind_names": kinds,
        "status": [str(_field(c, "status", "ok")) for c in checkpoints],
        "metrics": {m: col(lambda c, m=m: metric(c, m)) for m in names},
        "hparams": [json_safe(dict(_field(c, "hparams") or {})) for c in checkpoints],
    }


def job_info(job: Any) -> dict:
    """A job as a small JSON dict for the ``jobs`` trait."""
    return json_safe(
        {
            "id": _field(job, "id"),
            "kind": _field(job, "kind", ""),
            "state": _field(job, "state", ""),
            "progress": _field(job, "progress", 0.0),
            "done": _field(job, "done", 0),
            "total": _field(job, "total", 0),
            "message": _field(job, "message", "") or "",
            "error": _field(job, "error"),
            "description": _field(job, "description", "") or "",
        }
    )


# ----------------------------------------------------------------------------------------- payloads
class PayloadError(ValueError):
    """A front-end message that cannot be acted on; its text goes to the ``error`` trait."""


def _number(payload: Mapping, key: str, kind: type = float, *, minimum: float | None = None,
            exclusive: bool = False, maximum: float | None = None, default: Any = ..., allow_none: bool = False):
    if key not in payload or payload[key] is None or payload[key] == "":
        if default is not ...:
            return default
        if allow_none:
            return None
        raise PayloadError(f"{key} is missing: fill in the {key} field")
    raw = payload[key]
    if isinstance(raw, bool):
        raise PayloadError(f"{key} must be a number, got {raw!r}")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise PayloadError(f"{key} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise PayloadError(f"{key} must be a finite number, got {raw!r}")
    if kind is int:
        if value != int(value):
            raise PayloadError(f"{key} must be a whole number, got {raw!r}")
        value = int(value)
    if minimum is not None and (value <= minimum if exclusive else value < minimum):
        raise PayloadError(f"{key} must be {'greater than' if exclusive else 'at least'} {minimum}, got {raw!r}")
    if maximum is not None and value > maximum:
        raise PayloadError(f"{key} must be at most {maximum}, got {raw!r}")
    return value


def _ids(payload: Mapping, key: str) -> list[int]:
    raw = payload.get(key)
    if not isinstance(raw, (list, tuple)):
        raise PayloadError(f"{key} must be a list of checkpoint ids, got {raw!r}")
    return [_number({key: v}, key, int) for v in raw]


def _text(payload: Mapping, key: str, default: str | None = None) -> str:
    raw = payload.get(key, default)
    if not isinstance(raw, str) or not raw.strip():
        raise PayloadError(f"{key} must be a non-empty text, got {raw!r}")
    return raw.strip()


def surface_axis_spec(range_text: str, resolution: int) -> str:
    """``"-1:1"`` and 21 -> ``"-1:1:21"`` (Li's axis syntax), checking min < max."""
    parts = str(range_text).split(":")
    if len(parts) != 2:
        raise PayloadError(f"range {range_text!r} is not min:max, e.g. -1:1")
    try:
        lo, hi = float(parts[0]), float(parts[1])
    except ValueError:
        raise PayloadError(f"range {range_text!r} is not min:max with numbers, e.g. -1:1") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise PayloadError(f"range {range_text!r}: max must be greater than min")
    return f"{lo:g}:{hi:g}:{int(resolution)}"


def adaptive_summary(meta: Mapping[str, Any], total: int) -> dict | None:
    """An adaptive surface's ``meta["adaptive"]`` as the small dict the front end shows
    (``{"n_evaluated", "total", "rounds"}``; the flat index list of evaluated points stays in the
    kernel), or None for a fully evaluated surface."""
    info = meta.get("adaptive")
    if not isinstance(info, Mapping) or info.get("method") != "refine":
        return None
    return {"n_evaluated": int(info["n_evaluated"]), "total": int(total), "rounds": int(info["rounds"])}


# ----------------------------------------------------------------------------------------- throttling
class _Coalescer:
    """Run ``fn`` at most once per ``interval`` seconds; calls in between fold into one trailing run."""

    def __init__(self, fn: Callable[[], None], interval: float, on_error: Callable[[BaseException], None]):
        self.fn, self.interval, self.on_error = fn, interval, on_error
        self.lock = threading.Lock()
        self.pending = False
        self.last = 0.0

    def __call__(self) -> None:
        if self.interval <= 0:
            self._run()
            return
        with self.lock:
            if self.pending:
                return
            self.pending = True
            delay = max(0.0, self.last + self.interval - time.monotonic())
        timer = threading.Timer(delay, self._fire)
        timer.daemon = True
        timer.start()

    def _fire(self) -> None:
        with self.lock:
            self.pending = False
            self.last = time.monotonic()
        self._run()

    def _run(self) -> None:
        try:
            self.fn()
        except Exception as exc:  # a refresh must never kill a worker thread
            self.on_error(exc)


# ----------------------------------------------------------------------------------------- the widget
class Explorer(anywidget.AnyWidget):
    """Interactive explorer of a :class:`~lossviz.session.Session`: trajectory scatter, contour / 3D / 1D
    surface views, metric curves, branch and project panels.

    Parameters
    ----------
    session: the Session (anything with its methods).
    throttle: seconds between pushes of progressive updates (checkpoints, surface fill) to the browser.
    background: run slow session calls (disturb, interpolate, projections, distances, opening projects) on
        a worker thread so the kernel stays responsive; ``False`` runs them inline (tests, scripts).
    height: height of the widget in pixels.
    """

    _esm = _ESM_PATH if _ESM_PATH.exists() else _NOT_BUILT_ESM
    _css = _CSS_PATH if _CSS_PATH.exists() else ""

    # checkpoint table and projection
    checkpoints = t.Dict().tag(sync=True, to_json=to_wire)
    projection_method = t.Unicode("layout").tag(sync=True)
    projection = t.Dict().tag(sync=True, to_json=to_wire)
    selection = t.List(t.Int()).tag(sync=True)
    clicked = t.Int(None, allow_none=True).tag(sync=True)
    form = t.Dict().tag(sync=True)
    options = t.Dict().tag(sync=True)
    color_by = t.Unicode("branch").tag(sync=True)
    # surface and its view options
    surface = t.Dict().tag(sync=True, to_json=to_wire)
    surface_metric = t.Unicode("train_loss").tag(sync=True)
    contour_mode = t.Unicode("filled").tag(sync=True)
    log_scale = t.Bool(False).tag(sync=True)
    vmin = t.Float(None, allow_none=True).tag(sync=True)
    vmax = t.Float(None, allow_none=True).tag(sync=True)
    levels = t.Int(20).tag(sync=True)
    curves = t.List().tag(sync=True, to_json=to_wire)
    distances = t.Dict().tag(sync=True, to_json=to_wire)
    # jobs, messages, projects
    jobs = t.List().tag(sync=True)
    error = t.Unicode("").tag(sync=True)
    message = t.Unicode("").tag(sync=True)
    projects = t.List().tag(sync=True)
    project_root = t.Unicode("").tag(sync=True)
    project = t.Dict().tag(sync=True)
    height = t.Int(760).tag(sync=True)

    def __init__(self, session: Any, *, throttle: float = 0.25, background: bool = True,
                 project_root: str | os.PathLike | None = None, session_factory: Callable[..., Any] | None = None,
                 surface: Any = None, **kwargs: Any):
        if not _ESM_PATH.exists():
            raise FileNotFoundError(
                f"the Explorer front end is not built ({_ESM_PATH} is missing): run `npm install && npm run build` "
                "in the repository, or reinstall with `pip install -e .`"
            )
        super().__init__(**kwargs)
        self._lock = threading.RLock()
        self._throttle = float(throttle)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lossviz-explorer") if background else None
        self._session_factory = session_factory
        self._surface_obj: Any = None
        self._surface_job: Any = None
        self._jobs: dict[int, Any] = {}
        self._unsubscribe: Callable[[], None] | None = None
        self._refresh_table = _Coalescer(self._push_checkpoints, self._throttle, self._report)
        self._refresh_surface = _Coalescer(self._push_surface, self._throttle, self._report)
        self._refresh_jobs = _Coalescer(self._push_jobs, min(self._throttle, 0.1), self._report)
        self.options = self._options()
        self.on_msg(self._on_frontend_msg)
        self.observe(self._on_clicked, names="clicked")
        self.observe(self._on_projection_method, names="projection_method")
        self.observe(self._on_surface_metric, names="surface_metric")
        self.observe(self._on_selection, names="selection")
        if project_root is not None:
            self.project_root = str(project_root)
        self._attach(session)
        if surface is not None:
            self.show_surface(surface)

    def show_surface(self, surface: Any) -> None:
        """Show a Surface (e.g. ``session.surface(...)``'s result) in the contour, 3-D and 1-D views."""
        self._surface_obj = surface
        self._push_surface()

    # ------------------------------------------------------------------ validation of synced view options
    @t.validate("contour_mode")
    def _valid_mode(self, proposal: Any) -> str:
        v = proposal["value"]
        if v not in ("filled", "lines", "heatmap"):
            raise t.TraitError(f"contour_mode {v!r} is unknown: use 'filled', 'lines' or 'heatmap'")
        return v

    @t.validate("levels")
    def _valid_levels(self, proposal: Any) -> int:
        return int(min(200, max(2, proposal["value"])))

    @t.validate("projection_method")
    def _valid_projection(self, proposal: Any) -> str:
        v = proposal["value"]
        if v not in PROJECTIONS:
            raise t.TraitError(f"projection {v!r} is unknown: use one of {PROJECTIONS}")
        return v

    @t.validate("selection")
    def _valid_selection(self, proposal: Any) -> list[int]:
        return sorted(set(int(i) for i in proposal["value"]))

    # ------------------------------------------------------------------ session wiring
    @property
    def session(self) -> Any:
        """The Session this widget shows."""
        return self._session

    def _attach(self, session: Any) -> None:
        if self._unsubscribe is not None:
            try:
                self._unsubscribe()
            except Exception:
                pass
        self._session = session
        self._surface_obj = None
        self._surface_job = None
        self._unsubscribe = session.subscribe(self._on_session_event)
        path = _field(session, "path", "")
        self.project = json_safe({"path": str(path) if path else "", "name": Path(str(path)).name if path else ""})
        if not self.project_root and path:
            self.project_root = str(Path(str(path)).parent)
        with self.hold_sync():
            self.selection = []
            self.clicked = None
            self.surface = {}
            self.curves = []
            self.distances = {}
            self._push_checkpoints()
        self.form = self._form_for(None)

    def close(self) -> None:
        """Unsubscribe from the session and close the widget."""
        if self._unsubscribe is not None:
            try:
                self._unsubscribe()
            finally:
                self._unsubscribe = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        super().close()

    def _options(self) -> dict:
        opts = {k: list(v) for k, v in DEFAULT_OPTIONS.items()}
        try:
            from lossviz import training

            opts["optimizers"] = list(training.OPTIMIZERS)
        except Exception:
            pass
        try:
            from lossviz import zoo

            opts["models"] = list(zoo.list_models())
            opts["datasets"] = list(zoo.list_data())
        except Exception:
            pass
        return opts

    def _report(self, exc: BaseException) -> None:
        self.error = f"{exc}" if isinstance(exc, PayloadError) else f"{type(exc).__name__}: {exc}"

    def _run(self, fn: Callable[[], Any], what: str) -> Future | None:
        """Run a session call off the kernel's main thread (or inline); failures go to ``error``."""

        def task() -> Any:
            try:
                return fn()
            except Exception as exc:
                self.error = f"{what} failed: {exc}"
                return None

        if self._executor is None:
            task()
            return None
        return self._executor.submit(task)

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Block until background session calls queued so far (and pending refreshes) have finished."""
        if self._executor is not None:
            self._executor.submit(lambda: None).result(timeout)
        if self._throttle > 0:
            time.sleep(self._throttle + 0.05)

    # ------------------------------------------------------------------ session events (worker threads)
    def _on_session_event(self, event: Mapping[str, Any]) -> None:
        try:
            kind = event.get("type")
            if kind == "checkpoint":
                ck = event.get("checkpoint")
                if ck is not None and str(_field(ck, "status", "ok")) not in ("ok", ""):
                    self.error = (f"checkpoint {_field(ck, 'id')} {_field(ck, 'status')}: its loss is not finite; "
                                  "lower the learning rate and train again")
                self._refresh_table()
            elif kind == "job":
                self._note_job(event.get("job"))
            elif kind == "surface":  # any surface the session computes is shown, also ones started from Python
                job = event.get("job")
                if job is not None:
                    self._surface_job = job
                self._surface_obj = event.get("surface")
                self._refresh_surface()
            elif kind == "error":
                self.error = str(event.get("message", "unknown error"))
        except Exception as exc:
            self._report(exc)

    def _note_job(self, job: Any) -> None:
        if job is None:
            return
        jid = _field(job, "id")
        self._jobs[jid] = job
        state = _field(job, "state")
        if state == "failed":
            self.error = f"{_field(job, 'kind')} job {jid} failed: {_field(job, 'error') or 'unknown error'}"
        if _field(job, "kind") == "surface" and state in ("done", "failed", "cancelled"):
            if self._surface_job is None or _field(self._surface_job, "id") == jid:
                self._surface_job = job
                result = _field(job, "result")
                if result is not None and state == "done":
                    self._surface_obj = result
                self._refresh_surface()
        self._refresh_jobs()

    def _push_jobs(self) -> None:
        jobs = sorted(self._jobs.values(), key=lambda j: _field(j, "id"))[-MAX_JOBS_SHOWN:]
        self._jobs = {_field(j, "id"): j for j in jobs}
        self.jobs = [job_info(j) for j in jobs]

    def _push_checkpoints(self) -> None:
        cks = list(self._session.checkpoints())
        table = checkpoint_table(cks)
        with self._lock:
            self.checkpoints = table
        self._compute_projection(self.projection_method)

    def _compute_projection(self, method: str) -> None:
        if int(self.checkpoints.get("n", 0)) == 0:
            self.projection = {"method": method, "ids": np.zeros(0, np.float32), "coords": np.zeros((0, 2), np.float32), "meta": {}}
            return
        if method == "surface" and self._surface_obj is None:
            raise PayloadError("the 'surface' projection needs a surface: compute one with the Surface button first")
        kwargs = {"surface": self._surface_obj} if method == "surface" else {}
        proj = self._session.project(method=method, **kwargs)
        coords = np.asarray(_field(proj, "coords"), dtype=np.float64).reshape(-1, 2)
        ids = np.asarray(list(_field(proj, "ids")), dtype=np.float64)
        with self._lock:
            self.projection = {"method": method, "ids": ids.astype(np.float32), "coords": coords.astype(np.float32),
                               "meta": json_safe(_field(proj, "meta") or {})}

    def _push_surface(self) -> None:
        surf = self._surface_obj
        if surf is None:
            return
        values = _field(surf, "values") or {}
        if not values:
            return
        metric = self.surface_metric if self.surface_metric in values else next(iter(values))
        z = np.asarray(values[metric], dtype=np.float64)
        done = np.asarray(_field(surf, "done"), dtype=bool) if _field(surf, "done") is not None else np.isfinite(z)
        z = np.where(done & np.isfinite(z), z, np.nan)  # not computed, NaN or ±inf: a gap
        x = np.asarray(_field(surf, "x"), dtype=np.float64)
        y = _field(surf, "y")
        y = None if y is None else np.asarray(y, dtype=np.float64)
        meta = dict(_field(surf, "meta") or {})
        n_done, total = int(done.sum()), int(done.size)
        complete = n_done == total
        critical: list[dict] = []
        trajectory = None
        if complete:
            critical = self._critical_points(x, y, z)
            trajectory = self._surface_trajectory(surf, meta)
        payload = {
            "x": x, "y": y, "z": z, "metric": metric, "metrics": list(values.keys()),
            "progress": n_done / total if total else 1.0, "done": n_done, "total": total,
            # per point (uint8 on the wire): 1 computed (a NaN there is a gap: diverged), 0 not yet (the
            # preview fill may paint it); "done" above is the count
            "done_mask": done.astype(np.uint8),
            "center": meta.get("center"), "critical": critical, "trajectory": trajectory,
            "meta": json_safe({k: v for k, v in meta.items() if k not in ("trajectory", "adaptive")}),
            "job": _field(self._surface_job, "id"),
            "adaptive": adaptive_summary(meta, total),
        }
        with self._lock:
            self.surface = payload

    @staticmethod
    def _critical_points(x: np.ndarray, y: np.ndarray | None, z: np.ndarray) -> list[dict]:
        try:
            from lossviz.critical import critical_points
        except ImportError:
            return []
        out = []
        for p in critical_points(x, y, z):
            refined = math.isfinite(p.x_refined)
            out.append(json_safe({
                "kind": p.kind, "x": p.x_refined if refined else p.x,
                "y": (p.y_refined if refined else p.y) if y is not None else None,
                "value": p.value_refined if refined and math.isfinite(p.value_refined) else p.value,
            }))
        return out

    def _surface_trajectory(self, surf: Any, meta: Mapping[str, Any]) -> dict | None:
        traj = meta.get("trajectory")
        if isinstance(traj, Mapping) and traj.get("ids") is not None:
            ids, coords = traj["ids"], traj["coords"]
        else:
            if _field(surf, "y") is None:
                return None
            try:
                proj = self._session.project(method="surface", surface=surf)
            except Exception:
                return None
            ids, coords = _field(proj, "ids"), _field(proj, "coords")
        coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
        return {"ids": np.asarray(list(ids), dtype=np.float32), "coords": coords.astype(np.float32)}

    # ------------------------------------------------------------------ trait observers
    def _on_clicked(self, change: Mapping[str, Any]) -> None:
        try:
            self.form = self._form_for(change["new"])
        except Exception as exc:
            self.error = f"checkpoint {change['new']} cannot be opened: {exc}"

    def _form_for(self, ckpt_id: int | None) -> dict:
        defaults = dict(getattr(self._session, "defaults", None) or {})
        hp = {}
        if ckpt_id is not None:
            hp = dict(_field(self._session.checkpoint(ckpt_id), "hparams") or {})
        values = {k: hp.get(k, defaults.get(k)) for k in TRAIN_KEYS}
        values["schedule"] = schedule_text(values.get("schedule"))
        keep = {k: self.form.get(k, v) for k, v in FORM_EXTRAS.items()} if self.form else dict(FORM_EXTRAS)
        return json_safe({"checkpoint": ckpt_id, **values, **keep})

    def _on_projection_method(self, change: Mapping[str, Any]) -> None:
        method = change["new"]

        def go() -> None:
            self._compute_projection(method)

        self._run(go, f"the {method} projection")

    def _on_surface_metric(self, change: Mapping[str, Any]) -> None:
        self._refresh_surface()

    def _on_selection(self, change: Mapping[str, Any]) -> None:
        ids = list(change["new"])
        if 2 <= len(ids) <= AUTO_DISTANCES_MAX:
            self._run(lambda: self._compute_distances(ids), "distances")
        elif self.distances:
            self.distances = {}

    def _compute_distances(self, ids: list[int]) -> None:
        d = np.asarray(self._session.distances(ids), dtype=np.float64)
        if d.shape != (len(ids), len(ids)):
            raise ValueError(f"session.distances returned shape {d.shape} for {len(ids)} ids")
        self.distances = {"ids": np.asarray(ids, dtype=np.float32), "d": d.astype(np.float32)}

    # ------------------------------------------------------------------ front-end commands
    def _on_frontend_msg(self, widget: Any, content: Any, buffers: Sequence[Any]) -> None:
        try:
            if not isinstance(content, Mapping):
                raise PayloadError(f"a message must be an object with a 'type', got {type(content).__name__}")
            kind = content.get("type")
            handler = COMMANDS.get(kind) if isinstance(kind, str) else None
            if handler is None:
                raise PayloadError(f"message type {kind!r} is unknown: use one of {sorted(COMMANDS)}")
            self.error = ""  # a new action replaces the last error (failures of this one set it again)
            handler(self, content)
        except PayloadError as exc:
            self.error = str(exc)
        except Exception as exc:  # a session call failed: report in words, keep the kernel alive
            self.error = f"{content.get('type') if isinstance(content, Mapping) else 'message'} failed: {exc}"

    def handle(self, content: Mapping[str, Any]) -> None:
        """Act on a front-end command as if it came from the browser (scripts, tests)."""
        self._on_frontend_msg(self, content, [])

    def _track(self, job: Any) -> Any:
        if job is not None and _field(job, "id") is not None:
            self._note_job(job)
        return job

    def _cmd_train(self, p: Mapping[str, Any]) -> None:
        hp_in = p.get("hparams", {})
        if not isinstance(hp_in, Mapping):
            raise PayloadError(f"hparams must be an object, got {hp_in!r}")
        unknown = sorted(set(hp_in) - set(TRAIN_KEYS))
        if unknown:
            raise PayloadError(f"unknown hyperparameters {unknown}: use {list(TRAIN_KEYS)}")
        hp: dict[str, Any] = {}
        for key in ("lr", "momentum", "weight_decay"):
            if hp_in.get(key) is not None:
                hp[key] = _number(hp_in, key, float, minimum=0.0, exclusive=(key == "lr"))
        for key in ("batch_size",):
            if hp_in.get(key) is not None:
                hp[key] = _number(hp_in, key, int, minimum=1)
        if hp_in.get("seed") not in (None, ""):
            hp["seed"] = _number(hp_in, "seed", int, minimum=0)
        if hp_in.get("nesterov") is not None:
            if not isinstance(hp_in["nesterov"], bool):
                raise PayloadError(f"nesterov must be true or false, got {hp_in['nesterov']!r}")
            hp["nesterov"] = hp_in["nesterov"]
        for key in ("optimizer", "schedule"):
            if hp_in.get(key) not in (None, ""):
                hp[key] = _text(hp_in, key)
        epochs = _number(p, "epochs", int, minimum=1, default=1)
        start = _number(p, "from", int, allow_none=True)
        self._track(self._session.train(from_=start, epochs=epochs, **hp))
        self.message = f"training {epochs} epoch(s) from checkpoint {start}" if start is not None else f"training {epochs} epoch(s)"

    def _cmd_cancel(self, p: Mapping[str, Any]) -> None:
        jid = _number(p, "job", int, allow_none=True)
        jobs = list(getattr(self._session, "jobs", []) or []) + list(self._jobs.values())
        targets = [j for j in jobs if (jid is None or _field(j, "id") == jid) and _field(j, "state") in ("queued", "running")]
        if jid is not None and not targets:
            raise PayloadError(f"job {jid} is not running (nothing to cancel)")
        seen = set()
        for j in targets:
            if id(j) not in seen:
                seen.add(id(j))
                j.cancel()
        self.message = f"cancelling {len(seen)} job(s)"

    def _cmd_disturb(self, p: Mapping[str, Any]) -> None:
        start = _number(p, "from", int)
        magnitude = _number(p, "magnitude", float, minimum=0.0, exclusive=True)
        seed = _number(p, "seed", int, minimum=0, allow_none=True)
        self._run(lambda: self._session.disturb(start, magnitude, seed=seed), f"disturbing checkpoint {start}")
        self.message = f"disturbing checkpoint {start} by {magnitude:g}"

    def _cmd_interpolate(self, p: Mapping[str, Any]) -> None:
        if "a" in p or "b" in p:
            a, b = _number(p, "a", int), _number(p, "b", int)
        else:
            if len(self.selection) != 2:
                raise PayloadError(f"interpolation needs exactly two selected checkpoints, {len(self.selection)} are selected")
            a, b = self.selection
        n = _number(p, "n", int, minimum=2, maximum=1000, default=5)

        def go() -> None:
            made = list(self._session.interpolate(a, b, n))
            self._add_interpolation_curve(a, b, made)

        self._run(go, f"interpolating {a} -> {b}")
        self.message = f"interpolating {n} point(s) between {a} and {b}"

    def _add_interpolation_curve(self, a: int, b: int, made: Sequence[Any]) -> None:
        """A 1-D curve of every metric against t along the interpolation (t from each checkpoint's
        ``hparams["interpolate"]["t"]``; the session includes both ends)."""
        ts = []
        for k, c in enumerate(made):
            info = (_field(c, "hparams") or {}).get("interpolate") or {}
            t_val = info.get("t") if isinstance(info, Mapping) else None
            ts.append(float(t_val) if t_val is not None else k / max(1, len(made) - 1))
        names = metric_names(made)

        def value(c: Any, m: str) -> float:
            v = (_field(c, "metrics") or {}).get(m)
            return float(v) if v is not None else np.nan

        metrics = {m: np.array([value(c, m) for c in made], dtype=np.float64) for m in names}
        curve = {"name": f"{a} → {b}", "kind": "interpolation", "x": np.asarray(ts, dtype=np.float64), "metrics": metrics}
        self.curves = [*self.curves[-7:], curve]

    def _cmd_surface(self, p: Mapping[str, Any]) -> None:
        center = _number(p, "center", int)
        directions = _text(p, "directions", "random")
        if directions not in ("random", "pca"):
            raise PayloadError(f"directions {directions!r} are unknown: use 'random' or 'pca'")
        resolution = _number(p, "resolution", int, minimum=3, maximum=401, default=21)
        spec = surface_axis_spec(_text(p, "range", "-1:1"), resolution)
        adaptive = p.get("adaptive")
        if adaptive is not None and not isinstance(adaptive, bool):
            raise PayloadError(f"adaptive must be true or false, got {adaptive!r}")
        kwargs: dict[str, Any] = {"directions": directions, "x": spec, "y": spec, "wait": False}
        if adaptive:  # refine_surface's default options: a coarse lattice, then rounds where the surface bends
            kwargs["adaptive"] = True
        if directions == "pca":
            ids = _ids(p, "checkpoints") if "checkpoints" in p else list(self.selection)
            if len(ids) < 3:
                raise PayloadError(f"a PCA plane needs at least 3 selected checkpoints, {len(ids)} are selected")
            kwargs["checkpoints"] = ids
        if self._surface_job is not None and _field(self._surface_job, "state") in ("queued", "running"):
            self._surface_job.cancel()
        self._surface_obj = None
        self.surface = {}
        job = self._session.surface(center, **kwargs)
        self._surface_job = job
        self._track(job)
        result = _field(job, "result")
        if result is not None:
            self._surface_obj = result
            self._refresh_surface()
        what = "an adaptive" if adaptive else "a"
        self.message = f"computing {what} {directions} surface around checkpoint {center} ({spec})"

    def _cmd_project(self, p: Mapping[str, Any]) -> None:
        method = _text(p, "method")
        if method not in PROJECTIONS:
            raise PayloadError(f"projection {method!r} is unknown: use one of {PROJECTIONS}")
        if method == self.projection_method:
            self._run(lambda: self._compute_projection(method), f"the {method} projection")
        else:
            self.projection_method = method

    def _cmd_select_all(self, p: Mapping[str, Any]) -> None:
        ids = self.checkpoints.get("ids")
        self.selection = [] if ids is None else [int(round(v)) for v in np.asarray(ids)]

    def _cmd_select_none(self, p: Mapping[str, Any]) -> None:
        self.selection = []

    def _cmd_select(self, p: Mapping[str, Any]) -> None:
        self.selection = _ids(p, "ids")

    def _cmd_distances(self, p: Mapping[str, Any]) -> None:
        ids = _ids(p, "ids") if "ids" in p else list(self.selection)
        if not 2 <= len(ids) <= MAX_DISTANCES:
            raise PayloadError(f"distances need 2 to {MAX_DISTANCES} selected checkpoints, {len(ids)} are selected")
        self._run(lambda: self._compute_distances(ids), "distances")

    def _cmd_refresh(self, p: Mapping[str, Any]) -> None:
        self._push_checkpoints()

    def _cmd_clear_error(self, p: Mapping[str, Any]) -> None:
        self.error = ""

    def _resolve_project_path(self, raw: str) -> Path:
        path = Path(os.path.expanduser(raw))
        if not path.is_absolute():
            path = Path(self.project_root or ".") / path
        return path

    def _cmd_list_projects(self, p: Mapping[str, Any]) -> None:
        root = _text(p, "root", self.project_root or ".")
        if not Path(os.path.expanduser(root)).is_dir():
            raise PayloadError(f"project folder {root!r} does not exist: enter an existing folder")
        factory = self._factory()
        self.project_root = root
        self.projects = json_safe(list(factory.list_projects(os.path.expanduser(root))))

    def _factory(self) -> Any:
        if self._session_factory is not None:
            return self._session_factory
        from lossviz.session import Session

        return Session

    def _cmd_open_project(self, p: Mapping[str, Any]) -> None:
        path = self._resolve_project_path(_text(p, "path"))
        if not path.exists():
            raise PayloadError(f"project {str(path)!r} does not exist: pick one from the list or create it")
        factory = self._factory()

        def go() -> None:
            self._attach(factory(str(path)))
            self.message = f"opened {path}"

        self._run(go, f"opening {path}")

    def _cmd_create_project(self, p: Mapping[str, Any]) -> None:
        path = self._resolve_project_path(_text(p, "path"))
        if path.exists() and any(path.iterdir()):
            raise PayloadError(f"{str(path)!r} already exists: open it instead, or choose a new name")
        model, data = _text(p, "model"), _text(p, "data")
        hp_in = p.get("hparams")
        hp_in = {} if hp_in is None else hp_in  # [] or "" are not an object: refused below
        if not isinstance(hp_in, Mapping):
            raise PayloadError(f"hparams must be an object, got {hp_in!r}")
        unknown = sorted(set(hp_in) - set(TRAIN_KEYS))
        if unknown:
            raise PayloadError(f"unknown hyperparameters {unknown}: use {list(TRAIN_KEYS)}")
        hp = {k: v for k, v in hp_in.items() if v not in (None, "")}
        if "lr" in hp:
            hp["lr"] = _number(hp, "lr", float, minimum=0.0, exclusive=True)
        factory = self._factory()

        def go() -> None:
            self._attach(factory(str(path), model=model, data=data, hparams=hp or None))
            self.message = f"created {path} ({model} on {data})"

        self._run(go, f"creating {path}")

    def _cmd_export_surface(self, p: Mapping[str, Any]) -> None:
        surf = self._surface_obj
        if surf is None:
            raise PayloadError("there is no surface to export: compute one with the Surface button first")
        center = (_field(surf, "meta") or {}).get("center", "surface")
        default = Path(str(_field(self._session, "path", ".") or ".")) / "exports" / f"surface_{center}.h5"
        path = Path(os.path.expanduser(p["path"])) if p.get("path") else default

        def go() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            writer = getattr(self._session, "export_surface", None)
            if callable(writer):
                writer(surf, path)
            else:
                from lossviz.io.h5 import write_surface

                write_surface(path, surf)
            data = path.read_bytes()
            self.send({"type": "download", "filename": path.name, "mime": "application/x-hdf5"}, [data])
            self.message = f"surface written to {path} ({len(data)} bytes)"

        self._run(go, "exporting the surface")


COMMANDS: dict[str, Callable[[Explorer, Mapping[str, Any]], None]] = {
    "train": Explorer._cmd_train,
    "cancel": Explorer._cmd_cancel,
    "disturb": Explorer._cmd_disturb,
    "interpolate": Explorer._cmd_interpolate,
    "surface": Explorer._cmd_surface,
    "project": Explorer._cmd_project,
    "select_all": Explorer._cmd_select_all,
    "select_none": Explorer._cmd_select_none,
    "select": Explorer._cmd_select,
    "distances": Explorer._cmd_distances,
    "refresh": Explorer._cmd_refresh,
    "clear_error": Explorer._cmd_clear_error,
    "list_projects": Explorer._cmd_list_projects,
    "open_project": Explorer._cmd_open_project,
    "create_project": Explorer._cmd_create_project,
    "export_surface": Explorer._cmd_export_surface,
}
