"""Curvature of the loss at a point: Hessian-vector products, extreme eigenpairs and the trace.

The loss is the mean over the N evaluation samples, ``L(θ) = (1/N) Σ_b n_b ℓ_b(θ)`` with ``ℓ_b``
the batch-mean loss of data batch b, so its Hessian-vector product is the weighted sum of the
batches' products::

    H v = Σ_b (n_b / N) ∇²ℓ_b(θ) v,      ∇²ℓ_b(θ) v = d/dε ∇ℓ_b(θ + ε v) |_{ε=0}

computed forward-over-reverse (``torch.func.jvp`` of ``torch.func.grad``) on the model called
functionally (``torch.func.functional_call``) in ``eval()`` mode, BatchNorm statistics and other
buffers held fixed. θ is a point of the ``"weights"`` :class:`~lossviz.params.ParamSpace`
(every parameter, in ``named_parameters()`` order).

On top of the product: Lanczos with full reorthogonalization (default) or power iteration with
deflation for the top-k / most negative eigenpairs, and Hutchinson's trace estimator
``tr H ≈ (1/m) Σ_j z_jᵀ H z_j`` with Rademacher vectors ``z_j`` (or exactly, over the basis).
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, jvp

from lossviz.data import as_eval_data, eval_mode
from lossviz.losses import LossFn, resolve_loss
from lossviz.params import ParamSpace
from lossviz.validation import Interval, check

__all__ = [
    "EigenResult",
    "HessianOperator",
    "TraceResult",
    "eigenvalue_ratio",
    "eigenvector_directions",
    "extreme_eigenvalues",
    "hessian_operator",
    "hvp",
    "lanczos",
    "min_eigenvalue",
    "power_iteration",
    "top_eigenpairs",
    "trace",
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


@dataclass
class TraceResult:
    """Trace estimate ``mean`` with its standard error ``stderr`` (0 for the exact trace) and the
    per-probe values ``samples`` (``z_jᵀ H z_j``)."""

    mean: float
    stderr: float
    samples: np.ndarray = field(repr=False)
    method: str = "hutchinson"


# ------------------------------------------------------------------------------------ products
def hvp(loss_fn: Callable[[torch.Tensor], torch.Tensor], params: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``∇²f(params) v`` for a scalar function ``f`` of a flat vector, forward-over-reverse."""
    if params.shape != v.shape:
        raise ValueError(f"v has shape {tuple(v.shape)} but the point has {tuple(params.shape)}")
    return jvp(grad(loss_fn), (params,), (v.to(params.dtype),))[1]


def _eval_copy(model: nn.Module) -> nn.Module:
    """A private copy of the module in eval() mode (the caller's module keeps its mode, so a
    training thread using it is never disturbed); the module itself if it cannot be copied."""
    try:
        clone = copy.deepcopy(model)
    except Exception:  # noqa: BLE001 - some modules refuse deepcopy: switch modes per call instead
        return model
    return clone.eval()


class HessianOperator:
    """The Hessian of the mean loss at a point, as a symmetric linear operator ``v ↦ H v``.

    Parameters: ``model``, ``data`` (anything :func:`lossviz.data.as_eval_data` takes), ``loss``
    (a name of :data:`lossviz.losses.LOSS_NAMES`, ``"mse"`` on class labels being the reference's
    softmax-MSE, or ``callable(outputs, targets) -> batch mean``), ``params`` (a flat point of the "weights"
    space; default the model's own weights), ``batch_size`` (samples per product; None = all),
    ``dtype`` (float32 default, or float64: parameters, buffers and float inputs are cast),
    ``device``. The model itself is never modified (its tensors are replaced in the functional
    call only).
    """

    def __init__(
        self,
        model: nn.Module,
        data: Any,
        loss: str | LossFn = "cross_entropy",
        *,
        params: torch.Tensor | None = None,
        batch_size: int | None = 256,
        dtype: torch.dtype = torch.float32,
        device: Any = None,
    ):
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype={dtype}: use torch.float32 or torch.float64")
        check("batch_size", batch_size, Interval(int, 1, None), allow_none=True)
        self.model = _eval_copy(model)
        self.space = ParamSpace(model, "weights")
        if self.space.numel == 0:
            raise ValueError("the model has no parameters: there is no Hessian to compute")
        first = next(iter(model.parameters()))
        self.device = torch.device(device) if device is not None else first.device
        self.dtype = dtype
        evaluation = as_eval_data(data).to(self.device, dtype)
        self.loss_fn = resolve_loss(loss, evaluation.targets).mean
        x, y = evaluation.inputs, evaluation.targets
        self.n_samples = len(evaluation)
        bs = self.n_samples if batch_size is None else min(batch_size, self.n_samples)
        self.batches = [(x[i : i + bs], y[i : i + bs]) for i in range(0, self.n_samples, bs)]
        if params is None:
            center = self.space.vector(model)
        else:
            center = torch.as_tensor(params).detach().reshape(-1)
            if center.shape[0] != self.space.numel:
                raise ValueError(
                    f"params has {center.shape[0]} entries but the model's weights space has "
                    f"{self.space.numel}; give a point of ParamSpace(model, 'weights')"
                )
        self.center = center.to(self.device, dtype)
        self.buffers = {
            name: (b.detach().to(self.device, dtype) if b.is_floating_point() else b.detach().to(self.device))
            for name, b in model.named_buffers()
        }
        self.n_matvecs = 0

    @property
    def dim(self) -> int:
        return self.space.numel

    def _batch_loss(self, x: torch.Tensor, y: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        def f(theta: torch.Tensor) -> torch.Tensor:
            out = functional_call(self.model, {**self.space.unflatten(theta), **self.buffers}, (x,))
            return self.loss_fn(out, y)

        return f

    def loss(self, theta: torch.Tensor | None = None) -> float:
        """The mean loss at ``theta`` (default: the operator's point)."""
        theta = self.center if theta is None else theta.to(self.device, self.dtype)
        total = 0.0
        with torch.no_grad(), eval_mode(self.model):
            for x, y in self.batches:
                total += float(self._batch_loss(x, y)(theta)) * x.shape[0]
        return total / self.n_samples

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` summed over data batches with weights ``n_b / N``."""
        v = v.to(self.device, self.dtype)
        if v.shape != self.center.shape:
            raise ValueError(f"v has shape {tuple(v.shape)}, the space has ({self.dim},)")
        out = torch.zeros_like(self.center)
        with eval_mode(self.model):
            for x, y in self.batches:
                out.add_(hvp(self._batch_loss(x, y), self.center, v), alpha=x.shape[0] / self.n_samples)
        self.n_matvecs += 1
        return out

    __call__ = matvec

    def dense(self) -> torch.Tensor:
        """The full (D, D) Hessian column by column (D products: for tiny models and tests)."""
        eye = torch.eye(self.dim, dtype=self.dtype, device=self.device)
        return torch.stack([self.matvec(e) for e in eye], dim=1)


def hessian_operator(model: nn.Module, data: Any, loss: str | LossFn = "cross_entropy", **kw: Any) -> HessianOperator:
    """Shorthand for :class:`HessianOperator`."""
    return HessianOperator(model, data, loss, **kw)


# ------------------------------------------------------------------------------------ solvers
def _start_vector(dim: int, seed: int, dtype, device) -> torch.Tensor:
    g = torch.Generator().manual_seed(int(seed))
    v = torch.randn(dim, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
    return v / v.norm()


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
    m_max = min(dim, max(max_iter, k + 1))
    gen = torch.Generator().manual_seed(int(seed) + 1)
    q = _start_vector(dim, seed, dtype, device)
    basis = torch.empty((min(m_max, 32), dim), dtype=dtype, device=device)  # grown on demand
    alphas: list[float] = []
    betas: list[float] = []
    n_mv = 0
    theta = s = None
    converged = False
    idx = np.arange(0)
    res = np.zeros(0)
    for j in range(m_max):
        if j == basis.shape[0]:
            basis = torch.cat([basis, torch.empty((min(m_max - j, j), dim), dtype=dtype, device=device)])
        basis[j] = q
        w = matvec(q)
        n_mv += 1
        alpha = float(torch.dot(w, q))
        alphas.append(alpha)
        qs = basis[: j + 1]
        for _ in range(2):  # full reorthogonalization, twice is enough
            w = w - qs.T @ (qs @ w)
        beta = float(w.norm())
        t = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
        theta, s = np.linalg.eigh(t)
        scale = max(float(np.abs(theta).max()), np.finfo(float).tiny)
        idx = _select(theta, min(k, j + 1), which)
        res = beta * np.abs(s[-1, idx])
        enough = len(idx) >= (min(2 * k, j + 1) if which == "BE" else k)
        if enough and np.all(res <= tol * scale):
            converged = True
            break
        if j + 1 == m_max:
            break
        if beta <= 1e-10 * scale:  # invariant subspace: restart orthogonally
            for _ in range(5):
                w = torch.randn(dim, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
                for _ in range(2):
                    w = w - qs.T @ (qs @ w)
                if float(w.norm()) > 1e-8:
                    break
            beta_next, q = 0.0, w / w.norm()
        else:
            beta_next, q = beta, w / beta
        betas.append(beta_next)
    m = len(alphas)
    assert theta is not None, "Lanczos ran at least one step"
    assert s is not None
    s_t = torch.as_tensor(s[:, idx], dtype=dtype, device=device)
    vecs = (basis[:m].T @ s_t).T
    vecs = vecs / vecs.norm(dim=1, keepdim=True)
    order = np.argsort(theta[idx])
    order = order if which == "SA" else order[::-1]
    if not converged:
        warnings.warn(
            f"Lanczos did not converge in {m} iterations (residuals {res[order]}); "
            "raise max_iter or tol",
            RuntimeWarning,
            stacklevel=2,
        )
    return EigenResult(
        eigenvalues=np.asarray(theta[idx][order], dtype=np.float64),
        eigenvectors=_fix_sign(vecs[torch.as_tensor(order.copy())]),
        residuals=np.asarray(res[order], dtype=np.float64),
        n_matvecs=n_mv,
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
        v0 = _start_vector(dim, gen_seed + len(found) + (1000 if shift else 0), dtype, device)
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
def _operator(model: nn.Module, data: Any, loss: Any, params, batch_size, dtype, device) -> HessianOperator:
    if isinstance(model, HessianOperator):
        return model
    return HessianOperator(model, data, loss, params=params, batch_size=batch_size, dtype=dtype, device=device)


def top_eigenpairs(
    model: nn.Module,
    data: Any,
    k: int = 2,
    loss: str | LossFn = "cross_entropy",
    *,
    method: str = "lanczos",
    tol: float = 1e-4,
    max_iter: int | None = None,
    seed: int = 0,
    params: torch.Tensor | None = None,
    batch_size: int | None = 256,
    dtype: torch.dtype = torch.float32,
    device: Any = None,
) -> EigenResult:
    """The k algebraically largest Hessian eigenpairs (descending) of the mean loss at ``params``
    (default: the model's weights). ``method``: ``"lanczos"`` (full reorthogonalization,
    ``max_iter`` default 100) or ``"power"`` (with deflation, ``max_iter`` default 1000 per pair).
    ``model`` may also be a :class:`HessianOperator` (then ``data`` and the rest are ignored).
    """
    op = _operator(model, data, loss, params, batch_size, dtype, device)
    if method == "lanczos":
        return lanczos(op, op.dim, k, which="LA", tol=tol, max_iter=max_iter or 100, seed=seed,
                       dtype=op.dtype, device=op.device)
    if method == "power":
        return power_iteration(op, op.dim, k, tol=tol, max_iter=max_iter or 1000, seed=seed,
                               dtype=op.dtype, device=op.device)
    raise ValueError(f"method={method!r}: use 'lanczos' or 'power'")


def min_eigenvalue(
    model: nn.Module,
    data: Any,
    loss: str | LossFn = "cross_entropy",
    *,
    method: str = "lanczos",
    tol: float = 1e-4,
    max_iter: int | None = None,
    seed: int = 0,
    params: torch.Tensor | None = None,
    batch_size: int | None = 256,
    dtype: torch.dtype = torch.float32,
    device: Any = None,
) -> EigenResult:
    """The algebraically smallest (most negative) eigenpair, as an :class:`EigenResult` with k = 1.

    ``"lanczos"``: the smallest Ritz pair. ``"power"``: λ_max by power iteration, then power
    iteration on ``H − λ_max I`` (negative semi-definite), whose dominant eigenvalue is
    ``λ_min − λ_max``.
    """
    op = _operator(model, data, loss, params, batch_size, dtype, device)
    if method == "lanczos":
        return lanczos(op, op.dim, 1, which="SA", tol=tol, max_iter=max_iter or 100, seed=seed,
                       dtype=op.dtype, device=op.device)
    if method != "power":
        raise ValueError(f"method={method!r}: use 'lanczos' or 'power'")
    it = max_iter or 1000
    top = power_iteration(op, op.dim, 1, tol=tol, max_iter=it, seed=seed, dtype=op.dtype, device=op.device)
    lam_max = float(top.eigenvalues[0])
    # H − λ_max I is negative semi-definite: its dominant eigenpair is H's smallest, shifted
    v0 = _start_vector(op.dim, seed + 7, op.dtype, op.device)
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
    model: nn.Module, data: Any, loss: str | LossFn = "cross_entropy", **kw: Any
) -> tuple[float, float]:
    """``(λ_min, λ_max)`` from one Lanczos run (both ends of the spectrum converge together)."""
    op = _operator(model, data, loss, kw.pop("params", None), kw.pop("batch_size", 256),
                   kw.pop("dtype", torch.float32), kw.pop("device", None))
    r = lanczos(op, op.dim, 1, which="BE", tol=kw.pop("tol", 1e-4), max_iter=kw.pop("max_iter", 100),
                seed=kw.pop("seed", 0), dtype=op.dtype, device=op.device)
    if kw:
        raise TypeError(f"unexpected arguments {sorted(kw)}")
    return float(r.eigenvalues[-1]), float(r.eigenvalues[0])


def eigenvalue_ratio(model: nn.Module, data: Any, loss: str | LossFn = "cross_entropy", **kw: Any) -> float:
    """``|λ_min / λ_max|`` (Li et al.'s convexity measure for maps; 0 where the Hessian is PSD
    up to noise, NaN when λ_max = 0)."""
    lo, hi = extreme_eigenvalues(model, data, loss, **kw)
    return abs(lo / hi) if hi != 0 else float("nan")


def trace(
    model: nn.Module,
    data: Any,
    n_samples: int = 100,
    seed: int = 0,
    loss: str | LossFn = "cross_entropy",
    *,
    method: str = "hutchinson",
    params: torch.Tensor | None = None,
    batch_size: int | None = 256,
    dtype: torch.dtype = torch.float32,
    device: Any = None,
) -> TraceResult:
    """Hessian trace. ``"hutchinson"``: mean of ``zᵀ H z`` over ``n_samples`` Rademacher vectors
    (``seed``), with standard error ``std/√n_samples``; ``"exact"``: ``Σ_i e_iᵀ H e_i`` over the
    basis (D products, for small models)."""
    op = _operator(model, data, loss, params, batch_size, dtype, device)
    if method == "exact":
        eye = torch.eye(op.dim, dtype=op.dtype, device=op.device)
        diag = np.array([float(op(e)[i]) for i, e in enumerate(eye)])
        return TraceResult(float(diag.sum()), 0.0, diag, "exact")
    if method != "hutchinson":
        raise ValueError(f"method={method!r}: use 'hutchinson' or 'exact'")
    if n_samples < 2:
        raise ValueError(f"n_samples must be at least 2 for a standard error, got {n_samples}")
    g = torch.Generator().manual_seed(int(seed))
    vals = np.empty(n_samples)
    for j in range(n_samples):
        z = (torch.randint(0, 2, (op.dim,), generator=g) * 2 - 1).to(device=op.device, dtype=op.dtype)
        vals[j] = float(torch.dot(z, op(z)))
    return TraceResult(float(vals.mean()), float(vals.std(ddof=1) / math.sqrt(n_samples)), vals, "hutchinson")


def eigenvector_directions(
    model: nn.Module,
    data: Any,
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
