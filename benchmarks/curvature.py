"""Curvature tools against PyHessian on the same model and data: time and error of one Hessian-vector
product, the top-1 and top-3 eigenvalues, the trace and the eigenvalue density.

The model is a small tanh MLP (``--hidden``) trained for a few hundred full-batch Adam steps on
Gaussian-blob classification data (``--samples`` points, ``--features`` inputs, ``--classes`` classes),
float32, CPU, one thread. Ground truth is the dense Hessian of the mean cross-entropy,
``torch.autograd.functional.hessian`` in float64, and its ``eigvalsh``.

* ``pyhessian`` — ``pyhessian.hessian(model, criterion, data=(x, y), cuda=False)`` (PyPI
  ``pyhessian`` 0.1): single-batch mode, whose gradient graph is built once and kept;
  ``eigenvalues(top_n=k)`` (power iteration with deflation, maxIter 100, tol 1e-3), ``trace()``
  (Hutchinson, maxIter 100, tol 1e-3: it stops once the running mean changes by less than 0.1%),
  ``density()`` (SLQ, 100 steps, 1 run). Its ``density`` calls ``torch.eig``, gone since torch 2.0:
  the benchmark gives it ``torch.eig`` as ``torch.linalg.eigh`` of its (symmetric) T for that call.
  The time includes building the object (one forward and backward with ``create_graph``).
* ``lossviz`` — ``lossviz.hessian`` at its defaults: ``top_eigenpairs(model, data, k)`` (Lanczos,
  tol 1e-4), ``trace(model, data)`` (100 Rademacher probes; also ``method="hutch++"`` with the same
  100 products), ``density(model, data)`` (SLQ, 100 steps, 1 run). Times include building the
  operator.
* ``hvp`` — one product: lossviz's operator (the kept graph), PyHessian's
  ``hessian_vector_product`` on its kept graph, and ``jvp(grad)`` over batches of 256 (lossviz's
  product before this change).

Errors: eigenvalues ``max_i |λ_i − λ_i*| / |λ_i*|`` (the worst of ``--repeats`` seeds); trace
``|t − tr H| / |tr H|`` (the mean over ``--trace-seeds`` seeds, each tool reseeded);
density (the mean over 2 × ``--repeats`` runs) ``∫ |φ − φ*| dt`` of the densities smoothed with the same
Gaussian (width 1% of the exact spectrum's range) against the exact spectrum's (0 = equal, 2 =
disjoint). Rows at matched accuracy: PyHessian's eigenvalues at tol 1e-6, lossviz's at tol 1e-2 (still
more accurate than PyHessian's default), lossviz's trace with as many probes as PyHessian's early stop
took. Times: CPU seconds of the process (``time.process_time``, one thread: on a shared machine the
wall time measures the neighbours), the best of ``--repeats`` runs; the trace's the median of its
seeds (PyHessian's stop varies with the seed); ratio = PyHessian's / lossviz's (> 1: lossviz is faster).

    pip install 'lossviz[bench]'                   # PyHessian
    python benchmarks/curvature.py                 # 1000 samples, MLP 10-32-32-4 (D = 1540)
    python benchmarks/curvature.py --quick         # 300 samples, MLP 10-16-16-4
    python benchmarks/curvature.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, jvp

from lossviz import hessian as H
from lossviz.hessian.density import Density
from lossviz.params import ParamSpace


def make_problem(samples: int, features: int, hidden: list[int], classes: int, seed: int = 0):
    """A trained float32 MLP and its blob data."""
    g = torch.Generator().manual_seed(seed)
    centers = 1.0 * torch.randn(classes, features, generator=g)  # overlapping: the loss stays well above 0
    y = torch.randint(0, classes, (samples,), generator=g)
    x = centers[y] + torch.randn(samples, features, generator=g)
    torch.manual_seed(seed)
    sizes = [features, *hidden, classes]
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    model = nn.Sequential(*layers)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval(), x, y


def dense_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    m64 = _copy(model).double()
    space = ParamSpace(m64)

    def f(theta: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(functional_call(m64, space.unflatten(theta), (x.double(),)), y)

    return torch.autograd.functional.hessian(f, space.vector(m64), vectorize=True)


def _copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model)


def timed(fn: Callable[[], Any], repeats: int, stat: Callable[[list[float]], float] = min) -> tuple[float, list[Any]]:
    """(``stat`` of the CPU seconds of ``repeats`` calls, their results); torch reseeded per call."""
    times, results = [], []
    for r in range(repeats):
        torch.manual_seed(r)
        t0 = time.process_time()
        results.append(fn())
        times.append(time.process_time() - t0)
    return stat(times), results


def eig_error(found: Any, exact: np.ndarray) -> float:
    found = np.sort(np.asarray(found, dtype=np.float64))[::-1]
    return float(np.max(np.abs(found - exact[: len(found)]) / np.abs(exact[: len(found)])))


def density_error(d: Density, exact: np.ndarray) -> float:
    sigma = 0.01 * float(exact.max() - exact.min())
    t = np.linspace(exact.min() - 5 * sigma, exact.max() + 5 * sigma, 4000)
    ref = Density(exact[None], np.full((1, len(exact)), 1.0 / len(exact)), len(exact), 0)
    _, phi = d.curve(t, sigma)
    _, phi_ref = ref.curve(t, sigma)
    return float(np.trapezoid(np.abs(phi - phi_ref), t))


def py_hessian(model: nn.Module, crit: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Any:
    """A fresh ``pyhessian.hessian`` object. Its constructor's ``backward(create_graph=True)``
    accumulates into ``.grad``: cleared first, or a second object would hold the sum of two gradients
    (twice the Hessian)."""
    import pyhessian

    model.zero_grad(set_to_none=True)
    return pyhessian.hessian(model, crit, data=(x, y), cuda=False)


def pyhessian_density(model, crit, x, y) -> Density:

    eig = getattr(torch, "eig", None)

    def eig_shim(t: torch.Tensor, eigenvectors: bool = True):
        w, v = torch.linalg.eigh(t)
        return torch.stack([w, torch.zeros_like(w)], dim=1), v

    torch.eig = eig_shim  # type: ignore[attr-defined]
    try:
        nodes, weights = py_hessian(model, crit, x, y).density()
    finally:
        if eig is None:
            del torch.eig  # type: ignore[attr-defined]
        else:
            torch.eig = eig  # type: ignore[attr-defined]
    n = np.asarray(nodes, dtype=np.float64)
    return Density(n, np.asarray(weights, dtype=np.float64), sum(p.numel() for p in model.parameters()), n.size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--features", type=int, default=10)
    ap.add_argument("--hidden", type=int, nargs="+", default=[32, 32])
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--trace-seeds", type=int, default=30)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.quick:
        args.samples, args.hidden, args.repeats, args.trace_seeds = 300, [16, 16], 3, 10
    torch.set_num_threads(1)
    import pyhessian

    model, x, y = make_problem(args.samples, args.features, args.hidden, args.classes)
    crit = nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    h = dense_hessian(model, x, y)
    exact = torch.linalg.eigvalsh(h).numpy()[::-1].copy()
    true_trace = float(torch.trace(h))
    dense_s = time.perf_counter() - t0
    dim = h.shape[0]
    print(f"MLP {[args.features, *args.hidden, args.classes]}, D = {dim}, N = {args.samples}; dense float64 "
          f"Hessian {dense_s:.1f} s; top-3 {exact[:3].round(4).tolist()}, trace {true_trace:.4f}")
    rows: list[dict[str, Any]] = []

    def row(task: str, tool: str, seconds: float, error: float, note: str = "") -> None:
        rows.append({"task": task, "tool": tool, "seconds": seconds, "error": error, "note": note})

    # one product
    op = H.HessianOperator(model, (x, y))
    v = torch.randn(dim)
    op(v)
    ref_hv = (h @ v.double()).float()
    s, r = timed(lambda: op(v), 20)
    row("hvp", "lossviz", s, float((r[0] - ref_hv).norm() / ref_hv.norm()), "kept graph")
    hess = py_hessian(model, crit, x, y)
    vs = [c.view_as(p) for c, p in zip(v.split([p.numel() for p in hess.params]), hess.params, strict=True)]
    s, r = timed(lambda: torch.cat([t.reshape(-1) for t in pyhessian.utils.hessian_vector_product(
        hess.gradsH, hess.params, vs)]), 20)
    row("hvp", "pyhessian", s, float((r[0] - ref_hv).norm() / ref_hv.norm()), "kept graph")
    space = ParamSpace(model)
    theta = space.vector(model)

    def jvp_batched() -> torch.Tensor:
        out = torch.zeros(dim)
        for i in range(0, len(x), 256):
            xb, yb = x[i : i + 256], y[i : i + 256]

            def f(t: torch.Tensor, xb=xb, yb=yb) -> torch.Tensor:
                return crit(functional_call(model, space.unflatten(t), (xb,)), yb)

            out += jvp(grad(f), (theta,), (v,))[1] * len(xb) / len(x)
        return out

    s, r = timed(jvp_batched, 20)
    row("hvp", "jvp(grad), batches of 256", s, float((r[0] - ref_hv).norm() / ref_hv.norm()), "before")

    for k in (1, 3):
        s, r = timed(lambda k=k: H.top_eigenpairs(model, (x, y), k).eigenvalues, args.repeats)
        row(f"top-{k}", "lossviz", s, max(eig_error(e, exact) for e in r), "Lanczos tol 1e-4")
        s, r = timed(lambda k=k: py_hessian(model, crit, x, y).eigenvalues(top_n=k)[0],
                     args.repeats)
        row(f"top-{k}", "pyhessian", s, max(eig_error(e, exact) for e in r), "power, tol 1e-3")
        s, r = timed(lambda k=k: H.top_eigenpairs(model, (x, y), k, tol=1e-2).eigenvalues, args.repeats)
        row(f"top-{k}", "lossviz tol 1e-2", s, max(eig_error(e, exact) for e in r), "Lanczos tol 1e-2")
        s, r = timed(lambda k=k: py_hessian(model, crit, x, y).eigenvalues(
            top_n=k, tol=1e-6, maxIter=1000)[0], args.repeats)
        row(f"top-{k}", "pyhessian tol 1e-6", s, max(eig_error(e, exact) for e in r), "power, tol 1e-6")

    def trace_error(results: list[float]) -> float:
        return float(np.mean([abs(t - true_trace) / abs(true_trace) for t in results]))

    seeds = iter(range(10**6))
    s, r = timed(lambda: H.trace(model, (x, y), seed=next(seeds)).mean,
                 args.trace_seeds, statistics.median)
    row("trace", "lossviz", s, trace_error(r), "Hutchinson, 100 probes")
    s, r = timed(lambda: H.trace(model, (x, y), seed=next(seeds), method="hutch++").mean,
                 args.trace_seeds, statistics.median)
    row("trace", "lossviz hutch++", s, trace_error(r), "Hutch++, 100 products")
    counts: list[int] = []

    def py_trace() -> float:
        samples = py_hessian(model, crit, x, y).trace()
        counts.append(len(samples))
        return float(np.mean(samples))

    s, r = timed(py_trace, args.trace_seeds, statistics.median)
    probes = max(2, round(statistics.median(counts)))
    row("trace", "pyhessian", s, trace_error(r), f"Hutchinson, stopped after {probes} probes (median)")
    s, r = timed(lambda: H.trace(model, (x, y), n_samples=probes, seed=next(seeds)).mean,
                 args.trace_seeds, statistics.median)
    row("trace", "lossviz same probes", s, trace_error(r), f"Hutchinson, {probes} probes")
    s, r = timed(lambda: H.trace(model, (x, y), n_samples=max(4, probes), seed=next(seeds), method="hutch++").mean,
                 args.trace_seeds, statistics.median)
    row("trace", "lossviz hutch++ same", s, trace_error(r), f"Hutch++, {max(4, probes)} products")

    s, r = timed(lambda: H.density(model, (x, y), seed=next(seeds)), 2 * args.repeats)
    row("density", "lossviz", s, float(np.mean([density_error(d, exact) for d in r])), "SLQ 100 steps")
    s, r = timed(lambda: pyhessian_density(model, crit, x, y), 2 * args.repeats)
    row("density", "pyhessian", s, float(np.mean([density_error(d, exact) for d in r])), "SLQ 100 steps")

    print(f"{'task':8s} {'tool':28s} {'seconds':>10s} {'error':>10s}  note")
    for rr in rows:
        print(f"{rr['task']:8s} {rr['tool']:28s} {rr['seconds']:10.4f} {rr['error']:10.2e}  {rr['note']}")
    print("\nPyHessian time / lossviz time (same run):")
    pairs = [("hvp", "lossviz", "pyhessian")]
    for k in (1, 3):
        pairs += [(f"top-{k}", "lossviz", "pyhessian"), (f"top-{k}", "lossviz tol 1e-2", "pyhessian"),
                  (f"top-{k}", "lossviz", "pyhessian tol 1e-6")]
    pairs += [("trace", tool, "pyhessian") for tool in ("lossviz", "lossviz same probes", "lossviz hutch++ same")]
    pairs += [("density", "lossviz", "pyhessian")]
    for task, tool, other in pairs:
        ours = next(rr for rr in rows if rr["task"] == task and rr["tool"] == tool)
        theirs = next(rr for rr in rows if rr["task"] == task and rr["tool"] == other)
        ratio = theirs["seconds"] / ours["seconds"]
        print(f"  {task:6s} {tool:21s} vs {other:19s} {ratio:6.2f}x   error {ours['error']:.2e} vs "
              f"{theirs['error']:.2e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"dim": dim, "samples": args.samples, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
