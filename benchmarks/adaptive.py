"""Adaptive surfaces against the full uniform 51x51 surface: forward passes spent and errors.

For the spirals MLP (trained briefly) and ResNet-20 on generated images, prints per method the
sample-forward passes spent as a fraction of the uniform surface's and the error of the loss
surface: pointwise relative (max, mean) and relative to the range the contour levels span
(max, mean; the views draw levels evenly from min to max). Goal: max error <= 1% for <= 1/5 of
the passes.

    .venv/bin/python benchmarks/adaptive.py [--grid 51] [--resnet-n 32] [--resnet-size 16]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from lossviz.landscape import compute_surface
from lossviz.refine import refine_surface
from lossviz.subsample import subsampled_surface
from lossviz.zoo.data import make_spirals
from lossviz.zoo.models import get_model


def spirals_case():
    torch.manual_seed(0)
    X, y = make_spirals(1000, seed=0)
    model = get_model("mlp")
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(600):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
    return "spirals MLP (N=1000)", model.eval(), (X, y)


def resnet_case(n: int, size: int):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    X = torch.randn(n, 3, size, size, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    model = get_model("resnet20")
    opt = torch.optim.SGD(model.parameters(), 0.05, momentum=0.9)
    model.train()
    for _ in range(30):  # fit the small set a little: a minimum to look at
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
    return f"ResNet-20 ({n} generated {size}x{size} images)", model.eval(), (X, y)


def errors(approx: np.ndarray, exact: np.ndarray) -> dict[str, float]:
    diff = np.abs(approx - exact)
    rel = diff / np.abs(exact)
    span = float(np.ptp(exact))
    return {"rel_max": rel.max(), "rel_mean": rel.mean(), "contour_max": diff.max() / span,
            "contour_mean": diff.mean() / span}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--grid", type=int, default=51)
    p.add_argument("--resnet-n", type=int, default=32)
    p.add_argument("--resnet-size", type=int, default=16)
    p.add_argument("--skip-resnet", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)
    spec = f"-1:1:{args.grid}"
    cases = [spirals_case()] + ([] if args.skip_resnet else [resnet_case(args.resnet_n, args.resnet_size)])
    print(f"grid {args.grid}x{args.grid}; passes = sample-forward passes / the uniform surface's")
    print(f"{'model':38s} {'method':34s} {'passes':>7s} {'rel max':>8s} {'rel mean':>9s} "
          f"{'contour max':>12s} {'contour mean':>13s} {'time s':>7s}")
    for name, model, data in cases:
        t0 = time.perf_counter()
        full = compute_surface(model, data, x=spec, y=spec, progress=False)
        t_full = time.perf_counter() - t0
        exact = full.values["train_loss"]
        print(f"{name:38s} {'uniform (reference)':34s} {1.0:7.3f} {0:8.4f} {0:9.5f} {0:12.4f} {0:13.5f} "
              f"{t_full:7.1f}")
        runs = [
            ("refine budget=0.2 rtol=0.003", refine_surface, dict(rtol=0.003, budget=0.2)),
            ("refine budget=0.1 rtol=0.003", refine_surface, dict(rtol=0.003, budget=0.1)),
            ("subsample rtol=0.01", subsampled_surface, dict(rtol=0.01)),
            ("subsample range_tol=0.003", subsampled_surface, dict(range_tol=0.003)),
        ]
        for label, method, options in runs:
            t0 = time.perf_counter()
            surf = method(model, data, full.directions, x=spec, y=spec, **options)
            dt = time.perf_counter() - t0
            e = errors(surf.values["train_loss"], exact)
            frac = surf.meta["adaptive"]["fraction"]
            print(f"{name:38s} {label:34s} {frac:7.3f} {e['rel_max']:8.4f} {e['rel_mean']:9.5f} "
                  f"{e['contour_max']:12.4f} {e['contour_mean']:13.5f} {dt:7.1f}")


if __name__ == "__main__":
    main()
