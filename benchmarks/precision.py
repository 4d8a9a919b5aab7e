"""Precision options: ms per grid point and error against float32, measured in one run.

    python benchmarks/precision.py [--device cpu|cuda] [--repeats 3] [--quick]

For each model (the spirals MLP, LeNet on 28x28 images, ResNet-20 on 32x32 images; tiny N on CPU)
the same grid points (filter-normalized random 2D directions, a 4x4 grid over [-1, 1]²) are
evaluated by ``lossviz.evaluate.Evaluator`` with

* ``float32``            the baseline (``precision="float32"``, ``channels_last=False``)
* ``tf32``               TF32 matmuls/convolutions (CUDA only; on CPU the same as float32)
* ``bf16``               forward passes under bfloat16 autocast
* ``channels_last``      float32, inputs and conv weights channels-last (conv models)
* ``bf16+channels_last`` both (conv models)

The float32 evaluator measures and chooses its plan (``strategy="auto"``: vmap or loop, K, data
batch) on the points; every other option then runs on that same plan, so that only the option
differs (errors and times). After one untimed pass each, the options take turns ``--repeats``
times and each keeps its best time. "ratio" is ms/point over float32's in this run (below 1: faster). Errors are of the
loss against float32 at each point: ``|L - L32| / |L32|`` (max and mean), and the largest change of
the accuracy in percentage points. CPU times are process CPU time with one thread
(``torch.set_num_threads(1)``); CUDA times are wall-clock.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from lossviz.directions import random_directions
from lossviz.evaluate import Evaluator
from lossviz.zoo import get_model, make_spirals

OPTIONS = {
    "float32": dict(precision="float32", channels_last=False),
    "tf32": dict(precision="tf32", channels_last=False),
    "bf16": dict(precision="bf16", channels_last=False),
    "channels_last": dict(precision="float32", channels_last=True),
    "bf16+channels_last": dict(precision="bf16", channels_last=True),
}


def cases(device: str, quick: bool) -> list[tuple[str, torch.nn.Module, tuple, bool]]:
    """(name, model, (inputs, targets), has convolutions)."""
    gpu = device == "cuda"
    n_mlp, n_lenet, n_resnet = (10_000, 10_000, 10_000) if gpu else (2_000, 256, 32)
    if quick:
        n_mlp, n_lenet, n_resnet = n_mlp // 4, n_lenet // 4, n_resnet // 4
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    mlp = get_model("mlp", in_features=2, hidden=(32, 32), out_features=2, activation="relu")
    lenet, resnet = get_model("lenet"), get_model("resnet20")
    lenet_x = torch.randn(n_lenet, 1, 28, 28, generator=g)
    resnet_x = torch.randn(n_resnet, 3, 32, 32, generator=g)
    return [
        (f"spirals MLP 2-32-32-2, N={n_mlp}", mlp, make_spirals(n_mlp, seed=0), False),
        (f"LeNet 28x28, N={n_lenet}", lenet, (lenet_x, torch.randint(0, 10, (n_lenet,), generator=g)), True),
        (f"ResNet-20 32x32, N={n_resnet}", resnet.eval(),
         (resnet_x, torch.randint(0, 10, (n_resnet,), generator=g)), True),
    ]


def grid_points(ev: Evaluator, side: int = 4) -> torch.Tensor:
    ds = random_directions(ev.space, ev.center, 2, seed=0)
    dirs = ds.stacked().to(device=ev.center.device, dtype=ev.center.dtype)
    a = torch.linspace(-1, 1, side, dtype=ev.center.dtype, device=ev.center.device)
    coeffs = torch.cartesian_prod(a, a)
    return ev.center + coeffs @ dirs


def timed(ev: Evaluator, points: torch.Tensor, device: str) -> float:
    clock = time.perf_counter if device == "cuda" else time.process_time
    t0 = clock()
    ev.evaluate(points)  # returns numpy arrays: synchronized
    return clock() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="a quarter of the samples")
    args = ap.parse_args()
    torch.set_num_threads(1)
    where = torch.cuda.get_device_name() if args.device == "cuda" else "CPU, 1 thread"
    print(f"precision options on {where}, torch {torch.__version__}; 16 points per model\n")
    print("| model | option | strategy | ms/point | ratio vs float32 | max rel err loss | "
          "mean rel err loss | max |Δacc| (pp) |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for name, model, data, has_conv in cases(args.device, args.quick):
        options = {k: v for k, v in OPTIONS.items() if has_conv or not v["channels_last"]}
        base = Evaluator(model, data, device=args.device, **options["float32"])
        points = grid_points(base)
        base.evaluate(points, total=len(points))  # its plan is measured (on mixed plans)
        results = {"float32": base.evaluate(points)}  # the reference, on the chosen plan
        plan = dict(strategy=base.strategy_used, points_per_call=base.points_per_call_used,
                    batch_size=base.batch_size_used)
        evs = {"float32": base}
        for k, kw in options.items():  # the others on float32's plan: only the option differs
            if k != "float32":
                evs[k] = Evaluator(model, data, device=args.device, **plan, **kw)
                results[k] = evs[k].evaluate(points)
        best = {k: float("inf") for k in evs}
        for _ in range(args.repeats):  # options take turns
            for k, ev in evs.items():
                best[k] = min(best[k], timed(ev, points, args.device))
        ref = results["float32"]
        for k, ev in evs.items():
            rel = np.abs(results[k]["loss"] - ref["loss"]) / np.abs(ref["loss"])
            dacc = np.abs(results[k]["acc"] - ref["acc"]).max() if "acc" in ref else float("nan")
            ms = 1e3 * best[k] / len(points)
            print(f"| {name} | {k} | {ev.strategy_used}(K={ev.points_per_call_used}, "
                  f"batch={ev.batch_size_used}) | {ms:.2f} | {best[k] / best['float32']:.2f} | "
                  f"{rel.max():.1e} | {rel.mean():.1e} | {dacc:.2f} |", flush=True)


if __name__ == "__main__":
    main()
