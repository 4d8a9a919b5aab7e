"""Data subsampling with error bars: each point's loss from as few samples as its precision needs.

The samples are put in one random order (seeded); level ``k`` evaluates the points still active on
the next block of that order, so after level ``k`` a point has seen the first ``n_k`` samples
(``n_k = first · growthᵏ``, capped at N) and nothing is evaluated twice. Per point the running
sums give the mean and its standard error under sampling without replacement::

    L̂ = (1/n) Σ ℓᵢ,   s² = (Σ ℓᵢ² − n L̂²)/(n − 1),   se(L̂) = sqrt(s²/n · (N − n)/(N − 1))

(accuracy: s² from p̂(1 − p̂)). A point stops once ``se ≤ max(atol, rtol·|L̂|)``; at n = N it is
exact (se = 0). The returned :class:`~lossviz.landscape.Surface` has the estimates in ``values``,
the standard errors in ``errors`` and the samples each point used in ``meta["adaptive"]``;
``callback`` sees the coarse picture after every level (the exact one comes later).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lossviz.batches import take_samples
from lossviz.data import EvalData, as_eval_data
from lossviz.grid import SurfaceGrid
from lossviz.landscape import Surface, compute_surface
from lossviz.losses import Loss, LossFn, resolve_loss
from lossviz.validation import Interval, check

__all__ = ["standard_error", "subsampled_surface"]


def standard_error(sum1: np.ndarray, sum2: np.ndarray, n: np.ndarray, total: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean, standard error of the mean) of ``n`` samples drawn without replacement from ``total``,
    from their sum and sum of squares (finite-population corrected; 0 when ``n == total``)."""
    n = np.asarray(n, dtype=np.float64)
    mean = sum1 / np.maximum(n, 1)
    var = np.maximum(sum2 - n * mean**2, 0.0) / np.maximum(n - 1, 1)
    fpc = np.clip((total - n) / max(total - 1, 1), 0.0, 1.0)
    se = np.sqrt(var / np.maximum(n, 1) * fpc)
    return mean, np.where(n >= total, 0.0, se)


@dataclass(frozen=True)
class _MeanOf:
    """Batch mean of per-sample ``terms`` (raised to ``power``); picklable, for process executors."""

    terms: LossFn
    power: int = 1

    def __call__(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.terms(outputs, targets).pow(self.power).mean()


def _sample_loss(loss: str, per_sample_loss: LossFn | None, full: EvalData) -> Loss:
    """The loss with per-sample terms: ``per_sample_loss`` when given, else the name's own."""
    if per_sample_loss is not None:
        name = getattr(per_sample_loss, "__name__", type(per_sample_loss).__name__)
        return Loss(name, _MeanOf(per_sample_loss), per_sample_loss)
    try:
        return resolve_loss(loss, full.targets)
    except ValueError as e:
        raise ValueError(f"{e}; or pass per_sample_loss=fn(outputs, targets) -> (B,)") from None


def subsampled_surface(
    model: Any,
    data: Any,
    directions: Any = "random",
    x: Any = "-1:1:51",
    y: Any = None,
    *,
    rtol: float = 0.01,
    atol: float = 0.0,
    range_tol: float = 0.0,
    first: int | None = None,
    growth: float = 2.0,
    sample_seed: int = 0,
    loss: str = "cross_entropy",
    per_sample_loss: LossFn | None = None,
    callback: Any = None,
    **kwargs: Any,
) -> Surface:
    """Loss (and accuracy) on the grid from growing random subsets of ``data``, with standard errors.

    ``rtol``/``atol``/``range_tol``: a point stops when its loss's standard error is below
    ``max(atol, rtol·|loss|, range_tol·(max − min of the current loss picture))`` (the last one
    is the precision of a contour plot, whose levels span that range); ``first``: samples of the
    first level (default ``max(32, N//32)``);
    ``growth``: factor between levels; ``sample_seed``: the samples' random order. ``loss``: a name of
    :data:`lossviz.losses.LOSS_NAMES` (its per-sample terms; ``"mse"`` on class labels is the
    reference's softmax-MSE), unless ``per_sample_loss`` (``fn(outputs, targets) -> (B,)``
    per-sample losses) is given. ``callback(surface, n_levels,
    n_points_active)`` runs after each level. Other arguments (``executor``, ``device``, ``dtype``,
    ``cancel``, ...) go to :func:`compute_surface`.
    """
    for bad in ("only", "resume", "progress", "metrics", "test_data", "max_samples"):
        if bad in kwargs:
            raise TypeError(f"subsampled_surface() takes no {bad!r}")
    tolerances = [check(name, v, Interval(float, 0, None)) for name, v in
                  (("rtol", rtol), ("atol", atol), ("range_tol", range_tol))]
    if not any(tolerances):
        raise ValueError(f"give a positive rtol, atol or range_tol (got {rtol}, {atol}, {range_tol})")
    check("growth", growth, Interval(float, 1, None, closed="neither"))
    check("first", first, Interval(int, 2, None), allow_none=True, hint="a variance needs two samples")
    full = as_eval_data(data)
    total = len(full)
    n0 = first if first is not None else max(32, total // 32)
    sample_loss = _sample_loss(loss, per_sample_loss, full)
    assert sample_loss.per_sample is not None
    loss_sq = _MeanOf(sample_loss.per_sample, 2)  # the squared losses' mean, for the variance
    perm = torch.randperm(total, generator=torch.Generator().manual_seed(sample_seed))
    bounds = [0]
    while bounds[-1] < total:
        bounds.append(min(total, max(bounds[-1] + 2, round(n0 * growth ** (len(bounds) - 1)))))

    grid = SurfaceGrid.from_specs(x, y)
    shape = grid.shape
    split = kwargs.pop("split", "train")
    s1, s2, correct = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    n = np.zeros(shape)
    active = np.ones(shape, dtype=bool)
    has_acc = False
    base: Surface | None = None
    cancel = kwargs.get("cancel")
    levels = 0
    for lo, hi in itertools.pairwise(bounds):
        if not active.any() or (cancel is not None and cancel.is_set()):
            break
        idx = perm[lo:hi]
        block = EvalData.of(take_samples(full.batch, idx))
        surf = compute_surface(model, block, directions, x=grid.x, y=grid.y, only=active, progress=False,
                               loss=sample_loss, metrics=("loss", "acc", ("loss_sq", loss_sq)), split=split,
                               **kwargs)
        directions = surf.directions
        base = base or surf
        got = surf.done & active
        m = hi - lo
        s1[got] += m * surf.values[f"{split}_loss"][got]
        s2[got] += m * surf.values[f"{split}_loss_sq"][got]
        if f"{split}_acc" in surf.values:
            has_acc = True
            correct[got] += m * surf.values[f"{split}_acc"][got] / 100.0
        n[got] += m
        active &= got  # failed points stop (NaN)
        levels += 1
        mean, se = standard_error(s1, s2, n, total)
        finite = mean[np.isfinite(mean) & (n > 0)]
        span = float(finite.max() - finite.min()) if finite.size else 0.0
        tol = np.maximum(max(atol, range_tol * span), rtol * np.abs(mean))
        active &= ~(se <= tol) & (n < total)
        if callback is not None:
            callback(_result(base, split, s1, s2, correct, n, total, has_acc, levels), levels, int(active.sum()))
    assert base is not None
    return _result(base, split, s1, s2, correct, n, total, has_acc, levels)


def _result(base: Surface, split: str, s1, s2, correct, n, total: int, has_acc: bool, levels: int) -> Surface:
    mean, se = standard_error(s1, s2, n, total)
    seen = n > 0
    values = {f"{split}_loss": np.where(seen, mean, np.nan)}
    errors = {f"{split}_loss": np.where(seen, se, np.nan)}
    if has_acc:
        p = correct / np.maximum(n, 1)
        fpc = np.clip((total - n) / max(total - 1, 1), 0.0, 1.0)
        values[f"{split}_acc"] = np.where(seen, 100.0 * p, np.nan)
        errors[f"{split}_acc"] = np.where(seen, 100.0 * np.sqrt(p * (1 - p) / np.maximum(n - 1, 1) * fpc), np.nan)
    meta = {k: v for k, v in base.meta.items() if k not in ("n_samples", "metrics", "cancelled")}
    meta.update({
        "metrics": list(values),
        "n_samples": {split: total},
        "adaptive": {
            "method": "subsample",
            "samples_per_point": n.astype(int).ravel().tolist(),
            "sample_passes": int(n.sum()),
            "fraction": float(n.sum() / (n.size * total)),
            "levels": levels,
        },
    })
    return Surface(base.x, base.y, values, seen, base.directions, meta, errors)
