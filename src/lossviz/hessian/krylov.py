"""Lanczos tridiagonalization with full reorthogonalization, for a symmetric operator.

Shared by the eigensolver (:func:`lossviz.hessian.eigen.lanczos`) and the spectral density
(:func:`lossviz.hessian.density.density`): after m steps from the unit vector ``q₁`` the basis
``Q = [q₁ … q_m]`` is orthonormal and ``T = Qᵀ H Q`` is tridiagonal (``alphas`` on the diagonal,
``betas`` beside it), so the Ritz pairs of ``T`` approximate H's eigenpairs and ``e₁ᵀ f(T) e₁``
approximates ``q₁ᵀ f(H) q₁`` (Gauss quadrature, exact for polynomials of degree < 2m).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

__all__ = ["Krylov", "rademacher", "start_vector"]

MatVec = Callable[[torch.Tensor], torch.Tensor]


def start_vector(dim: int, seed: int, dtype: torch.dtype, device: Any) -> torch.Tensor:
    """A unit Gaussian vector drawn from ``seed`` (the same on every device)."""
    g = torch.Generator().manual_seed(int(seed))
    v = torch.randn(dim, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
    return v / v.norm()


def rademacher(dim: int, generator: torch.Generator, dtype: torch.dtype, device: Any) -> torch.Tensor:
    """A vector of independent ±1 entries."""
    return (torch.randint(0, 2, (dim,), generator=generator) * 2 - 1).to(device=device, dtype=dtype)


class Krylov:
    """A growing orthonormal Krylov basis of ``matvec`` from ``q0`` (unit), one :meth:`step` at a time.

    On an invariant subspace (β ≈ 0) the next vector is a random one orthogonal to the basis
    (β recorded as 0), so ``dim`` steps span the whole space.
    """

    def __init__(self, matvec: MatVec, q0: torch.Tensor, max_steps: int, seed: int = 0):
        self.matvec = matvec
        self.dim = int(q0.numel())
        self.max_steps = min(int(max_steps), self.dim)
        self.dtype, self.device = q0.dtype, q0.device
        self.basis = torch.empty((min(self.max_steps, 32), self.dim), dtype=self.dtype, device=self.device)
        self.alphas: list[float] = []
        self.betas: list[float] = []  # betas[j] couples q_{j+1} and q_{j+2}
        self.beta = 0.0  # the norm of the residual after the last step
        self._next = q0
        self._gen = torch.Generator().manual_seed(int(seed) + 1)

    @property
    def size(self) -> int:
        return len(self.alphas)

    def _orthogonalize(self, w: torch.Tensor) -> torch.Tensor:
        qs = self.basis[: self.size]
        for _ in range(2):  # full reorthogonalization, twice is enough
            w = w - qs.T @ (qs @ w)
        return w

    def step(self) -> None:
        """Add the next basis vector q and its column of T (α = qᵀHq, β = ‖residual‖)."""
        j = self.size
        if j == self.basis.shape[0]:
            grow = min(self.max_steps - j, j)
            self.basis = torch.cat([self.basis, torch.empty((grow, self.dim), dtype=self.dtype, device=self.device)])
        if j > 0:
            self.betas.append(self.beta)
        q = self._next
        self.basis[j] = q
        w = self.matvec(q)
        self.alphas.append(float(torch.dot(w, q)))
        w = self._orthogonalize(w)
        self.beta = float(w.norm())
        if j + 1 == self.max_steps:
            return
        scale = max(abs(a) for a in self.alphas) + max(self.betas, default=0.0)
        if self.beta <= 1e-10 * max(scale, np.finfo(float).tiny):  # invariant subspace: restart orthogonally
            for _ in range(5):
                w = self._orthogonalize(torch.randn(self.dim, generator=self._gen, dtype=torch.float64)
                                        .to(device=self.device, dtype=self.dtype))
                if float(w.norm()) > 1e-8:
                    break
            self.beta, self._next = 0.0, w / w.norm()
        else:
            self._next = w / self.beta

    def ritz(self) -> tuple[np.ndarray, np.ndarray]:
        """Eigenvalues (ascending) and eigenvectors (columns) of T."""
        t = np.diag(self.alphas) + np.diag(self.betas, 1) + np.diag(self.betas, -1)
        return np.linalg.eigh(t)

    def vectors(self, s: np.ndarray) -> torch.Tensor:
        """Ritz vectors ``(Q s_i)ᵀ`` (rows, unit) for the columns ``s`` of T's eigenvectors."""
        s_t = torch.as_tensor(s, dtype=self.dtype, device=self.device)
        vecs = (self.basis[: self.size].T @ s_t).T
        return vecs / vecs.norm(dim=1, keepdim=True)
