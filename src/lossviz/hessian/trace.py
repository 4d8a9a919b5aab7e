"""The Hessian's trace: Hutchinson's estimator, Hutch++, or exactly over the basis; per layer too.

Hutchinson: ``tr H ≈ (1/m) Σ_j z_jᵀ H z_j`` with Rademacher vectors ``z_j`` (variance
``2 Σ_{i≠j} H_ij²`` per probe). The same probes give every parameter group's trace,
``tr H_gg ≈ (1/m) Σ_j z_{j,g}ᵀ (H z_j)_g`` (unbiased: ``E[z_i z_k] = δ_ik``).

Hutch++ (Meyer, Musco, Musco & Woodruff 2021) spends a third of the m products on a sketch
``Q = orth(H S)`` of the top of the spectrum, whose trace ``tr(Qᵀ H Q)`` is exact, and the rest on
Hutchinson for the deflated remainder ``(I − QQᵀ) H (I − QQᵀ)``: a Hessian's few large outliers then
cost no variance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from lossviz.hessian.krylov import rademacher
from lossviz.hessian.operator import HessianOperator, as_groups, flat_index, hessian_operator
from lossviz.losses import LossFn

__all__ = ["TRACE_METHODS", "TraceResult", "layer_traces", "trace"]

TRACE_METHODS = ("hutchinson", "hutch++", "exact")


@dataclass
class TraceResult:
    """Trace estimate ``mean`` with its standard error ``stderr`` (0 for the exact trace) and the
    per-probe values ``samples`` (``z_jᵀ H z_j``; for Hutch++ those of the deflated remainder)."""

    mean: float
    stderr: float
    samples: np.ndarray = field(repr=False)
    method: str = "hutchinson"
    n_matvecs: int = 0


def _exact(op: HessianOperator) -> TraceResult:
    eye = torch.eye(op.dim, dtype=op.dtype, device=op.device)
    diag = np.array([float(op(e)[i]) for i, e in enumerate(eye)])
    return TraceResult(float(diag.sum()), 0.0, diag, "exact", op.dim)


def _hutchinson(op: HessianOperator, n: int, gen: torch.Generator) -> TraceResult:
    vals = np.empty(n)
    for j in range(n):
        z = rademacher(op.dim, gen, op.dtype, op.device)
        vals[j] = float(torch.dot(z, op(z)))
    return TraceResult(float(vals.mean()), float(vals.std(ddof=1) / math.sqrt(n)), vals, "hutchinson", n)


def _hutch_plus_plus(op: HessianOperator, n: int, gen: torch.Generator) -> TraceResult:
    """Hutch++ with ``n`` products: ``n/3`` for the sketch, ``n/3`` for its exact trace, the rest
    for Hutchinson on the remainder (standard error of that part only: the sketch is exact)."""
    k = max(1, min(n // 3, op.dim))
    m = max(2, n - 2 * k)
    sketch = torch.stack([op(rademacher(op.dim, gen, op.dtype, op.device)) for _ in range(k)], dim=1)
    q, _ = torch.linalg.qr(sketch)
    top = sum(float(torch.dot(q[:, i], op(q[:, i]))) for i in range(q.shape[1]))
    vals = np.empty(m)
    for j in range(m):
        z = rademacher(op.dim, gen, op.dtype, op.device)
        z = z - q @ (q.T @ z)
        hz = op(z)
        vals[j] = float(torch.dot(z, hz - q @ (q.T @ hz)))
    return TraceResult(top + float(vals.mean()), float(vals.std(ddof=1) / math.sqrt(m)), vals, "hutch++",
                       2 * q.shape[1] + m)


def trace(
    model: nn.Module | HessianOperator,
    data: Any = None,
    n_samples: int = 100,
    seed: int = 0,
    loss: str | LossFn = "cross_entropy",
    *,
    method: str = "hutchinson",
    **operator_kw: Any,
) -> TraceResult:
    """Hessian trace. ``"hutchinson"``: mean of ``zᵀ H z`` over ``n_samples`` Rademacher vectors
    (``seed``), with standard error ``std/√n_samples``; ``"hutch++"``: Hutch++ with ``n_samples``
    products in all (lower error where a few eigenvalues dominate); ``"exact"``: ``Σ_i e_iᵀ H e_i``
    over the basis (D products, for small models). ``operator_kw`` go to :class:`HessianOperator`
    (``params``, ``batch_size``, ``dtype``, ``device``, ``forward``)."""
    if method not in TRACE_METHODS:
        raise ValueError(f"method={method!r}: use 'hutchinson', 'hutch++' or 'exact'")
    op = hessian_operator(model, data, loss, **operator_kw)
    if method == "exact":
        return _exact(op)
    if n_samples < 2 or (method == "hutch++" and n_samples < 4):
        raise ValueError(f"n_samples must be at least {2 if method == 'hutchinson' else 4} for a standard error, "
                         f"got {n_samples}")
    gen = torch.Generator().manual_seed(int(seed))
    return (_hutchinson if method == "hutchinson" else _hutch_plus_plus)(op, n_samples, gen)


def layer_traces(
    model: nn.Module | HessianOperator,
    data: Any = None,
    n_samples: int = 100,
    seed: int = 0,
    loss: str | LossFn = "cross_entropy",
    *,
    groups: Mapping[str, Sequence[str]] | None = None,
    **operator_kw: Any,
) -> dict[str, TraceResult]:
    """Each parameter group's Hessian trace ``tr H_gg`` by Hutchinson, every group from the same
    ``n_samples`` products (``groups`` as for :func:`~lossviz.hessian.eigen.layer_eigenvalues`)."""
    if n_samples < 2:
        raise ValueError(f"n_samples must be at least 2 for a standard error, got {n_samples}")
    op = hessian_operator(model, data, loss, **operator_kw)
    index = {name: flat_index(op.space, names) for name, names in as_groups(op.model, groups).items()}
    gen = torch.Generator().manual_seed(int(seed))
    vals = {name: np.empty(n_samples) for name in index}
    for j in range(n_samples):
        z = rademacher(op.dim, gen, op.dtype, op.device)
        zhz = (z * op(z)).cpu()
        for name, idx in index.items():
            vals[name][j] = float(zhz[idx].sum())
    return {name: TraceResult(float(v.mean()), float(v.std(ddof=1) / math.sqrt(n_samples)), v, "hutchinson",
                              n_samples) for name, v in vals.items()}
