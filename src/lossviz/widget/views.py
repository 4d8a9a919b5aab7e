"""View models: what the Explorer's traits hold, built from checkpoints, jobs, surfaces and projections.

Pure functions of their arguments (no session calls, no traits); arrays stay numpy arrays here and
become binary buffers in :mod:`lossviz.widget.serializers`. Checkpoints and jobs may be objects or
mappings with the same field names.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from lossviz.figures import MAX_CRITICAL_MARKERS, critical_markers, default_metric, is_loss_like, surface_axis_labels
from lossviz.jsonable import json_safe
from lossviz.widget.options import FORM_EXTRAS, TRAIN_KEYS

__all__ = [
    "KIND_NAMES",
    "METRIC_ORDER",
    "adaptive_summary",
    "checkpoint_table",
    "distances_view",
    "empty_projection",
    "field_of",
    "form_values",
    "id_ranges",
    "interpolation_curve",
    "job_info",
    "jobs_shown",
    "metric_names",
    "projection_view",
    "schedule_text",
    "stored_surface_entries",
    "stored_trajectory",
    "subtree_ids",
    "surface_view",
    "time_label",
    "trajectory_view",
    "visible_ids",
]

METRIC_ORDER = ("train_loss", "train_acc", "test_loss", "test_acc")
KIND_NAMES = ("init", "train", "disturb", "interpolate", "import")
ACTIVE_STATES = ("queued", "running")


def field_of(obj: Any, name: str, default: Any = None) -> Any:
    """``obj[name]`` of a mapping, ``obj.name`` of an object; ``default`` when absent."""
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


# ----------------------------------------------------------------------------------------- checkpoints
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


def metric_names(checkpoints: Iterable[Any]) -> list[str]:
    """Metric names over all checkpoints: the standard four first (when present), then the rest sorted."""
    names: set[str] = set()
    for c in checkpoints:
        names.update((field_of(c, "metrics") or {}).keys())
    return [m for m in METRIC_ORDER if m in names] + sorted(names - set(METRIC_ORDER))


def _metric(c: Any, name: str) -> float:
    """A checkpoint's metric as a float; NaN when missing or not a number."""
    v = (field_of(c, "metrics") or {}).get(name)
    try:
        return float(v) if v is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def time_label(checkpoints: Sequence[Any]) -> str:
    """What the checkpoints' ``epoch`` counts: ``"step"`` for a project logged by steps (every checkpoint
    has a step, at least one step > 0, and every epoch equals its step: ``Session.log(step=...)``),
    else ``"epoch"``."""
    steps = [field_of(c, "step") for c in checkpoints]
    if not steps or any(s is None for s in steps) or not any(float(s) > 0 for s in steps):
        return "epoch"
    same = all(float(field_of(c, "epoch", math.nan)) == float(s) for c, s in zip(checkpoints, steps, strict=True))
    return "step" if same else "epoch"


def checkpoint_table(checkpoints: Sequence[Any]) -> dict[str, Any]:
    """The ``checkpoints`` trait: columns as float32 arrays (parent NaN = none, kind as a code into
    ``kind_names``, missing metric NaN) plus small JSON lists (status, hparams), and ``time_label``
    (:func:`time_label`: what the epoch column counts)."""
    kinds = list(KIND_NAMES)
    for c in checkpoints:
        k = str(field_of(c, "kind", "train"))
        if k not in kinds:
            kinds.append(k)

    def column(values: Iterable[float]) -> np.ndarray:
        return np.array(list(values), dtype=np.float32).reshape(len(checkpoints))

    def parent(c: Any) -> float:
        p = field_of(c, "parent")
        return math.nan if p is None else float(p)

    return {
        "n": len(checkpoints),
        "ids": column(float(field_of(c, "id")) for c in checkpoints),
        "parents": column(parent(c) for c in checkpoints),
        "branches": column(float(field_of(c, "branch", 0)) for c in checkpoints),
        "epochs": column(float(field_of(c, "epoch", 0.0)) for c in checkpoints),
        "kinds": column(float(kinds.index(str(field_of(c, "kind", "train")))) for c in checkpoints),
        "kind_names": kinds,
        "status": [str(field_of(c, "status", "ok")) for c in checkpoints],
        "metrics": {m: column(_metric(c, m) for c in checkpoints) for m in metric_names(checkpoints)},
        "hparams": [json_safe(dict(field_of(c, "hparams") or {})) for c in checkpoints],
        "time_label": time_label(checkpoints),
    }


def form_values(checkpoint: int | None, hparams: Mapping[str, Any], defaults: Mapping[str, Any],
                previous: Mapping[str, Any]) -> dict[str, Any]:
    """The ``form`` trait for a clicked checkpoint: its hyperparameters (the project's defaults where it
    has none), the schedule as text, and the other fields as the user left them (first time: their
    first values)."""
    values = {k: hparams.get(k, defaults.get(k)) for k in TRAIN_KEYS}
    values["schedule"] = schedule_text(values.get("schedule"))
    extras = {k: previous.get(k, v) for k, v in FORM_EXTRAS.items()} if previous else dict(FORM_EXTRAS)
    return json_safe({"checkpoint": checkpoint, **values, **extras})


# ----------------------------------------------------------------------------------------- jobs
def job_info(job: Any) -> dict[str, Any]:
    """A job as a small JSON dict for the ``jobs`` trait."""
    return json_safe({
        "id": field_of(job, "id"),
        "kind": field_of(job, "kind", ""),
        "state": field_of(job, "state", ""),
        "progress": field_of(job, "progress", 0.0),
        "done": field_of(job, "done", 0),
        "total": field_of(job, "total", 0),
        "message": field_of(job, "message", "") or "",
        "error": field_of(job, "error"),
        "description": field_of(job, "description", "") or "",
    })


def jobs_shown(jobs: Iterable[Any], max_finished: int, hidden: Callable[[Any], bool] = lambda job: False) -> list[Any]:
    """The jobs the panel lists, by id: every queued or running one and the last ``max_finished`` others
    that are not ``hidden`` (e.g. view refreshes that ended well)."""
    by_id = sorted(jobs, key=lambda j: field_of(j, "id"))
    ended = [j for j in by_id if field_of(j, "state") not in ACTIVE_STATES and not hidden(j)]
    finished = ended[-max_finished:] if max_finished else []
    keep = {id(j) for j in finished}
    return [j for j in by_id if field_of(j, "state") in ACTIVE_STATES or id(j) in keep]


# ----------------------------------------------------------------------------------------- surfaces
def adaptive_summary(meta: Mapping[str, Any], total: int) -> dict[str, int] | None:
    """An adaptive surface's ``meta["adaptive"]`` as the small dict the front end shows
    (``{"n_evaluated", "total", "rounds"}``; the flat index list of evaluated points stays in the
    kernel), or None for a fully evaluated surface."""
    info = meta.get("adaptive")
    if not isinstance(info, Mapping) or info.get("method") != "refine":
        return None
    return {"n_evaluated": int(info["n_evaluated"]), "total": int(total), "rounds": int(info["rounds"])}


def trajectory_view(ids: Iterable[Any], coords: Any) -> dict[str, np.ndarray]:
    """Checkpoint ids and their ``(n, 2)`` plane coordinates as float32 arrays."""
    xy = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    return {"ids": np.asarray(list(ids), dtype=np.float32), "coords": xy.astype(np.float32)}


def stored_surface_entries(rows: Sequence[Mapping[str, Any]], limit: int) -> list[dict[str, Any]]:
    """The ``stored_surfaces`` trait: the session's stored surface rows (``Session.surfaces()``), newest
    first, at most ``limit``, each ``{"key", "label", "complete"}`` with a label such as
    ``"checkpoint 12 · pca · x -1:1:21, y -1:1:21"`` (``" · 40/441 points"`` when partial)."""
    out = []
    for row in sorted(rows, key=lambda r: float(r.get("created", 0.0)), reverse=True)[:limit]:
        spec, meta = row.get("spec") or {}, row.get("meta") or {}
        axes = f"x {spec.get('x')}" + (f", y {spec['y']}" if spec.get("y") else "")
        label = f"checkpoint {meta.get('center', spec.get('center'))} · {spec.get('directions', 'directions')} · {axes}"
        if not row.get("complete"):
            label += f" · {meta.get('n_done', 0)}/{meta.get('n_total', '?')} points"
        out.append({"key": str(row["key"]), "label": label, "complete": bool(row.get("complete"))})
    return out


def stored_trajectory(meta: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
    """The trajectory a surface's ``meta`` carries (``{"ids", "coords"}``), or None."""
    traj = meta.get("trajectory")
    if isinstance(traj, Mapping) and traj.get("ids") is not None:
        return trajectory_view(traj["ids"], traj["coords"])
    return None


def surface_view(surface: Any, metric: str, *, job: int | None = None,
                 trajectory: Mapping[str, np.ndarray] | None = None, critical: bool = True) -> dict[str, Any] | None:
    """The ``surface`` trait for a (possibly partial) Surface shown by ``metric`` (the first metric when it
    has no such one), or None when it has no values yet.

    ``z`` is NaN where a point is not computed, NaN or infinite (a gap); ``done_mask`` (uint8 on the wire)
    is 1 where a point is computed, so the preview fill can tell "not yet" from "diverged". Critical
    points and the trajectory are given only for a complete surface; critical points only when
    ``critical`` and the metric is loss-like (:func:`lossviz.figures.is_loss_like`), the
    :data:`~lossviz.figures.MAX_CRITICAL_MARKERS` most prominent. ``labels``: the axis titles
    (PCA: ``"PC1: 91.8 %"``).
    """
    values = field_of(surface, "values") or {}
    if not values:
        return None
    shown = default_metric(surface, metric if metric in values else None)
    z = np.asarray(values[shown], dtype=np.float64)
    done_field = field_of(surface, "done")
    done = np.asarray(done_field, dtype=bool) if done_field is not None else np.isfinite(z)
    z = np.where(done & np.isfinite(z), z, np.nan)
    x = np.asarray(field_of(surface, "x"), dtype=np.float64)
    y_field = field_of(surface, "y")
    y = None if y_field is None else np.asarray(y_field, dtype=np.float64)
    meta = dict(field_of(surface, "meta") or {})
    n_done, total = int(done.sum()), int(done.size)
    complete = n_done == total
    return {
        "x": x, "y": y, "z": z, "metric": shown, "metrics": list(values.keys()),
        "progress": n_done / total if total else 1.0, "done": n_done, "total": total,
        "done_mask": done.astype(np.uint8),
        "center": meta.get("center"),
        "critical": json_safe(critical_markers(x, y, z, MAX_CRITICAL_MARKERS))
        if complete and critical and is_loss_like(shown) else [],
        "labels": list(surface_axis_labels(surface)),
        "trajectory": trajectory if complete else None,
        "meta": json_safe({k: v for k, v in meta.items() if k not in ("trajectory", "adaptive")}),
        "job": job,
        "adaptive": adaptive_summary(meta, total),
    }


def interpolation_curve(a: int, b: int, made: Sequence[Any]) -> dict[str, Any]:
    """A 1-D curve of every metric against t along an interpolation from ``a`` to ``b`` (t from each
    checkpoint's ``hparams["interpolate"]["t"]``, else evenly spaced; both ends included)."""
    ts = []
    for k, c in enumerate(made):
        info = (field_of(c, "hparams") or {}).get("interpolate") or {}
        t = info.get("t") if isinstance(info, Mapping) else None
        ts.append(float(t) if t is not None else k / max(1, len(made) - 1))
    metrics = {m: np.array([_metric(c, m) for c in made], dtype=np.float64) for m in metric_names(made)}
    return {"name": f"{a} → {b}", "kind": "interpolation", "x": np.asarray(ts, dtype=np.float64), "metrics": metrics}


# ----------------------------------------------------------------------------------------- projections
def empty_projection(method: str) -> dict[str, Any]:
    """The ``projection`` trait of a project without checkpoints."""
    return {"method": method, "ids": np.zeros(0, np.float32), "coords": np.zeros((0, 2), np.float32), "meta": {}}


def projection_view(method: str, projection: Any, *, total: int | None = None) -> dict[str, Any]:
    """The ``projection`` trait: ids and ``(n, 2)`` coordinates as float32, the method's meta, the
    ``outliers`` left out (ids, from ``meta["outliers"]``), ``count`` (checkpoints projected plus
    outliers left out) and ``total`` (checkpoints in the table when it was asked for), and for PCA
    the axis labels with their explained variance (``labels``, e.g. ``["PC1: 91.8 %", "PC2: 4.1 %"]``)."""
    from lossviz.figures import axis_labels

    meta = dict(field_of(projection, "meta") or {})
    outliers = [int(i) for i in meta.pop("outliers", [])]
    ids = list(field_of(projection, "ids"))
    count = len(ids) + (0 if method == "layout" else len(outliers))
    return {"method": method, **trajectory_view(ids, field_of(projection, "coords")),
            "meta": json_safe(meta), "outliers": outliers, "count": count,
            "total": count if total is None else int(total),
            "labels": list(axis_labels(method, meta.get("explained_variance_ratio")))}


def subtree_ids(table: Mapping[str, Any], *, branch: int) -> list[int]:
    """The checkpoints of ``branch`` and every checkpoint that grew from them (by parent links)."""
    ids = [round(v) for v in np.asarray(table.get("ids", np.zeros(0)), dtype=np.float64).tolist()]
    parents = np.asarray(table.get("parents", np.zeros(len(ids))), dtype=np.float64).tolist()
    branches = [round(v) for v in np.asarray(table.get("branches", np.zeros(len(ids))), dtype=np.float64).tolist()]
    chosen = {i for i, b in zip(ids, branches, strict=True) if b == int(branch)}
    grew = True
    while grew:
        more = {i for i, p in zip(ids, parents, strict=True) if not math.isnan(p) and round(p) in chosen} - chosen
        chosen |= more
        grew = bool(more)
    return sorted(chosen)


def id_ranges(ids: Iterable[int]) -> str:
    """Ids in words, runs collapsed: ``[1, 2, 3, 7]`` -> ``"1-3, 7"``."""
    out: list[str] = []
    for i in sorted({int(v) for v in ids}):
        if out and out[-1].split("-")[-1] == str(i - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{i}"
        else:
            out.append(str(i))
    return ", ".join(out)


def visible_ids(table: Mapping[str, Any], hidden: Iterable[int], hidden_branches: Iterable[int]) -> list[int]:
    """The ids of a checkpoint table's checkpoints that are not hidden, nor on a hidden branch."""
    ids = np.asarray(table.get("ids", np.zeros(0)), dtype=np.float64)
    branches = np.asarray(table.get("branches", np.zeros(len(ids))), dtype=np.float64)
    gone, gone_b = {int(i) for i in hidden}, {int(b) for b in hidden_branches}
    return [round(i) for i, b in zip(ids.tolist(), branches.tolist(), strict=True)
            if round(i) not in gone and round(b) not in gone_b]


def distances_view(ids: Sequence[int], d: Any) -> dict[str, np.ndarray]:
    """The ``distances`` trait: the ids and their ``(n, n)`` distance matrix, as float32."""
    m = np.asarray(d, dtype=np.float64)
    if m.shape != (len(ids), len(ids)):
        raise ValueError(f"session.distances returned shape {m.shape} for {len(ids)} ids")
    return {"ids": np.asarray(ids, dtype=np.float32), "d": m.astype(np.float32)}
