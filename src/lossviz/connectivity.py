"""Mode connectivity: low-loss curves between two minima (Garipov et al. 2018) and loss barriers.

A curve ``φ(t)``, ``t ∈ [0, 1]``, in the ``"weights"`` space runs from ``w₀ = φ(0)`` to ``w₁ = φ(1)``
through k trainable bends ``θ₁ … θ_k`` (the control points ``P = [w₀, θ₁, …, θ_k, w₁]``):

* quadratic (degree k+1) Bezier: ``φ(t) = Σ_i C(n, i) tⁱ (1−t)ⁿ⁻ⁱ P_i``, n = k+1 (k = 1:
  ``(1−t)² w₀ + 2t(1−t) θ + t² w₁``);
* PolyChain: the polygon through ``P`` with knots at ``t = i/n`` (k = 1: ``w₀ → θ`` on [0, ½],
  ``θ → w₁`` on [½, 1]);
* the line: no bend, ``(1−t) w₀ + t w₁``.

:func:`fit_curve` trains the bends as in timgaripov/dnn-mode-connectivity: each step draws
``t ~ U(0, 1)`` and takes an optimizer step on the minibatch loss at ``φ(t)`` (the model called
functionally, ``torch.func.functional_call``, in train mode: BatchNorm uses batch statistics), so the
expected loss ``E_t L(φ(t))`` falls. :func:`evaluate_path` gives loss and accuracy along a curve (the
engine, :class:`~lossviz.evaluate.Evaluator`), optionally with BatchNorm statistics recomputed on the
training data at every point (:func:`update_bn`; eval-mode statistics of an end mislead away from it);
:func:`loss_barrier` is Frankle et al.'s (2020) ``max_t L(φ(t)) − (L(w₀) + L(w₁)) / 2``.
:func:`curve_plane` is the plane through the ends and a bend with orthonormal (Gram-Schmidt) axes, and
:func:`plane_surface` the loss surface on it with the curve and ends drawn (Garipov's figure 1).
"""

from __future__ import annotations

import copy
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from lossviz.batches import Forward, call_model, take_samples
from lossviz.batches import batch_size as samples_in
from lossviz.data import as_eval_data
from lossviz.evaluate import Evaluator
from lossviz.hessian.operator import functional_loss
from lossviz.jobs import JobCancelled
from lossviz.losses import LossFn, resolve_loss
from lossviz.params import ParamSpace
from lossviz.validation import Interval, Options, check

__all__ = [
    "CURVES",
    "Curve",
    "CurveFit",
    "PathProfile",
    "Plane",
    "curve_plane",
    "evaluate_path",
    "fit_curve",
    "loss_barrier",
    "plane_surface",
    "update_bn",
]

CURVES = ("line", "bezier", "polychain")
"""The curve kinds: the straight line, the Bezier curve and the PolyChain."""

Progress = Callable[[int, int, float], Any]  # (epoch done, epochs, mean training loss of that epoch)


# ---------------------------------------------------------------------------------------- curves
def _bernstein(t: torch.Tensor, n: int) -> torch.Tensor:
    """``(T, n+1)`` Bernstein weights ``C(n, i) tⁱ (1−t)ⁿ⁻ⁱ``."""
    i = torch.arange(n + 1, dtype=t.dtype, device=t.device)
    binom = torch.tensor([math.comb(n, k) for k in range(n + 1)], dtype=t.dtype, device=t.device)
    return binom * t[:, None] ** i * (1 - t[:, None]) ** (n - i)


def _polygon(t: torch.Tensor, n: int) -> torch.Tensor:
    """``(T, n+1)`` hat-function weights of the polygon with knots ``i/n``."""
    knots = torch.arange(n + 1, dtype=t.dtype, device=t.device) / n
    return torch.clamp(1 - (t[:, None] - knots).abs() * n, min=0.0)


@dataclass
class Curve:
    """A curve between two points of a weights space: ``kind`` (one of :data:`CURVES`) and its
    control points ``points`` ``(k+2, D)``, the ends first and last."""

    kind: str
    points: torch.Tensor

    def __post_init__(self) -> None:
        check("curve", self.kind, Options(CURVES))
        if self.points.dim() != 2 or self.points.shape[0] < 2:
            raise ValueError(f"a curve needs (k+2, D) control points, got shape {tuple(self.points.shape)}")
        if self.kind == "line" and self.points.shape[0] != 2:
            raise ValueError("a line has its two ends only: use curve='bezier' or 'polychain' for bends")

    @property
    def ends(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.points[0], self.points[-1]

    @property
    def bends(self) -> torch.Tensor:
        return self.points[1:-1]

    def weights(self, t: torch.Tensor | float | np.ndarray) -> torch.Tensor:
        """``(T, k+2)`` coefficients of the control points at the times ``t``."""
        t = torch.as_tensor(t, dtype=self.points.dtype, device=self.points.device).reshape(-1)
        n = self.points.shape[0] - 1
        return _polygon(t, n) if self.kind == "polychain" else _bernstein(t, n)

    def at(self, t: torch.Tensor | float | np.ndarray) -> torch.Tensor:
        """``(T, D)``: the curve's points at the times ``t``."""
        return self.weights(t) @ self.points

    @classmethod
    def through(cls, kind: str, w0: torch.Tensor, w1: torch.Tensor, n_bends: int = 1) -> Curve:
        """The ``kind`` curve from ``w0`` to ``w1`` with ``n_bends`` bends on the line, at ``i/(k+1)``
        (Garipov's linear initialization; the curve is then the line itself)."""
        if kind == "line":
            n_bends = 0
        alphas = torch.linspace(0, 1, n_bends + 2, dtype=w0.dtype, device=w0.device)[:, None]
        return cls(kind, (1 - alphas) * w0 + alphas * w1)


def loss_barrier(values: Any) -> float:
    """Frankle et al.'s barrier of values along a path (ends first and last): ``max − mean(ends)``."""
    v = np.asarray(values, dtype=np.float64)
    return float(np.nanmax(v) - 0.5 * (v[0] + v[-1]))


# ---------------------------------------------------------------------------------------- fitting
@dataclass
class CurveFit:
    """A fitted curve and its training history: ``losses`` (the mean minibatch loss per epoch)."""

    curve: Curve
    losses: list[float] = field(default_factory=list)
    steps: int = 0


def _weights_of(model: nn.Module, point: Any, what: str) -> torch.Tensor:
    """A flat weights vector of ``model``'s space from a module, a state dict or a vector."""
    space = ParamSpace(model, "weights")
    if isinstance(point, nn.Module):
        vec = space.vector(point)
    elif isinstance(point, Mapping):
        other = copy.deepcopy(model)
        other.load_state_dict(point)
        vec = space.vector(other)
    else:
        vec = torch.as_tensor(point).detach().reshape(-1)
    if vec.numel() != space.numel:
        raise ValueError(f"{what} has {vec.numel()} weights but the model has {space.numel}: give two points of "
                         "one architecture")
    return vec


def fit_curve(
    model: nn.Module,
    a: Any,
    b: Any,
    data: Any,
    loss: str | LossFn = "cross_entropy",
    *,
    curve: str = "bezier",
    n_bends: int = 1,
    epochs: int = 20,
    batch_size: int = 128,
    lr: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    seed: int = 0,
    init: torch.Tensor | None = None,
    device: Any = None,
    dtype: torch.dtype = torch.float32,
    forward: Forward | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> CurveFit:
    """Train the bends of a ``curve`` ("bezier" or "polychain") from ``a`` to ``b`` on ``data``.

    ``a``, ``b``: modules of ``model``'s architecture, their state dicts or flat weights vectors.
    Each of ``epochs`` passes over ``data`` (shuffled, minibatches of ``batch_size``) takes one SGD
    step (``lr``, ``momentum``, ``weight_decay`` on the bends) per minibatch on the loss at
    ``φ(t)``, ``t ~ U(0, 1)`` drawn per step (``seed``). The bends start on the line (or at
    ``init``, ``(k, D)``). ``progress(epoch, epochs, mean loss)`` after every epoch; ``cancel`` set
    stops at the next step (``JobCancelled``). The ends never move.
    """
    check("curve", curve, Options(("bezier", "polychain")))
    n_bends = check("n_bends", n_bends, Interval(int, 1, None, whole_floats=True))
    epochs = check("epochs", epochs, Interval(int, 1, None, whole_floats=True))
    batch_size = check("batch_size", batch_size, Interval(int, 1, None, whole_floats=True))
    lr = check("lr", lr, Interval(float, 0.0, None, closed="right"))
    first = next(iter(model.parameters()))
    dev = torch.device(device) if device is not None else first.device
    w0 = _weights_of(model, a, "a").to(dev, dtype)
    w1 = _weights_of(model, b, "b").to(dev, dtype)
    start = Curve.through(curve, w0, w1, n_bends)
    bends = nn.Parameter((start.bends if init is None else torch.as_tensor(init).reshape(n_bends, -1))
                         .detach().clone().to(dev, dtype))
    train = as_eval_data(data).to(dev, dtype)
    worker = copy.deepcopy(model).to(dev, dtype).train()
    targets = train.targets
    loss_at = functional_loss(worker, resolve_loss(loss, targets if isinstance(targets, torch.Tensor) else None).mean,
                              forward)
    ends = (w0[None], w1[None])
    opt = torch.optim.SGD([bends], lr=lr, momentum=momentum, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(int(seed))
    fit = CurveFit(start)
    n = len(train)
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen).to(dev)
        total = 0.0
        for i in range(0, n, batch_size):
            if cancel is not None and cancel.is_set():
                raise JobCancelled(f"cancelled after {epoch}/{epochs} epochs")
            idx = order[i : i + batch_size]
            t = torch.rand(1, generator=gen, dtype=torch.float64).to(dev, dtype)
            point = (start.weights(t) @ torch.cat([ends[0], bends, ends[1]]))[0]
            value = loss_at(point, take_samples(train.batch, idx))
            opt.zero_grad()
            value.backward()
            opt.step()
            total += float(value.detach()) * len(idx)
            fit.steps += 1
        fit.losses.append(total / n)
        if progress is not None:
            progress(epoch + 1, epochs, fit.losses[-1])
    fit.curve = Curve(curve, torch.cat([ends[0], bends.detach(), ends[1]]))
    return fit


# ---------------------------------------------------------------------------------------- evaluating
_BN_TYPES = (nn.modules.batchnorm._BatchNorm,)


@torch.no_grad()
def update_bn(model: nn.Module, data: Any, batch_size: int = 256, forward: Forward | None = None) -> nn.Module:
    """Recompute ``model``'s BatchNorm running statistics on ``data`` (in place; returns the model).

    The statistics are reset and each batch of b samples enters with momentum ``b / (n + b)``
    after n samples, so the running mean is the mean over every sample (the running variance the
    sample-weighted mean of the batches' unbiased variances), as dnn-mode-connectivity's
    ``utils.update_bn``; the model ends in eval mode. A model without BatchNorm is returned unchanged.
    ``forward(model, batch)`` overrides :func:`lossviz.batches.call_model`'s calling rule.
    """
    norms = [m for m in model.modules() if isinstance(m, _BN_TYPES)]
    if not norms:
        return model
    first = next(iter(model.parameters()))
    evaluation = as_eval_data(data).to(first.device, first.dtype)
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
    model.train()
    try:
        for i, batch in zip(range(0, len(evaluation), batch_size), evaluation.split(batch_size), strict=True):
            b = samples_in(batch)
            for m in norms:
                m.momentum = b / (i + b)
            call_model(model, batch, forward)
    finally:
        for m, mom in zip(norms, momenta, strict=True):
            m.momentum = mom
        model.eval()
    return model


@dataclass
class PathProfile:
    """Metrics along a path: ``t`` (T,) and ``values`` ``{"<split>_<metric>": (T,)}`` (accuracy in
    percent, as the engine gives it), with ``barriers`` ``{"<split>_loss": loss_barrier}``."""

    t: np.ndarray
    values: dict[str, np.ndarray]
    update_bn: bool = False

    @property
    def barriers(self) -> dict[str, float]:
        return {k: loss_barrier(v) for k, v in self.values.items() if k.endswith("_loss")}

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.t.tolist(), "values": {k: v.tolist() for k, v in self.values.items()},
                "barriers": self.barriers, "update_bn": self.update_bn}


def state_points(model: nn.Module, points: torch.Tensor, bn_data: Any, forward: Forward | None = None) -> torch.Tensor:
    """``(T, D_states)``: each point of ``model``'s weights space (rows of ``points``) as a point of its
    states space, with the BatchNorm statistics :func:`update_bn` recomputes there on ``bn_data``
    (``forward``: the calling rule's override)."""
    weights, states = ParamSpace(model, "weights"), ParamSpace(model, "states")
    work = copy.deepcopy(model)
    out = []
    for p in points:
        weights.load_into(work, p)
        out.append(states.vector(update_bn(work, bn_data, forward=forward)).detach().cpu())
    return torch.stack(out)


def evaluate_path(
    model: nn.Module,
    curve: Curve,
    data: Mapping[str, Any],
    loss: str | LossFn = "cross_entropy",
    *,
    n_points: int = 21,
    update_bn: bool = False,
    bn_data: Any = None,
    metrics: Any = ("loss", "acc"),
    device: Any = None,
    dtype: torch.dtype = torch.float32,
    forward: Forward | None = None,
) -> PathProfile:
    """Loss and accuracy at ``n_points`` evenly spaced times along ``curve`` on every split of
    ``data`` (``{"train": ..., "test": ...}``), through the engine; buffers (BatchNorm statistics)
    are ``model``'s unless ``update_bn``, which recomputes them at every point on ``bn_data``
    (default ``data["train"]``) as :func:`update_bn`. ``forward(model, batch)`` overrides the
    calling rule of :func:`lossviz.batches.call_model`."""
    n_points = check("n_points", n_points, Interval(int, 2, None, whole_floats=True))
    t = np.linspace(0.0, 1.0, n_points)
    points = curve.at(torch.as_tensor(t, dtype=torch.float64)).to(dtype)
    kind = "weights"
    if update_bn and any(isinstance(m, _BN_TYPES) for m in model.modules()):
        points = state_points(model, points, data["train"] if bn_data is None else bn_data, forward)
        kind = "states"
    values: dict[str, np.ndarray] = {}
    for split, part in data.items():
        ev = Evaluator(model, part, kind=kind, loss=loss, metrics=metrics, device=device, dtype=dtype, forward=forward)
        for name, v in ev.evaluate(points.to(ev.device)).items():
            values[f"{split}_{name}"] = np.asarray(v, dtype=np.float64)
    return PathProfile(t, values, update_bn)


# ---------------------------------------------------------------------------------------- plane
@dataclass
class Plane:
    """The plane ``origin + u·e₁ + v·e₂`` with orthonormal ``axes`` ``(2, D)`` (``e₁`` along
    ``w₁ − w₀``), and the plane coordinates of the control points, ``(k+2, 2)``."""

    origin: torch.Tensor
    axes: torch.Tensor
    control: np.ndarray

    def coordinates(self, points: torch.Tensor) -> np.ndarray:
        """``(T, 2)``: the orthogonal projections of ``points`` ``(T, D)`` onto the plane."""
        return ((points.to(self.axes.dtype) - self.origin) @ self.axes.T).cpu().numpy().astype(np.float64)


def curve_plane(curve: Curve, bend: int | None = None) -> Plane:
    """The plane through the ends and bend ``bend`` (default the middle one) of ``curve``, by
    Gram-Schmidt: ``e₁ = (w₁ − w₀)/‖·‖``, ``e₂`` the unit part of ``θ − w₀`` orthogonal to ``e₁``."""
    if curve.bends.shape[0] == 0:
        raise ValueError("a line spans no plane: give a curve with a bend")
    p = curve.points.to(torch.float64)
    w0, w1 = p[0], p[-1]
    theta = curve.bends.to(torch.float64)[curve.bends.shape[0] // 2 if bend is None else bend]
    e1 = (w1 - w0) / (w1 - w0).norm()
    r = theta - w0
    r = r - (r @ e1) * e1
    r = r - (r @ e1) * e1  # twice: orthogonal to rounding
    if float(r.norm()) <= 1e-12 * float((w1 - w0).norm()):
        raise ValueError("the bend lies on the line through the ends: the three points span no plane")
    axes = torch.stack([e1, r / r.norm()])
    plane = Plane(w0, axes, np.zeros((p.shape[0], 2)))
    plane.control = plane.coordinates(p)
    return plane


def plane_surface(
    model: nn.Module,
    curve: Curve,
    data: Any,
    loss: str | LossFn = "cross_entropy",
    *,
    n: int = 21,
    margin: float = 0.2,
    n_curve: int = 61,
    **surface_kw: Any,
) -> Any:
    """The loss surface on :func:`curve_plane` over the box of the ends and the bend widened by
    ``margin`` of its size on each side, ``n × n`` points; ``meta["trajectory"]`` holds the curve's
    ``n_curve`` points in plane coordinates (drawn by :mod:`lossviz.figures`) and
    ``meta["connect"]`` the ends, the bend and the curve. ``surface_kw`` go to
    :func:`lossviz.landscape.compute_surface` (``metrics``, ``test_data``, ``executor``, ...)."""
    from lossviz.landscape import compute_surface

    plane = curve_plane(curve)
    lo, hi = plane.control.min(axis=0), plane.control.max(axis=0)
    pad = margin * (hi - lo).max()
    lo, hi = lo - pad, hi + pad
    center = copy.deepcopy(model)
    space = ParamSpace(center, "weights")
    space.load_into(center, plane.origin.to(next(iter(center.parameters())).dtype))
    axes = plane.axes.to(next(iter(center.parameters())).dtype)
    surface = compute_surface(center, data, (axes[0], axes[1]), x=f"{lo[0]}:{hi[0]}:{n}", y=f"{lo[1]}:{hi[1]}:{n}",
                              normalization=None, ignore=None, loss=loss, progress=False, **surface_kw)
    path = plane.coordinates(curve.at(torch.linspace(0, 1, n_curve, dtype=torch.float64)))
    surface.meta["trajectory"] = {"ids": list(range(n_curve)), "coords": path.tolist()}
    surface.meta["connect"] = {"curve": curve.kind, "ends": plane.control[[0, -1]].tolist(),
                               "bends": plane.control[1:-1].tolist(), "path": path.tolist()}
    return surface

