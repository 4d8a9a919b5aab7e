"""The Hessian's eigenvalue density by stochastic Lanczos quadrature (SLQ; PyHessian's ``density``).

For a unit probe ``v = z/√D`` (z Rademacher), m Lanczos steps give the tridiagonal ``T`` with
eigenpairs ``(θ_i, s_i)``; the nodes ``θ_i`` with weights ``τ_i = s_{1,i}²`` are the m-point Gauss
quadrature of the spectral measure ``μ_v = Σ_k (u_kᵀ v)² δ(λ − λ_k)``, whose mean over probes is the
normalized spectral density ``(1/D) Σ_k δ(λ − λ_k)``. So ``Σ_i τ_i θ_i^p`` is ``vᵀ H^p v`` for
``p < 2m`` (``E = tr(H^p)/D``), and with ``m = D`` the nodes are H's eigenvalues.
The smoothed density is ``φ(t) = (1/n_v) Σ_runs Σ_i τ_i N(t; θ_i, σ²)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from lossviz.hessian.krylov import Krylov, rademacher
from lossviz.hessian.operator import HessianOperator, hessian_operator
from lossviz.losses import LossFn
from lossviz.validation import Interval, check

__all__ = ["Density", "density"]


@dataclass
class Density:
    """The quadrature of each SLQ run: ``nodes`` and ``weights``, ``(n_runs, m)`` (each row's weights
    sum to 1), and ``dim`` the operator's dimension D."""

    nodes: np.ndarray
    weights: np.ndarray
    dim: int
    n_matvecs: int

    def moment(self, p: int) -> float:
        """``tr(H^p) / D`` estimated (exact per run for ``p < 2m``; averaged over runs)."""
        return float(np.mean(np.sum(self.weights * self.nodes**p, axis=1)))

    @property
    def trace(self) -> float:
        """``tr H ≈ D · mean(Σ_i τ_i θ_i)`` (a Hutchinson estimate with the runs' probes)."""
        return self.dim * self.moment(1)

    def curve(self, grid: Any = None, sigma: float | None = None, n: int = 512) -> tuple[np.ndarray, np.ndarray]:
        """``(t, φ(t))``: the density smoothed with Gaussians of width ``sigma`` (default 1% of
        the nodes' range) on ``grid`` (default ``n`` points over the nodes' range ± 3 sigma); it
        integrates to 1 over a grid that covers the nodes."""
        lo, hi = float(self.nodes.min()), float(self.nodes.max())
        sigma = float(sigma) if sigma is not None else max(0.01 * (hi - lo), 1e-12 * max(abs(lo), abs(hi), 1.0))
        t = np.linspace(lo - 3 * sigma, hi + 3 * sigma, n) if grid is None else np.asarray(grid, dtype=np.float64)
        z = (t[:, None, None] - self.nodes[None]) / sigma
        norm = len(self.nodes) * sigma * np.sqrt(2 * np.pi)
        phi = (self.weights[None] * np.exp(-0.5 * z**2)).sum(axis=(1, 2)) / norm
        return t, phi


def density(
    model: nn.Module | HessianOperator,
    data: Any = None,
    loss: str | LossFn = "cross_entropy",
    *,
    n_iter: int = 100,
    n_runs: int = 1,
    seed: int = 0,
    **operator_kw: Any,
) -> Density:
    """SLQ: ``n_runs`` Lanczos runs of ``n_iter`` steps (at most D) from Rademacher probes
    (``seed``), as PyHessian's ``density(iter, n_v)`` but with full reorthogonalization.
    ``operator_kw`` go to :class:`HessianOperator`."""
    n_iter = check("n_iter", n_iter, Interval(int, 1, None, whole_floats=True))
    n_runs = check("n_runs", n_runs, Interval(int, 1, None, whole_floats=True))
    op = hessian_operator(model, data, loss, **operator_kw)
    gen = torch.Generator().manual_seed(int(seed))
    m = min(n_iter, op.dim)
    nodes, weights = np.empty((n_runs, m)), np.empty((n_runs, m))
    for r in range(n_runs):
        z = rademacher(op.dim, gen, op.dtype, op.device)
        krylov = Krylov(op, z / z.norm(), m, seed + r)
        for _ in range(m):
            krylov.step()
        theta, s = krylov.ritz()
        nodes[r], weights[r] = theta, s[0] ** 2
    return Density(nodes, weights, op.dim, n_runs * m)
