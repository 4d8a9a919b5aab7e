"""Static figures: the Explorer's views and the CLI's plot, for scripts and export (:func:`write_figure`).

The same conventions as the widget: surfaces are ``(ny, nx)`` with ``z[i, j] = f(x[j], y[i])``; NaN cells
are gaps; the trajectory is drawn from a :class:`~lossviz.session.Projection`-like object (``ids``,
``coords``) or ``surface.meta["trajectory"]``. The rules the views share live here once:
:func:`default_metric` (the metric shown for a surface), :func:`critical_markers` (critical points as
markers) and :func:`axis_text` (a coordinate axis in words). Plotly is imported when a figure is made.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lossviz.grid import Axis

if TYPE_CHECKING:
    import plotly.graph_objects as go

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#bcbd22", "#7f7f7f", "#393b79", "#e7969c", "#637939", "#ad494a", "#3182bd", "#f28e2b")
CRITICAL_STYLE = {
    "minimum": ("triangle-down", "#00a651"),
    "maximum": ("triangle-up", "#d62728"),
    "saddle": ("x", "#ff7f0e"),
}
CONTOUR_MODES = ("filled", "lines", "heatmap")


def branch_color(branch: int) -> str:
    """The colour of a branch (the same palette as the widget)."""
    return PALETTE[int(branch) % len(PALETTE)]


def _field(obj: Any, name: str, default: Any = None) -> Any:
    return obj.get(name, default) if isinstance(obj, Mapping) else getattr(obj, name, default)


# ---------------------------------------------------------------------------------------- shared rules
DEFAULT_METRICS = ("train_loss", "test_loss", "loss")  # shown first when present, in this order


def default_metric(surface: Any, wanted: str | None = None) -> str:
    """The metric shown for ``surface`` (a Surface or a mapping with ``values``): ``wanted`` if given
    (it must be one of the surface's), else the first of :data:`DEFAULT_METRICS` present, else the
    surface's first metric."""
    values = _field(surface, "values") or {}
    if not values:
        raise ValueError("the surface has no metric values: compute it first")
    if wanted is not None:
        if wanted not in values:
            raise ValueError(f"metric {wanted!r} is not in the surface; it has {', '.join(values)}")
        return wanted
    return next((m for m in DEFAULT_METRICS if m in values), next(iter(values)))


def axis_text(values: Any) -> str:
    """A coordinate axis as its grid spec ``"min:max:num"`` (e.g. ``"-1:1:51"``, :attr:`Axis.spec`)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    return Axis(float(v[0]), float(v[-1]), len(v)).spec


LOSS_LIKE_WORDS = ("loss", "error", "nll", "perplexity")
"""A metric whose name contains one of these (``train_loss``, ``test_error``) is loss-like: lower is
better and its critical points mean something; accuracies and the like get none."""
MAX_CRITICAL_MARKERS = 12
"""The views show at most this many critical points, the most prominent first."""
PROMINENCE_RADIUS = 2
"""A critical point's prominence is measured against the grid points within this many steps."""


def is_loss_like(metric: str) -> bool:
    """Whether ``metric`` is loss-like (:data:`LOSS_LIKE_WORDS`): critical points are shown for it."""
    name = str(metric).lower()
    return any(w in name for w in LOSS_LIKE_WORDS)


def prominence(z: np.ndarray, i: int, j: int | None) -> float:
    """How much a grid point stands out: ``|z_p − mean(z_q)|`` over the finite points ``q ≠ p`` within
    :data:`PROMINENCE_RADIUS` grid steps (Chebyshev distance); 0 when it has no finite neighbour."""
    r = PROMINENCE_RADIUS
    if z.ndim == 1:
        k = i if j is None else j
        ring = np.delete(z[max(0, k - r): k + r + 1], min(k, r))
        centre = z[k]
    else:
        jj = int(j or 0)
        block = z[max(0, i - r): i + r + 1, max(0, jj - r): jj + r + 1]
        ring = np.delete(block.ravel(), min(i, r) * block.shape[1] + min(jj, r))
        centre = z[i, jj]
    ring = ring[np.isfinite(ring)]
    return float(abs(centre - ring.mean())) if ring.size and np.isfinite(centre) else 0.0


def critical_markers(x: Any, y: Any, z: Any, limit: int | None = None) -> list[dict[str, Any]]:
    """Critical points of the grid ``z[i, j] = f(x[j], y[i])`` (``y`` None: a line) as markers
    ``{"kind", "x", "y", "value", "prominence"}`` (JSON-able floats): the refined position and value
    where the quadratic fit succeeded, else the grid node's. Non-finite points are left out of the
    search. ``limit``: the ``limit`` most prominent (:func:`prominence`), in that order."""
    from lossviz.critical import critical_points

    zz = np.asarray(z, dtype=np.float64)
    out: list[dict[str, Any]] = []
    for p in critical_points(x, y, z):
        refined = math.isfinite(p.x_refined)
        value = p.value_refined if refined and math.isfinite(p.value_refined) else p.value
        py = (p.y_refined if refined else p.y) if y is not None else None
        out.append({"kind": p.kind, "x": float(p.x_refined if refined else p.x),
                    "y": None if py is None else float(py), "value": float(value),
                    "prominence": prominence(zz, p.i, p.j if zz.ndim == 2 else None)})
    if limit is not None:
        out = sorted(out, key=lambda m: -float(m["prominence"]))[: max(0, int(limit))]
    return out


def _surface_values(surface: Any, metric: str | None) -> tuple[str, np.ndarray]:
    metric = default_metric(surface, metric)
    z = np.asarray(_field(surface, "values")[metric], dtype=np.float64)
    done = _field(surface, "done")
    if done is not None:
        z = np.where(np.asarray(done, bool), z, np.nan)
    return metric, np.where(np.isfinite(z), z, np.nan)  # NaN and ±inf (diverged points): gaps


def _color_limits(z: np.ndarray, log: bool, vmin: float | None, vmax: float | None) -> tuple[np.ndarray, float, float]:
    shown = np.where(z > 0, np.log10(np.where(z > 0, z, 1.0)), np.nan) if log else z
    finite = shown[np.isfinite(shown)]
    tr = (lambda v: math.log10(v) if v > 0 else float("nan")) if log else float
    lo = tr(vmin) if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = tr(vmax) if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    if not math.isfinite(lo):
        lo = float(finite.min()) if finite.size else 0.0
    if not math.isfinite(hi):
        hi = float(finite.max()) if finite.size else 1.0
    return shown, min(lo, hi), max(lo, hi)


def _trajectory_xy(surface: Any, trajectory: Any) -> tuple[list[int], np.ndarray] | None:
    if trajectory is None:
        trajectory = (_field(surface, "meta") or {}).get("trajectory")
    if trajectory is None:
        return None
    ids = list(_field(trajectory, "ids"))
    coords = np.asarray(_field(trajectory, "coords"), dtype=np.float64).reshape(-1, 2)
    order = np.argsort(ids, kind="stable")
    return [ids[k] for k in order], coords[order]


def contour_figure(surface: Any, metric: str | None = None, *, mode: str = "filled", log: bool = False,
                   vmin: float | None = None, vmax: float | None = None, levels: int = 20,
                   trajectory: Any = None, critical: bool | Sequence[Any] = True) -> go.Figure:
    """2-D contour (``mode`` "filled" / "lines" / "heatmap") of ``surface``'s ``metric``, with the trajectory
    (``trajectory`` or ``surface.meta["trajectory"]``), the centre (0, 0) and critical points."""
    import plotly.graph_objects as go

    if mode not in CONTOUR_MODES:
        raise ValueError(f"mode {mode!r} is unknown: use one of {CONTOUR_MODES}")
    if _field(surface, "y") is None:
        raise ValueError("contour_figure needs a 2-D surface (y is None): use line_figure for 1-D surfaces")
    if int(levels) < 2:
        raise ValueError(f"levels must be at least 2, got {levels}")
    metric, z = _surface_values(surface, metric)
    x, y = np.asarray(_field(surface, "x"), float), np.asarray(_field(surface, "y"), float)
    shown, lo, hi = _color_limits(z, log, vmin, vmax)
    title = f"log10 {metric}" if log else metric
    common = dict(x=x, y=y, z=shown, zmin=lo, zmax=hi, zauto=False, colorscale="Viridis", name=metric,
                  colorbar=dict(title=dict(text=title)))
    if mode == "heatmap":
        trace = go.Heatmap(**common)
    else:
        size = (hi - lo) / (int(levels) - 1) if hi > lo else 1.0
        trace = go.Contour(**common, autocontour=False, contours=dict(start=lo, end=hi, size=size,
                                                                       coloring="lines" if mode == "lines" else "fill"))
    fig = go.Figure(trace)
    traj = _trajectory_xy(surface, trajectory)
    if traj is not None:
        ids, xy = traj
        fig.add_trace(go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="lines+markers", customdata=ids, name="trajectory",
                                 line=dict(color="#222"), marker=dict(size=5, color="#222"),
                                 hovertemplate="checkpoint %{customdata}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[0], y=[0], mode="markers", name="centre",
                             marker=dict(symbol="star", size=14, color="#e31a1c")))
    if critical is not False:
        points = critical if not isinstance(critical, bool) else (
            critical_markers(x, y, z, MAX_CRITICAL_MARKERS) if is_loss_like(metric) else [])
        for kind, (symbol, color) in CRITICAL_STYLE.items():
            pts = [p for p in points if _field(p, "kind") == kind]
            if pts:
                fig.add_trace(go.Scatter(x=[_field(p, "x") for p in pts], y=[_field(p, "y") for p in pts],
                                         mode="markers",
                                         name=kind, marker=dict(symbol=symbol, size=10, color=color)))
    xt, yt = surface_axis_labels(surface)
    fig.update_layout(xaxis_title=xt, yaxis_title=yt, title=f"{metric} around checkpoint "
                      f"{(_field(surface, 'meta') or {}).get('center', '?')}", showlegend=False)
    return fig


def bilinear(x: np.ndarray, y: np.ndarray, z: np.ndarray, px: float, py: float) -> float:
    """Bilinear interpolation of the grid ``z[i, j] = f(x[j], y[i])`` at (px, py); NaN outside."""
    if not (x[0] <= px <= x[-1] and y[0] <= py <= y[-1]):
        return float("nan")
    j = int(np.clip(np.searchsorted(x, px, side="right") - 1, 0, len(x) - 2)) if len(x) > 1 else 0
    i = int(np.clip(np.searchsorted(y, py, side="right") - 1, 0, len(y) - 2)) if len(y) > 1 else 0
    j1, i1 = min(j + 1, len(x) - 1), min(i + 1, len(y) - 1)
    tx = (px - x[j]) / (x[j1] - x[j]) if j1 > j else 0.0
    ty = (py - y[i]) / (y[i1] - y[i]) if i1 > i else 0.0
    return float((1 - ty) * ((1 - tx) * z[i, j] + tx * z[i, j1]) + ty * ((1 - tx) * z[i1, j] + tx * z[i1, j1]))


def surface3d_figure(
    surface: Any, metric: str | None = None, *, log: bool = False, trajectory: Any = None
) -> go.Figure:
    """3-D surface with contour lines projected on the floor and the trajectory lifted onto the surface."""
    import plotly.graph_objects as go

    if _field(surface, "y") is None:
        raise ValueError("surface3d_figure needs a 2-D surface (y is None): use line_figure for 1-D surfaces")
    metric, z = _surface_values(surface, metric)
    x, y = np.asarray(_field(surface, "x"), float), np.asarray(_field(surface, "y"), float)
    shown, lo, hi = _color_limits(z, log, None, None)
    fig = go.Figure(go.Surface(x=x, y=y, z=shown, cmin=lo, cmax=hi, colorscale="Viridis", showscale=False, name=metric,
                               contours=dict(z=dict(show=True, usecolormap=True, project=dict(z=True)))))
    traj = _trajectory_xy(surface, trajectory)
    if traj is not None:
        ids, xy = traj
        lifted = [bilinear(x, y, shown, a, b) for a, b in xy]
        fig.add_trace(go.Scatter3d(x=xy[:, 0], y=xy[:, 1], z=lifted, mode="lines+markers", customdata=ids,
                                   name="trajectory", line=dict(color="#222", width=4),
                                   marker=dict(size=3, color="#222")))
    xt, yt = surface_axis_labels(surface)
    fig.update_layout(scene=dict(xaxis_title=xt, yaxis_title=yt, zaxis_title=f"log10 {metric}" if log else metric),
                      title=f"3-D {metric}", showlegend=False)
    return fig


def line_figure(surface: Any = None, metric: str | None = None, *, curves: Iterable[Any] = ()) -> go.Figure:
    """1-D view: a 1-D surface (``y is None``) and/or interpolation curves (``{"name", "x", "metrics"}``)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    if surface is not None:
        if _field(surface, "y") is not None:
            raise ValueError("line_figure draws 1-D surfaces: use contour_figure for 2-D ones")
        name, z = _surface_values(surface, metric)
        metric = name
        fig.add_trace(go.Scatter(x=np.asarray(_field(surface, "x"), float), y=z, mode="lines",
                                 name=f"{name} (1-D surface)"))
    for c in curves:
        ms = _field(c, "metrics") or {}
        m = metric if metric in ms else next(iter(ms), None)
        if m is not None:
            fig.add_trace(go.Scatter(x=np.asarray(_field(c, "x"), float), y=np.asarray(ms[m], float),
                                     mode="lines+markers",
                                     name=str(_field(c, "name", "curve"))))
    fig.update_layout(xaxis_title="α / step", yaxis_title=metric or "value", title="1-D: lines and interpolations")
    return fig


def trajectory_figure(checkpoints: Sequence[Any], projection: Any, *, color_by: str = "branch",
                      selection: Iterable[int] = ()) -> go.Figure:
    """Checkpoints at their projected coordinates, lines from each branch's first point to its parent,
    coloured by branch (or by a metric name); selected ids ringed."""
    import plotly.graph_objects as go

    by_id = {int(_field(c, "id")): c for c in checkpoints}
    ids = [int(i) for i in _field(projection, "ids")]
    coords = np.asarray(_field(projection, "coords"), dtype=np.float64).reshape(-1, 2)
    pos = {i: coords[k] for k, i in enumerate(ids) if i in by_id}
    fig = go.Figure()
    branches: dict[int, list[int]] = {}
    for i in pos:
        branches.setdefault(int(_field(by_id[i], "branch", 0)), []).append(i)
    for b, members in sorted(branches.items()):
        members.sort(key=lambda i: (float(_field(by_id[i], "epoch", 0.0)), i))
        chain = members[:]
        parent = _field(by_id[members[0]], "parent")
        if parent is not None and int(parent) in pos:
            chain.insert(0, int(parent))
        xy = np.array([pos[i] for i in chain])
        fig.add_trace(go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="lines", line=dict(color=branch_color(b)),
                                 hoverinfo="skip",
                                 name=f"branch {b}"))
    order = list(pos)
    xy = np.array([pos[i] for i in order]) if order else np.zeros((0, 2))
    if color_by == "branch":
        marker = dict(size=8, color=[branch_color(_field(by_id[i], "branch", 0)) for i in order])
    else:
        vals = [(_field(by_id[i], "metrics") or {}).get(color_by, np.nan) for i in order]
        marker = dict(size=8, color=vals, colorscale="Viridis", showscale=True,
                      colorbar=dict(title=dict(text=color_by)))
    text = [f"checkpoint {i} · {_field(by_id[i], 'kind')} · epoch {_field(by_id[i], 'epoch')}" for i in order]
    fig.add_trace(go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="markers", marker=marker, customdata=order, text=text,
                             hoverinfo="text", name="checkpoints"))
    selected = {int(s) for s in selection}
    sel = [i for i in order if i in selected]
    if sel:
        sxy = np.array([pos[i] for i in sel])
        fig.add_trace(go.Scatter(x=sxy[:, 0], y=sxy[:, 1], mode="markers", name="selected",
                                 marker=dict(size=12, color="rgba(0,0,0,0)", line=dict(width=2, color="#111"))))
    fig.update_layout(title=f"trajectory · {_field(projection, 'method', '')}", showlegend=False)
    return fig


def metrics_figure(checkpoints: Sequence[Any], *, selection: Iterable[int] = ()) -> go.Figure:
    """Train (solid) and test (dotted) loss and accuracy against epoch, one line per branch."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy (%)"))
    sel = {int(s) for s in selection}
    branches: dict[int, list[Any]] = {}
    for c in checkpoints:
        branches.setdefault(int(_field(c, "branch", 0)), []).append(c)
    for col, suffix in ((1, "loss"), (2, "acc")):
        for split, dash in (("train", "solid"), ("test", "dot")):
            m = f"{split}_{suffix}"
            for b, cs in sorted(branches.items()):
                cs = sorted(cs, key=lambda c: float(_field(c, "epoch", 0.0)))
                ys = [(_field(c, "metrics") or {}).get(m) for c in cs]
                if all(v is None for v in ys):
                    continue
                xs = [float(_field(c, "epoch", 0.0)) for c in cs]
                ys = [np.nan if v is None else float(v) for v in ys]
                fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=f"{m} · branch {b}",
                                         line=dict(color=branch_color(b), dash=dash)), row=1, col=col)
                pick = [k for k, c in enumerate(cs) if int(_field(c, "id")) in sel]
                if pick:
                    ring = dict(size=8, color="rgba(0,0,0,0)", line=dict(width=2, color="#111"))
                    fig.add_trace(go.Scatter(x=[xs[k] for k in pick], y=[ys[k] for k in pick], mode="markers",
                                             name="selected", marker=ring),
                                  row=1, col=col)
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(showlegend=False, title="metrics (solid train, dotted test)")
    return fig


# ---------------------------------------------------------------------------------------- the CLI's plot
def surface_figure(surface: Any, metric: str | None = None, title: str | None = None) -> go.Figure:
    """One metric of a surface file: 1-D the line (:func:`line_figure`, accuracy on a second axis when
    present), 2-D the contour (:func:`contour_figure`) beside the 3-D surface (:func:`surface3d_figure`)."""
    from plotly.subplots import make_subplots

    metric = default_metric(surface, metric)
    title = title or metric
    if _field(surface, "y") is None:
        acc = metric.replace("_loss", "_acc")
        has_acc = acc != metric and acc in _field(surface, "values")
        fig = make_subplots(specs=[[{"secondary_y": has_acc}]])
        for trace in line_figure(surface, metric).data:
            fig.add_trace(trace.update(name=metric), secondary_y=False)
        if has_acc:
            for trace in line_figure(surface, acc).data:
                fig.add_trace(trace.update(name=acc, line={"dash": "dash"}), secondary_y=True)
            fig.update_yaxes(title_text=acc, secondary_y=True)
        fig.update_xaxes(title_text="x")
        fig.update_yaxes(title_text=metric, secondary_y=False)
        fig.update_layout(title=title, width=800, height=500, showlegend=True)
        return fig
    fig = make_subplots(rows=1, cols=2, specs=[[{"type": "xy"}, {"type": "scene"}]],
                        subplot_titles=(f"{metric}: contour", f"{metric}: surface"))
    for trace in contour_figure(surface, metric).data:
        if trace.type == "contour":
            trace.update(colorbar={"x": 0.45, "len": 0.9})
        fig.add_trace(trace, row=1, col=1)
    for trace in surface3d_figure(surface, metric).data:
        fig.add_trace(trace, row=1, col=2)
    xt, yt = surface_axis_labels(surface)
    fig.update_xaxes(title_text=xt, row=1, col=1)
    fig.update_yaxes(title_text=yt, row=1, col=1)
    fig.update_layout(title=title, width=1200, height=560, showlegend=False,
                      scene={"xaxis_title": xt, "yaxis_title": yt, "zaxis_title": metric})
    return fig


PLOT_SUFFIXES = (".png", ".html", ".htm")


def write_figure(fig: go.Figure, path: str | os.PathLike) -> tuple[Path, str | None]:
    """Write ``fig`` atomically as PNG (``.png``, needs kaleido) or HTML (``.html``, self-contained).

    Returns the path written and a note: a PNG request without a working kaleido writes HTML next to
    it instead and says so.
    """
    from lossviz.files import atomic_path

    path = Path(path)
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise ValueError(f"plot file {str(path)!r}: use a .html or .png name")
    note = None
    if path.suffix.lower() == ".png":
        if importlib.util.find_spec("kaleido") is None:
            note = "kaleido is not installed (pip install kaleido), so the plot was written as HTML"
        else:
            try:
                with atomic_path(path) as tmp:
                    fig.write_image(tmp, format="png")
                return path, None
            except Exception as e:  # noqa: BLE001 - kaleido fails in its own ways (no browser, ...): fall back to HTML
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                note = f"PNG export failed ({first}), so the plot was written as HTML"
        path = path.with_suffix(".html")
    with atomic_path(path) as tmp:
        fig.write_html(tmp, include_plotlyjs=True, full_html=True)
    return path, note


def axis_labels(method: str, explained_variance_ratio: Sequence[float] | None = None) -> tuple[str, str]:
    """The two axes' titles of a projection or a surface's plane: ``("PC1: 91.8 %", "PC2: 4.1 %")``
    when explained variance ratios are known (PCA), else by ``method`` (``"epoch"``/``"branch"`` for the
    layout, ``"t-SNE 1"`` ..., ``"direction 1"`` ...)."""
    ratios = [float(r) for r in (explained_variance_ratio or [])]
    if ratios:
        return tuple(f"PC{k + 1}: {100 * ratios[k]:.1f} %" if k < len(ratios) else f"PC{k + 1}"
                     for k in range(2))  # type: ignore[return-value]
    if method == "layout":
        return ("epoch", "branch")
    if method == "tsne":
        return ("t-SNE 1", "t-SNE 2")
    return ("direction 1", "direction 2")


def surface_axis_labels(surface: Any) -> tuple[str, str]:
    """The axis titles of a surface: its PCA directions' explained variance when it has them
    (``meta["explained_variance_ratio"]``), else ``"direction 1"``, ``"direction 2"``."""
    meta = _field(surface, "meta") or {}
    return axis_labels("surface", meta.get("explained_variance_ratio"))
