"""Extreme eigenpairs of the Hessian: Lanczos (default) or power iteration with deflation.

Lanczos with full reorthogonalization (:class:`~lossviz.hessian.krylov.Krylov`) for the top-k /
most negative eigenpairs; power iteration with deflation as the second method (PyHessian's); both
on any symmetric operator, normally a :class:`~lossviz.hessian.operator.HessianOperator`. Per-layer
eigenvalues are those of the diagonal blocks ``H_gg`` (:func:`layer_eigenvalues`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from lossviz.hessian.krylov import Krylov, start_vector
from lossviz.hessian.operator import HessianOperator, as_groups, hessian_operator
from lossviz.losses import LossFn

__all__ = [
    "EigenResult",
    "eigenvalue_ratio",
    "eigenvector_directions",
    "extreme_eigenvalues",
    "lanczos",
    "layer_eigenvalues",
    "min_eigenvalue",
    "power_iteration",
    "top_eigenpairs",
]

MatVec = Callable[[torch.Tensor], torch.Tensor]


# ------------------------------------------------------------------------------------ results
@dataclass
class EigenResult:
    """Eigenpairs of the Hessian: ``eigenvalues`` (k,) float64, ``eigenvectors`` (k, D) unit rows
    (``H v_i ≈ λ_i v_i``; sign: largest-magnitude entry positive), ``residuals`` ``‖H v − λ v‖``,
    ``n_matvecs`` (Hessian-vector products used), ``method``, ``converged``."""

    eigenvalues: np.ndarray
    eigenvectors: torch.Tensor
    residuals: np.ndarray
    n_matvecs: int
    method: str
    converged: bool


# ------------------------------------------------------------------------------------ solvers
def _fix_sign(vectors: torch.Tensor) -> torch.Tensor:
    """Make each row's entry of largest magnitude positive (a deterministic sign)."""
    if vectors.numel() == 0:
        return vectors
    idx = vectors.abs().argmax(dim=1)
    s = torch.sign(vectors[torch.arange(vectors.shape[0]), idx])
    s[s == 0] = 1
    return vectors * s[:, None]


def _select(theta: np.ndarray, k: int, which: str) -> np.ndarray:
    """Indices of the wanted Ritz values: 'LA' largest first, 'SA' smallest first, 'BE' both."""
    order = np.argsort(theta)
    if which == "LA":
        return order[::-1][:k]
    if which == "SA":
        return order[:k]
    lo, hi = order[:k], order[::-1][:k]
    return np.unique(np.concatenate([hi, lo]))[::-1] if len(theta) > 1 else order


def lanczos(
    matvec: MatVec,
    dim: int,
    k: int = 1,
    *,
    which: str = "LA",
    tol: float = 1e-6,
    max_iter: int = 200,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: Any = "cpu",
) -> EigenResult:
    """Lanczos with full reorthogonalization for a symmetric operator of dimension ``dim``.

    Builds an orthonormal Krylov basis ``Q`` (kept, (m, dim)) with ``T = Qᵀ H Q`` tridiagonal;
    the Ritz pairs ``(θ_i, Q s_i)`` of ``T`` approximate eigenpairs with residual
    ``‖H y − θ y‖ = β_m |s_{m,i}|``. Stops when the wanted pairs' residuals are below
    ``tol · max|θ|``; on an invariant subspace (β ≈ 0) it continues from a random vector
    orthogonal to ``Q``, so the whole spectrum is reachable when ``max_iter ≥ dim``.
    ``which``: ``"LA"`` (k largest, descending), ``"SA"`` (k smallest, ascending), ``"BE"``
    (k at both ends, descending). Like any single-vector Krylov method it sees one copy of an
    exactly repeated eigenvalue per Krylov block (the whole spectrum is exact once ``m = dim``).
    """
    if which not in ("LA", "SA", "BE"):
        raise ValueError(f"which={which!r}: use 'LA', 'SA' or 'BE'")
    if not 1 <= k <= dim:
        raise ValueError(f"k={k} must be between 1 and the dimension {dim}")
    krylov = Krylov(matvec, start_vector(dim, seed, dtype, device), max(max_iter, k + 1), seed)
    converged = False
    while True:
        krylov.step()
        j = krylov.size
        theta, s = krylov.ritz()
        scale = max(float(np.abs(theta).max()), np.finfo(float).tiny)
        idx = _select(theta, min(k, j), which)
        res = krylov.beta * np.abs(s[-1, idx])
        enough = len(idx) >= (min(2 * k, j) if which == "BE" else k)
        if enough and np.all(res <= tol * scale):
            converged = True
            break
        if j == krylov.max_steps:
            break
    vecs = krylov.vectors(s[:, idx])
    order = np.argsort(theta[idx])
    order = order if which == "SA" else order[::-1]
    if not converged:
        warnings.warn(
            f"Lanczos did not converge in {j} iterations (residuals {res[order]}); "
            "raise max_iter or tol",
            RuntimeWarning,
            stacklevel=2,
        )
    return EigenResult(
        eigenvalues=np.asarray(theta[idx][order], dtype=np.float64),
        eigenvectors=_fix_sign(vecs[torch.as_tensor(order.copy())]),
        residuals=np.asarray(res[order], dtype=np.float64),
        n_matvecs=j,
        method="lanczos",
        converged=converged,
    )


def _power_one(
    op: MatVec, deflate: torch.Tensor | None, v: torch.Tensor, tol: float, max_iter: int, scale: float
) -> tuple[float, torch.Tensor, float, int, bool]:
    """Power iteration for the dominant eigenpair of ``op`` restricted to the complement of the
    rows of ``deflate``: returns (λ, v, residual, products, converged)."""

    def project(x: torch.Tensor) -> torch.Tensor:
        if deflate is None or deflate.shape[0] == 0:
            return x
        for _ in range(2):
            x = x - deflate.T @ (deflate @ x)
        return x

    v = project(v)
    v = v / v.norm()
    lam, res, n = 0.0, math.inf, 0
    for _ in range(max_iter):
        w = project(op(v))
        n += 1
        lam = float(torch.dot(v, w))
        res = float((w - lam * v).norm())
        if res <= tol * max(abs(lam), scale):
            return lam, v, res, n, True
        nw = float(w.norm())
        if nw == 0.0:  # v is in the null space: λ = 0 exactly
            return 0.0, v, 0.0, n, True
        v = w / nw
    return lam, v, res, n, False


def power_iteration(
    matvec: MatVec,
    dim: int,
    k: int = 1,
    *,
    tol: float = 1e-6,
    max_iter: int = 1000,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: Any = "cpu",
) -> EigenResult:
    """The k algebraically largest eigenpairs by power iteration with (projection) deflation.

    Each pair is the dominant one of ``H`` on the orthogonal complement of the pairs found. If the
    dominant eigenvalue there is negative, every eigenvalue left has magnitude ≤ its magnitude
    ``ρ``, so the iteration continues on the shifted ``H + ρ I`` (positive semi-definite there),
    whose dominant pairs are ``H``'s algebraically largest. Convergence: ``‖H v − λ v‖ ≤ tol·|λ|``.
    """
    if not 1 <= k <= dim:
        raise ValueError(f"k={k} must be between 1 and the dimension {dim}")
    found: list[torch.Tensor] = []
    values: list[float] = []
    residuals: list[float] = []
    shift = 0.0
    scale = 0.0
    n_mv = 0
    ok = True
    gen_seed = int(seed)
    while len(found) < k:
        deflate = torch.stack(found) if found else None
        op = matvec if shift == 0.0 else (lambda x, s=shift: matvec(x) + s * x)
        v0 = start_vector(dim, gen_seed + len(found) + (1000 if shift else 0), dtype, device)
        lam, v, res, n, conv = _power_one(op, deflate, v0, tol, max_iter, scale)
        n_mv += n
        if lam < 0 and shift == 0.0:
            shift = -lam  # the spectral radius of what is left
            scale = max(scale, shift)
            continue
        ok &= conv
        scale = max(scale, abs(lam))
        found.append(v)
        values.append(lam - shift)
        residuals.append(res)
        if len(found) == dim:
            break
    if not ok:
        warnings.warn(
            f"power iteration did not converge in {max_iter} iterations (residuals {residuals}); "
            "raise max_iter or use method='lanczos'",
            RuntimeWarning,
            stacklevel=2,
        )
    order = np.argsort(values)[::-1]
    vecs = torch.stack(found)[torch.as_tensor(order.copy())]
    return EigenResult(
        eigenvalues=np.asarray(values, dtype=np.float64)[order],
        eigenvectors=_fix_sign(vecs),
        residuals=np.asarray(residuals, dtype=np.float64)[order],
        n_matvecs=n_mv,
        method="power",
        converged=ok,
    )


# ------------------------------------------------------------------------------------ public API
def top_eigenpairs(
    model: nn.Module | HessianOperator,
    data: Any = None,
    k: int = 2,
    loss: str | LossFn = "cross_entropy",
    *,
    method: str = "lanczos",
    tol: float = 1e-4,
    max_iter: int | None = None,
    seed: int = 0,
    **operator_kw: Any,
) -> EigenResult:
    """The k algebraically largest Hessian eigenpairs (descending) of the mean loss.

    ``method``: ``"lanczos"`` (full reorthogonalization, ``max_iter`` default 100) or ``"power"``
    (with deflation, ``max_iter`` default 1000 per pair). ``operator_kw`` (``params`` (the point;
    default the model's weights), ``batch_size``, ``dtype``, ``device``, ``forward``) go to
    :class:`HessianOperator`; ``model`` may also be one (then ``data`` and those are ignored).
    """
    op = hessian_operator(model, data, loss, **operator_kw)
    if method == "lanczos":
        return lanczos(op, op.dim, k, which="LA", tol=tol, max_iter=max_iter or 100, seed=seed,
                       dtype=op.dtype, device=op.device)
    if method == "power":
        return power_iteration(op, op.dim, k, tol=tol, max_iter=max_iter or 1000, seed=seed,
                               dtype=op.dtype, device=op.device)
    raise ValueError(f"method={method!r}: use 'lanczos' or 'power'")


def min_eigenvalue(
    model: nn.Module | HessianOperator,
    data: Any = None,
    loss: str | LossFn = "cross_entropy",
    *,
    method: str = "lanczos",
    tol: float = 1e-4,
    max_iter: int | None = None,
    seed: int = 0,
    **operator_kw: Any,
) -> EigenResult:
    """The algebraically smallest (most negative) eigenpair, as an :class:`EigenResult` with k = 1.

    ``"lanczos"``: the smallest Ritz pair. ``"power"``: λ_max by power iteration, then power
    iteration on ``H − λ_max I`` (negative semi-definite), whose dominant eigenvalue is
    ``λ_min − λ_max``. ``operator_kw`` as for :func:`top_eigenpairs`.
    """
    op = hessian_operator(model, data, loss, **operator_kw)
    if method == "lanczos":
        return lanczos(op, op.dim, 1, which="SA", tol=tol, max_iter=max_iter or 100, seed=seed,
                       dtype=op.dtype, device=op.device)
    if method != "power":
        raise ValueError(f"method={method!r}: use 'lanczos' or 'power'")
    it = max_iter or 1000
    top = power_iteration(op, op.dim, 1, tol=tol, max_iter=it, seed=seed, dtype=op.dtype, device=op.device)
    lam_max = float(top.eigenvalues[0])
    # H − λ_max I is negative semi-definite: its dominant eigenpair is H's smallest, shifted
    v0 = start_vector(op.dim, seed + 7, op.dtype, op.device)
    mu, v, res, n, conv = _power_one(lambda x: op(x) - lam_max * x, None, v0, tol, it, abs(lam_max))
    if not conv:
        warnings.warn(
            f"power iteration for the smallest eigenvalue did not converge in {it} iterations "
            f"(residual {res:.3g}); raise max_iter or use method='lanczos'",
            RuntimeWarning,
            stacklevel=2,
        )
    return EigenResult(
        eigenvalues=np.array([mu + lam_max]),
        eigenvectors=_fix_sign(v[None]),
        residuals=np.array([res]),
        n_matvecs=top.n_matvecs + n,
        method="power",
        converged=top.converged and conv,
    )


def extreme_eigenvalues(
    model: nn.Module | HessianOperator,
    data: Any = None,
    loss: str | LossFn = "cross_entropy",
    *,
    tol: float = 1e-4,
    max_iter: int = 100,
    seed: int = 0,
    **operator_kw: Any,
) -> tuple[float, float]:
    """``(λ_min, λ_max)`` from one Lanczos run (both ends of the spectrum converge together)."""
    op = hessian_operator(model, data, loss, **operator_kw)
    r = lanczos(op, op.dim, 1, which="BE", tol=tol, max_iter=max_iter, seed=seed, dtype=op.dtype, device=op.device)
    return float(r.eigenvalues[-1]), float(r.eigenvalues[0])


def eigenvalue_ratio(model: nn.Module | HessianOperator, data: Any = None, loss: str | LossFn = "cross_entropy",
                     **kw: Any) -> float:
    """``|λ_min / λ_max|`` (Li et al.'s convexity measure for maps; 0 where the Hessian is PSD
    up to noise, NaN when λ_max = 0)."""
    lo, hi = extreme_eigenvalues(model, data, loss, **kw)
    return abs(lo / hi) if hi != 0 else float("nan")


def eigenvector_directions(
    model: nn.Module | HessianOperator,
    data: Any = None,
    k: int = 2,
    loss: str | LossFn = "cross_entropy",
    **kw: Any,
) -> list[torch.Tensor]:
    """The top-k Hessian eigenvectors as flat unit direction vectors of the model's ``"weights"``
    :class:`~lossviz.params.ParamSpace` (in the dtype of the model's parameters), for surfaces.
    Keyword arguments go to :func:`top_eigenpairs`."""
    r = top_eigenpairs(model, data, k, loss, **kw)
    if isinstance(model, nn.Module):
        p = next(iter(model.parameters()))
        dev, out_dtype = p.device, p.dtype
    else:
        dev, out_dtype = r.eigenvectors.device, r.eigenvectors.dtype
    return [v.detach().to(dev, out_dtype).clone() for v in r.eigenvectors]


def layer_eigenvalues(
    model: nn.Module | HessianOperator,
    data: Any = None,
    k: int = 1,
    loss: str | LossFn = "cross_entropy",
    *,
    groups: Mapping[str, Sequence[str]] | None = None,
    tol: float = 1e-4,
    max_iter: int = 100,
    seed: int = 0,
    **operator_kw: Any,
) -> dict[str, EigenResult]:
    """The top-k eigenpairs of each diagonal block ``H_gg`` (Lanczos), one per parameter group.

    ``groups``: ``{name: [parameter names]}``, default one per layer
    (:func:`~lossviz.hessian.operator.parameter_groups`); a group with fewer than k entries gives
    all of its eigenpairs. The blocks share one operator (one kept gradient graph).
    """
    op = hessian_operator(model, data, loss, **operator_kw)
    out: dict[str, EigenResult] = {}
    for name, names in as_groups(op.model, groups).items():
        block = op.block(names)
        out[name] = lanczos(block, block.dim, min(k, block.dim), which="LA", tol=tol, max_iter=max_iter,
                            seed=seed, dtype=op.dtype, device=op.device)
    return out
