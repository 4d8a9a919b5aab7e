"""Payloads of the Explorer's research views: a curve connecting two checkpoints next to the straight line
(``connection`` trait, from :meth:`lossviz.session.Session.connect`) and the Hessian spectrum of one
checkpoint (``spectrum`` trait, from :meth:`lossviz.session.Session.hessian` with ``density=True``).

Both are plain JSON (short lists): the browser draws them in the 1-D view (js/connect.js) and the
spectrum tab (js/spectrum.js).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lossviz.jsonable import json_safe

__all__ = ["CONNECT_CURVES", "CONNECT_EPOCHS", "SPECTRUM_K", "SPECTRUM_POINTS", "connection_view", "spectrum_view"]

CONNECT_CURVES = ("bezier", "polychain")
"""The curves the Connect button fits (:meth:`lossviz.session.Session.connect`)."""
CONNECT_EPOCHS = 10
"""Fitting epochs of a Connect that names none."""
SPECTRUM_K = 3
"""Top eigenvalues a spectrum marks when the message names no ``k``."""
SPECTRUM_POINTS = 256
"""Points of the smoothed eigenvalue density the spectrum view draws."""


def connection_view(result: Mapping[str, Any], *, epochs: int) -> dict[str, Any]:
    """The ``connection`` trait from a :meth:`~lossviz.session.Session.connect` result: ``a``, ``b``,
    ``curve``, ``n_bends``, ``epochs``, ``t``; ``line`` and ``path`` each ``{"values": {"<split>_<metric>":
    [...]}, "barriers": {"<split>_loss": float}}``; ``barriers`` ``{"line", "curve"}`` (training loss,
    ``max_t L(φ(t)) − (L(φ(0)) + L(φ(1)))/2``); ``losses`` (mean training loss per fitting epoch).
    The control points stay in the kernel (they are a model's size)."""
    def profile(p: Mapping[str, Any]) -> dict[str, Any]:
        return {"values": {k: list(v) for k, v in p["values"].items()}, "barriers": dict(p["barriers"])}

    return json_safe({
        "a": int(result["a"]), "b": int(result["b"]), "curve": str(result["curve"]),
        "n_bends": int(result["n_bends"]), "epochs": int(epochs), "t": list(result["t"]),
        "line": profile(result["line"]), "path": profile(result["path"]),
        "barriers": {"line": float(result["barriers"]["line"]), "curve": float(result["barriers"]["curve"])},
        "losses": [float(v) for v in result.get("losses", [])],
    })


def spectrum_view(result: Mapping[str, Any], *, n: int = SPECTRUM_POINTS) -> dict[str, Any]:
    """The ``spectrum`` trait from a :meth:`~lossviz.session.Session.hessian` result with ``density``:
    ``checkpoint``, the top ``eigenvalues``, ``trace`` (Hutchinson) with ``trace_stderr``,
    ``density_trace`` (SLQ), the quadrature ``nodes``/``weights``, and the smoothed density
    ``φ(λ) = Σ_i τ_i N(λ; θ_i, s²)`` (:meth:`lossviz.hessian.Density.curve`, the width ``s`` 1 % of the nodes'
    range) on ``n`` points as ``grid`` and ``density`` (it integrates to 1)."""
    from lossviz.hessian.density import Density

    if "density" not in result:
        raise ValueError("the Hessian result has no density: call Session.hessian(..., density=True)")
    nodes = np.asarray(result["density"]["nodes"], dtype=np.float64)[None]
    weights = np.asarray(result["density"]["weights"], dtype=np.float64)[None]
    grid, phi = Density(nodes, weights, dim=0, n_matvecs=0).curve(n=n)
    return json_safe({
        "checkpoint": int(result["checkpoint"]), "eigenvalues": [float(v) for v in result["eigenvalues"]],
        "trace": result.get("trace"), "trace_stderr": result.get("trace_stderr"),
        "density_trace": result.get("density_trace"), "nodes": nodes[0].tolist(), "weights": weights[0].tolist(),
        "grid": grid.tolist(), "density": phi.tolist(),
    })
