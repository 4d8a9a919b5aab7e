"""Curvature of the loss: Hessian-vector products, extreme eigenpairs, trace, spectral density, maps.

* :mod:`~lossviz.hessian.operator` — the Hessian of the mean loss at a point as an operator
  (:class:`HessianOperator`, reverse-over-reverse products through a kept gradient graph), its
  per-layer diagonal blocks;
* :mod:`~lossviz.hessian.krylov` — Lanczos with full reorthogonalization;
* :mod:`~lossviz.hessian.eigen` — top-k / most negative eigenpairs (Lanczos or power iteration),
  ``(λ_min, λ_max)``, per-layer eigenvalues, eigenvector directions for surfaces;
* :mod:`~lossviz.hessian.trace` — Hutchinson, Hutch++ or the exact trace, per layer;
* :mod:`~lossviz.hessian.density` — the eigenvalue density by stochastic Lanczos quadrature;
* :mod:`~lossviz.hessian.maps` — ``min_eig`` / ``max_eig`` over a surface's grid (Li et al.).
"""

from __future__ import annotations

from lossviz.hessian.density import Density, density
from lossviz.hessian.eigen import (
    EigenResult,
    eigenvalue_ratio,
    eigenvector_directions,
    extreme_eigenvalues,
    lanczos,
    layer_eigenvalues,
    min_eigenvalue,
    power_iteration,
    top_eigenpairs,
)
from lossviz.hessian.maps import EIGEN_NAMES, eigen_map, eigen_ratio
from lossviz.hessian.operator import BlockOperator, HessianOperator, hessian_operator, hvp, parameter_groups
from lossviz.hessian.trace import TraceResult, layer_traces, trace

__all__ = [
    "EIGEN_NAMES",
    "BlockOperator",
    "Density",
    "EigenResult",
    "HessianOperator",
    "TraceResult",
    "density",
    "eigen_map",
    "eigen_ratio",
    "eigenvalue_ratio",
    "eigenvector_directions",
    "extreme_eigenvalues",
    "hessian_operator",
    "hvp",
    "lanczos",
    "layer_eigenvalues",
    "layer_traces",
    "min_eigenvalue",
    "parameter_groups",
    "power_iteration",
    "top_eigenpairs",
    "trace",
]
