"""Adaptive refinement: the surface's picture from a fraction of its grid points.

A uniform grid costs one full forward pass per point. :func:`refine_surface` evaluates a coarse
lattice first, then, round after round, the grid points where an interpolant of the evaluated ones
is least trustworthy, and fills the rest by interpolation:

* the interpolant is C¹ piecewise cubic (Clough–Tocher on the Delaunay triangulation of the
  evaluated points; monotone cubic ``pchip`` in 1D) of ``log(loss)`` (so errors are relative);
* its error at a point not evaluated is estimated as ``c · |cubic − linear|``, the distance to the
  piecewise linear interpolant (∝ h²·|f''|: large where the surface has structure), with ``c``
  calibrated on the points just evaluated (the 90th percentile of actual error / indicator, the
  prediction made before evaluating them);
* every round evaluates the ``batch`` points of largest estimated error, plus the neighbourhood
  of the current minimum and the grid points nearest a given trajectory, until no estimate
  exceeds ``rtol`` or ``budget`` (a fraction of the grid) is spent.

The result is a :class:`~lossviz.landscape.Surface` (every point filled, ``done`` everywhere) whose
``errors[name]`` holds each point's estimated error (0 where evaluated) and
``meta["adaptive"]`` the points evaluated (``evaluated``, a flat index list), rounds and cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lossviz.grid import SurfaceGrid
from lossviz.landscape import Surface, compute_surface

__all__ = ["check_refine_options", "coarse_mask", "first_lattice_step", "interpolants", "refine_surface"]


def coarse_mask(shape: tuple[int, ...], step: int) -> np.ndarray:
    """Boolean mask of a lattice every ``step`` points along each axis, first and last included."""
    if step < 1:
        raise ValueError(f"step must be a positive integer, got {step}")
    axes = []
    for n in shape:
        idx = np.unique(np.r_[np.arange(0, n, step), n - 1])
        ax = np.zeros(n, dtype=bool)
        ax[idx] = True
        axes.append(ax)
    mask = axes[0]
    for ax in axes[1:]:
        mask = mask[..., None] & ax
    return mask


def check_refine_options(rtol: float, budget: float, batch: float) -> None:
    """Raise ``ValueError`` naming the first of :func:`refine_surface`'s ``rtol``, ``budget``,
    ``batch`` out of range (NaN included), so that callers can check before any work."""
    if not rtol > 0:
        raise ValueError(f"rtol must be a positive relative error such as 0.003, got {rtol}")
    for name, value in (("budget", budget), ("batch", batch)):
        if not 0 < value <= 1:
            raise ValueError(f"{name} is a fraction of the grid in (0, 1] such as 0.2, got {value}")


def first_lattice_step(shape: tuple[int, ...], coarse_step: int | None = None) -> int:
    """Spacing (grid points) of refinement's first lattice: ``coarse_step``, or about 13 points
    along the longest axis."""
    return int(coarse_step or max(1, round((max(shape) - 1) / 12)))


def _unit_coords(shape: tuple[int, ...]) -> np.ndarray:
    """Grid points as (N, ndim) coordinates in [0, 1] (column index first in 2D), flat order."""
    if len(shape) == 1:
        return (np.arange(shape[0]) / max(1, shape[0] - 1))[:, None]
    ny, nx = shape
    cols, rows = np.meshgrid(np.arange(nx) / max(1, nx - 1), np.arange(ny) / max(1, ny - 1))
    return np.stack([cols.ravel(), rows.ravel()], axis=1)


def interpolants(shape: tuple[int, ...], known: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cubic, linear) interpolants over the whole grid of the finite ``values`` at ``known`` points.

    2D: Clough–Tocher and piecewise linear on one Delaunay triangulation; 1D: pchip and linear.
    ``known`` must include the grid's corners (ends) so that the hull covers the grid.
    """
    from scipy.interpolate import CloughTocher2DInterpolator, LinearNDInterpolator, PchipInterpolator
    from scipy.spatial import Delaunay

    flat_known = np.asarray(known, dtype=bool).ravel() & np.isfinite(np.asarray(values).ravel())
    coords = _unit_coords(shape)
    pts, vals = coords[flat_known], np.asarray(values, dtype=np.float64).ravel()[flat_known]
    if len(shape) == 1:
        x = pts[:, 0]
        cubic = PchipInterpolator(x, vals, extrapolate=True)(coords[:, 0])
        linear = np.interp(coords[:, 0], x, vals)
    else:
        tri = Delaunay(pts)
        cubic = CloughTocher2DInterpolator(tri, vals)(coords)
        linear = LinearNDInterpolator(tri, vals)(coords)
        # outside the hull (a corner value not finite): nearest evaluated value
        miss = ~np.isfinite(cubic) | ~np.isfinite(linear)
        if miss.any():
            nearest = np.argmin(((coords[miss, None, :] - pts[None, :, :]) ** 2).sum(-1), axis=1)
            cubic[miss] = vals[nearest]
            linear[miss] = vals[nearest]
    return cubic.reshape(shape), linear.reshape(shape)


def _neighbourhood(shape: tuple[int, ...], flat_index: int, radius: int) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    centre = np.unravel_index(flat_index, shape)
    sl = tuple(slice(max(0, c - radius), c + radius + 1) for c in centre)
    mask[sl] = True
    return mask


def _nearest_nodes(grid: SurfaceGrid, trajectory: np.ndarray) -> np.ndarray:
    """Mask of the grid points nearest each trajectory point (coefficients (n, ndim)) inside the grid."""
    mask = np.zeros(grid.shape, dtype=bool)
    traj = np.atleast_2d(np.asarray(trajectory, dtype=np.float64))
    if traj.shape[1] != grid.ndim:
        raise ValueError(
            f"trajectory must be (n, {grid.ndim}) coefficients in the surface's plane, got {traj.shape}"
        )
    axes = [grid.x.values] if grid.y is None else [grid.y.values, grid.x.values]
    cols = [traj[:, 0]] if grid.ndim == 1 else [traj[:, 1], traj[:, 0]]
    inside = np.ones(len(traj), dtype=bool)
    idx = []
    for ax, c in zip(axes, cols, strict=True):
        inside &= (c >= ax[0] - 1e-12) & (c <= ax[-1] + 1e-12)
        idx.append(np.abs(ax[None, :] - c[:, None]).argmin(axis=1))
    mask[tuple(i[inside] for i in idx)] = True
    return mask


def _spread_worst(estimate: np.ndarray, count: int, threshold: float, spacing: int) -> list[int]:
    """Flat indices of up to ``count`` points of largest ``estimate`` above ``threshold``, no two
    within ``spacing`` grid points of each other (one evaluation also fixes its neighbours)."""
    taken = np.zeros(estimate.shape, dtype=bool)
    picked: list[int] = []
    for i in np.argsort(estimate, axis=None)[::-1]:
        if len(picked) >= count or estimate.ravel()[i] <= threshold:
            break
        if taken.ravel()[i]:
            continue
        picked.append(int(i))
        taken |= _neighbourhood(estimate.shape, int(i), spacing)
    return picked


def _transform(v: np.ndarray, log: bool) -> np.ndarray:
    return np.log(v) if log else v


def _untransform(v: np.ndarray, log: bool) -> np.ndarray:
    return np.exp(v) if log else v


def refine_surface(
    model: Any,
    data: Any,
    directions: Any = "random",
    x: Any = "-1:1:51",
    y: Any = None,
    *,
    rtol: float = 0.003,
    budget: float = 0.2,
    coarse_step: int | None = None,
    batch: float = 0.02,
    metric: str = "loss",
    near_min: int = 2,
    spacing: int = 1,
    trajectory: Sequence[Sequence[float]] | np.ndarray | None = None,
    callback: Any = None,
    **kwargs: Any,
) -> Surface:
    """The surface of :func:`~lossviz.landscape.compute_surface` from adaptively chosen points.

    ``rtol``: the estimated relative error (of ``metric``, in the main split) at which a point
    is trusted to interpolation; ``budget``: most points evaluated, as a fraction of the grid;
    ``coarse_step``: the first lattice's spacing in grid points (default: about 13 points per
    axis); ``batch``: points per round, as a fraction of the grid; ``near_min``: the radius (grid
    points) evaluated around the current minimum; ``spacing``: the least distance (grid points)
    between two points chosen in one round; ``trajectory``: (n, ndim) coefficients whose
    nearest grid points are evaluated. ``callback(surface, n_evaluated, n_total)`` sees the
    filled-in surface after every round. Other arguments (``executor``, ``device``, ``split``,
    ``test_data``, ``cancel``, ...) go to :func:`compute_surface`. Setting ``cancel`` stops at
    the next chunk: within the first lattice the result is that partial lattice (the rest NaN,
    ``done`` False), later the picture interpolated from the points evaluated so far; either way
    ``meta["cancelled"]`` is True.
    """
    check_refine_options(rtol, budget, batch)
    for bad in ("only", "resume", "progress"):
        if bad in kwargs:
            raise TypeError(f"refine_surface() takes no {bad!r}: it chooses the points itself")
    grid = SurfaceGrid.from_specs(x, y)
    shape, size = grid.shape, grid.size
    on_path = _nearest_nodes(grid, np.asarray(trajectory)) if trajectory is not None else None
    step = first_lattice_step(shape, coarse_step)
    cap = max(int(budget * size), int(coarse_mask(shape, step).sum()))
    per_round = max(1, int(batch * size))
    cancel = kwargs.get("cancel")

    evaluated = np.zeros(shape, dtype=bool)
    values: dict[str, np.ndarray] = {}
    base: Surface | None = None

    def run(mask: np.ndarray) -> None:
        nonlocal base, directions
        mask = mask & ~evaluated
        if not mask.any():
            return
        surf = compute_surface(model, data, directions, x=grid.x, y=grid.y, only=mask, progress=False,
                               **kwargs)
        directions = surf.directions  # the same directions for every round
        if base is None:
            base = surf
            values.update({k: np.full(shape, np.nan) for k in surf.values})
        got = surf.done & mask
        for k, v in surf.values.items():
            values[k][got] = v[got]
        evaluated[got] = True
        if cancel is not None and cancel.is_set():
            return  # points not reached were not tried: they stay to be interpolated
        failed = mask & ~surf.done
        evaluated[failed] = True  # tried; stays NaN and is filled by interpolation
        if failed.any():
            base.meta.setdefault("errors", []).extend(surf.meta.get("errors", [])[:5])

    first = coarse_mask(shape, step)
    run(first)
    assert base is not None
    if cancel is not None and cancel.is_set() and not evaluated[first].all():
        # cancelled within the first lattice: too few points to interpolate from, so the partial
        # surface as compute_surface leaves it (evaluated points done, the rest NaN)
        partial = {k: np.where(evaluated, v, np.nan) for k, v in values.items()}
        meta = {**base.meta, "cancelled": True,
                "adaptive": {"method": "refine", "evaluated": np.flatnonzero(evaluated.ravel()).tolist(),
                             "n_evaluated": int(evaluated.sum()), "fraction": float(evaluated.mean()),
                             "rounds": 1, "driver": None, "log": None}}
        return Surface(base.x, base.y, partial, evaluated.copy(), base.directions, meta)
    split = base.meta.get("split", "train")
    key = f"{split}_{metric}"
    if key not in values:
        raise ValueError(f"metric {metric!r} is not computed; the surface has {sorted(values)}")
    finite = evaluated & np.isfinite(values[key])
    if finite.sum() < (2 if len(shape) == 1 else 3) or (len(shape) == 2 and np.linalg.matrix_rank(
            np.c_[_unit_coords(shape)[finite.ravel()], np.ones(int(finite.sum()))]) < 3):
        raise ValueError(
            f"the first lattice of {int(evaluated.sum())} points gave only {int(finite.sum())} finite values of "
            f"{key} (the model diverges or fails almost everywhere on this grid), too few to interpolate: "
            "shrink the grid's range, or compute the full surface without adaptive refinement"
        )
    log = bool(np.nanmin(values[key]) > 0)
    calib = 1.0
    rounds = 1
    estimate = np.zeros(shape)

    def fill() -> tuple[np.ndarray, np.ndarray]:
        f = _transform(values[key], log)
        cubic, linear = interpolants(shape, evaluated, f)
        return cubic, np.abs(cubic - linear)

    cubic, indicator = fill()
    while True:
        estimate = np.where(evaluated, 0.0, calib * indicator)
        if callback is not None:
            so_far = _result(grid, base, values, evaluated, key, cubic, estimate, log, rounds)
            callback(so_far, int(evaluated.sum()), size)
        room = cap - int(evaluated.sum())
        if room <= 0 or (cancel is not None and cancel.is_set()):
            break
        want = np.zeros(shape, dtype=bool)
        # structure: the worst estimated points
        want.ravel()[_spread_worst(estimate, per_round, rtol, spacing)] = True
        # near the minimum of the current picture, and along the trajectory
        filled = np.where(evaluated, _transform(values[key], log), cubic)
        want |= _neighbourhood(shape, int(np.nanargmin(filled)), near_min)
        if on_path is not None:
            want |= on_path
        want &= ~evaluated
        if not want.any():
            break
        if want.sum() > room:  # the budget's last points: the worst estimates among those wanted
            keep = np.argsort(np.where(want, estimate, -1.0), axis=None)[::-1][:room]
            want = np.zeros(shape, dtype=bool)
            want.ravel()[keep] = True
        predicted, guessed = cubic.copy(), indicator.copy()
        run(want)
        rounds += 1
        new = want & evaluated & np.isfinite(values[key])
        if new.any():
            actual = np.abs(_transform(values[key][new], log) - predicted[new])
            ratio = actual / np.maximum(guessed[new], 1e-12)
            calib = float(max(0.25, np.quantile(ratio, 0.9)))
        cubic, indicator = fill()
    out = _result(grid, base, values, evaluated, key, cubic, estimate, log, rounds)
    # stopped early: a complete picture, but from fewer rounds than asked for
    out.meta["cancelled"] = bool(cancel is not None and cancel.is_set())
    return out


def _result(grid, base: Surface, values, evaluated, key, cubic, estimate, log, rounds) -> Surface:
    """The Surface: evaluated values, interpolation elsewhere (each metric its own interpolant)."""
    shape = grid.shape
    out: dict[str, np.ndarray] = {}
    errors: dict[str, np.ndarray] = {}
    for name, v in values.items():
        if name == key:
            filled = np.where(evaluated, v, _untransform(cubic, log))
            # the estimate is in log units when log: a relative error
            err = np.abs(filled) * np.expm1(estimate) if log else estimate
            errors[name] = np.where(evaluated, 0.0, err)
        else:
            other_log = bool(np.nanmin(v) > 0) and not name.endswith("_acc")
            c, lin = interpolants(shape, evaluated, _transform(v, other_log))
            filled = np.where(evaluated, v, _untransform(c, other_log))
            err = np.abs(_untransform(c, other_log) - _untransform(lin, other_log))
            errors[name] = np.where(evaluated, 0.0, err)
        out[name] = np.where(np.isfinite(filled), filled, np.nan)
    n_eval = int(evaluated.sum())
    meta = {
        **base.meta,
        "adaptive": {
            "method": "refine",
            "evaluated": np.flatnonzero(evaluated.ravel()).tolist(),
            "n_evaluated": n_eval,
            "fraction": n_eval / evaluated.size,
            "rounds": rounds,
            "driver": key,
            "log": log,
        },
    }
    return Surface(base.x, base.y, out, np.ones(shape, dtype=bool), base.directions, meta, errors)
