"""Li et al.'s map of the Hessian's extreme eigenvalues over a surface's grid (``plot_hessian_eigen.py``).

At every grid point ``θ = θ₀ + x·d₁ (+ y·d₂)``, ``λ_min`` and ``λ_max`` of the Hessian of the mean
loss (one Lanczos run for both ends), stored as the surface values ``min_eig`` and ``max_eig`` as the
reference stores them in its surface file; ``|min_eig / max_eig|`` is its convexity map (small where
the landscape is convex). Points go out as chunks through the executors of loss surfaces
(:func:`lossviz.executors.run_chunks`: in-process, threads, processes, Dask, MPI, devices), each
worker building its operator once per spec.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from lossviz.data import EvalData, as_eval_data
from lossviz.directions import DirectionSet
from lossviz.executors import run_chunks
from lossviz.grid import SurfaceGrid
from lossviz.hessian.eigen import extreme_eigenvalues
from lossviz.hessian.operator import HessianOperator
from lossviz.landscape import Surface, resolve_directions
from lossviz.losses import LossFn, resolve_loss
from lossviz.params import ParamSpace

__all__ = ["EIGEN_NAMES", "EigenSpec", "eigen_chunk", "eigen_map", "eigen_ratio"]

EIGEN_NAMES = ("min_eig", "max_eig")
"""The surface values an eigen map adds (the reference's dataset names)."""


@dataclass
class EigenSpec:
    """What a worker needs to compute the extreme eigenvalues at chunks of grid points (picklable).

    A point is ``center + coeffs @ directions`` (CPU tensors); ``options`` go to
    :func:`~lossviz.hessian.eigen.extreme_eigenvalues` and :class:`HessianOperator`.
    """

    token: str
    model: nn.Module
    data: EvalData
    loss: str | LossFn
    center: torch.Tensor
    directions: torch.Tensor
    options: dict[str, Any]

    def on_device(self, device: str | torch.device) -> EigenSpec:
        """This spec computed on ``device`` (for a :class:`~lossviz.executors.DeviceExecutor`)."""
        return dataclasses.replace(self, options={**self.options, "device": device})


_OPERATORS: OrderedDict[tuple[str, int], HessianOperator] = OrderedDict()
_OPERATORS_LOCK = threading.Lock()


def _operator_for(spec: EigenSpec) -> HessianOperator:
    """This process's and thread's operator for ``spec`` (built once, moved from point to point)."""
    key = (spec.token, threading.get_ident())
    with _OPERATORS_LOCK:
        if key in _OPERATORS:
            return _OPERATORS[key]
    opts = spec.options
    op = HessianOperator(spec.model, spec.data, spec.loss, batch_size=opts.get("batch_size", "auto"),
                         dtype=opts.get("dtype", torch.float32), device=opts.get("device"))
    with _OPERATORS_LOCK:
        _OPERATORS[key] = op
        while len(_OPERATORS) > 4:
            _OPERATORS.popitem(last=False)
    return op


def eigen_chunk(spec: EigenSpec, coeffs: np.ndarray) -> dict[str, np.ndarray]:
    """The chunk task: ``{"min_eig", "max_eig"}`` (float64 (m,)) at the rows of ``coeffs``."""
    op = _operator_for(spec)
    c = torch.as_tensor(np.asarray(coeffs, dtype=np.float64), dtype=op.dtype)
    points = spec.center.to(op.dtype) + c @ spec.directions.to(op.dtype)
    lo, hi = np.empty(len(points)), np.empty(len(points))
    for i, theta in enumerate(points):
        lo[i], hi[i] = extreme_eigenvalues(op.move_to(theta), tol=spec.options.get("tol", 1e-3),
                                           max_iter=spec.options.get("max_iter", 100),
                                           seed=spec.options.get("seed", 0))
    return {"min_eig": lo, "max_eig": hi}


def eigen_ratio(surface: Surface) -> np.ndarray:
    """``|min_eig / max_eig|`` of an eigen map (NaN where ``max_eig`` is 0 or not computed)."""
    lo, hi = surface.values["min_eig"], surface.values["max_eig"]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(hi != 0, np.abs(lo / hi), np.nan)


def _grid_of(grid: Any) -> tuple[SurfaceGrid, Surface | None]:
    if isinstance(grid, Surface):
        return grid.grid, grid
    if isinstance(grid, SurfaceGrid):
        return grid, None
    if isinstance(grid, tuple) and len(grid) == 2:
        return SurfaceGrid.from_specs(*grid), None
    return SurfaceGrid.from_specs(grid), None


def eigen_map(
    model: nn.Module,
    data: Any,
    loss: str | LossFn = "cross_entropy",
    directions: Any = None,
    grid: Any = "-1:1:11",
    *,
    executor: Any = None,
    normalization: str | None = "filter",
    ignore: str | None = "biasbn",
    seed: int | None = 0,
    tol: float = 1e-3,
    max_iter: int = 100,
    batch_size: int | str | None = "auto",
    dtype: torch.dtype = torch.float32,
    device: Any = None,
    chunk_size: int = 1,
    callback: Callable[[Surface, int, int], Any] | None = None,
    cancel: threading.Event | None = None,
) -> Surface:
    """``min_eig`` and ``max_eig`` of the Hessian at every point of a grid around the model's weights.

    ``grid``: a :class:`~lossviz.landscape.Surface` (its grid, and its directions when
    ``directions`` is None; the result holds its values too, so that writing it with
    :func:`lossviz.io.h5.write_surface` gives the reference's surface file with ``min_eig`` and
    ``max_eig`` added), a :class:`~lossviz.grid.SurfaceGrid`, an x spec ``"min:max:num"`` or an
    ``(x, y)`` pair of specs. ``directions``: anything :func:`lossviz.landscape.resolve_directions`
    takes (``"random"`` with ``normalization``/``ignore``/``seed``, a DirectionSet, vectors) over the
    ``"weights"`` space. ``executor``: as for :func:`lossviz.landscape.compute_surface` (chunks of
    ``chunk_size`` points); where ``grid`` is a surface that already holds ``min_eig``/``max_eig``, its
    finite points are kept and only the others computed (a resumed job). ``tol``/``max_iter``/``seed``:
    the Lanczos run at each point (Li et al. use a relative tolerance of 1e-3 too);
    ``batch_size``/``dtype``/``device``: the operator's.
    ``callback(surface, n_done, n_total)`` after every chunk; ``cancel`` stops between chunks (the
    rest NaN, not done).
    """
    shape_grid, base = _grid_of(grid)
    if directions is None:
        if base is None or base.directions is None:
            raise ValueError("eigen_map needs directions: give directions= or a surface that holds them")
        directions = base.directions
    if isinstance(directions, DirectionSet) and directions.kind != "weights":
        raise ValueError(f"eigen maps need 'weights' directions, not {directions.kind!r} ones: the Hessian is over "
                         "the parameters")
    space = ParamSpace(model, "weights")
    center = space.vector(model, dtype=dtype).cpu()
    ds = resolve_directions(directions, space, center, shape_grid.ndim, normalization=normalization,
                            ignore=ignore, seed=seed)
    evaluation = as_eval_data(data)
    resolve_loss(loss, evaluation.targets)  # a wrong loss fails here, not in every worker
    spec = EigenSpec(uuid.uuid4().hex, model, evaluation, loss, center,
                     ds.stacked().detach().to("cpu", dtype),
                     {"tol": tol, "max_iter": max_iter, "seed": 0 if seed is None else int(seed),
                      "batch_size": batch_size, "dtype": dtype, "device": device})
    values = {k: np.array(v, dtype=np.float64, copy=True) for k, v in (base.values if base is not None else {}).items()}
    if not all(n in values for n in EIGEN_NAMES):
        values.update({n: np.full(shape_grid.shape, np.nan) for n in EIGEN_NAMES})
    done = np.logical_and.reduce([np.isfinite(values[n]) for n in EIGEN_NAMES])  # a resumed map keeps its points
    meta = {**(base.meta if base is not None else {}),
            "eigen": {"tol": tol, "max_iter": max_iter, "loss": resolve_loss(loss).name, "dtype": str(dtype)}}
    out = Surface(shape_grid.x.values, shape_grid.y.values if shape_grid.y is not None else None, values, done, ds,
                  meta)
    order = np.asarray([k for k in shape_grid.order() if not done.reshape(-1)[k]], dtype=np.int64)
    chunks = [order[i : i + chunk_size] for i in range(0, len(order), max(1, int(chunk_size)))]
    coords = shape_grid.coords()
    for i, fut in run_chunks(eigen_chunk, spec, [coords[idx] for idx in chunks], executor, cancel=cancel):
        result, idx = fut.result(), chunks[i]
        for name in EIGEN_NAMES:
            out.values[name].reshape(-1)[idx] = result[name]
        done.reshape(-1)[idx] = True
        if callback is not None:
            callback(out, int(done.sum()), done.size)
    if base is not None:
        out.done = done & base.done
    out.meta["cancelled"] = bool(cancel is not None and cancel.is_set() and not done.all())
    return out
