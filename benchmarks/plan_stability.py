"""The engine's plan under load: runs on each zoo CNN, each measuring its plan afresh, against the plain loop.

    python benchmarks/plan_stability.py [--runs 5] [--busy 1] [--quick]

``--busy`` busy-loop processes keep cores occupied for the whole run, as other users of a shared
machine would. Per run and model (LeNet on 1x28x28 inputs, the zoo's small CNN and ResNet-20 on
3x32x32, random data, points on a 2D grid of filter-normalized random directions):

(a) loop: the reference's per-point loop over in-memory batches of 128 (copy the point's weights
    into the model, forward every batch, summed cross-entropy and accuracy), on 1 thread: the
    fastest way to run it on a loaded machine;
(b) engine: ``forget_plans()``, then ``Evaluator(model, data)`` built and run on all points, its
    setup and its plan and thread measurement included (torch's own thread setting is the upper
    bound it may choose);
(c) the loop again. ``loop/engine`` is the mean of (a) and (c) over (b): above 1 the engine is
    faster. The process's CPU time (the work done: with one thread it does not count the time spent
    waiting for a core, as ``benchmarks/surface_speed.py``) and the wall clock (what a user waits,
    noisy under load) are both shown. Goal (issue 11): CPU ``loop/engine >= 0.95`` in every run.
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing
import time

import torch
import torch.nn.functional as F

from lossviz.directions import random_directions
from lossviz.evaluate import Evaluator, forget_plans, intra_op_threads
from lossviz.params import ParamSpace
from lossviz.zoo import get_model

REFERENCE_BATCH = 128  # the reference's default data batch


def _spin() -> None:
    while True:
        pass


def grid_points(model, side: int) -> tuple[ParamSpace, torch.Tensor]:
    space = ParamSpace(model, "weights")
    center = space.vector(model)
    dirs = random_directions(space, center, 2, seed=0).stacked()
    a = torch.linspace(-1, 1, side)
    A, B = torch.meshgrid(a, a, indexing="xy")
    coeffs = torch.stack([A.reshape(-1), B.reshape(-1)], 1)
    return space, center + coeffs @ dirs


def plain_loop(model, space: ParamSpace, points: torch.Tensor, x: torch.Tensor, y: torch.Tensor):
    """(a) (wall, CPU) seconds for all points, one thread."""
    net = copy.deepcopy(model).eval()
    batches = list(zip(x.split(REFERENCE_BATCH), y.split(REFERENCE_BATCH), strict=True))
    with intra_op_threads(1), torch.no_grad():
        t0, c0 = time.perf_counter(), time.process_time()
        for p in points:
            space.load_into(net, p)
            loss = torch.zeros((), dtype=torch.float64)
            correct = torch.zeros((), dtype=torch.long)
            for xb, yb in batches:
                out = net(xb)
                loss += F.cross_entropy(out, yb, reduction="sum").double()
                correct += (out.argmax(1) == yb).sum()
            float(loss), int(correct)
        return time.perf_counter() - t0, time.process_time() - c0


def engine(model, points: torch.Tensor, x: torch.Tensor, y: torch.Tensor):
    """(b) (wall, CPU) seconds for all points, set-up and measuring included, and the Evaluator."""
    forget_plans()
    t0, c0 = time.perf_counter(), time.process_time()
    ev = Evaluator(model, (x, y))
    ev.evaluate(points, total=len(points))
    return time.perf_counter() - t0, time.process_time() - c0, ev


def plan_text(ev: Evaluator) -> str:
    p = ev.plan
    assert p is not None
    k = f" K={p.points_per_call}" if p.strategy == "vmap" else ""
    return f"{p.strategy}{k} batch={p.batch_size} threads={ev.threads} channels_last={ev.channels_last}"


def cases(quick: bool):
    g = torch.Generator().manual_seed(0)

    def data(n, shape):
        return torch.randn((n, *shape), generator=g), torch.randint(0, 10, (n,), generator=g)

    torch.manual_seed(0)
    return [
        ("lenet", get_model("lenet"), *data(64 if quick else 128, (1, 28, 28)), 5 if quick else 9),
        ("cnn", get_model("cnn"), *data(32 if quick else 64, (3, 32, 32)), 5 if quick else 9),
        ("resnet20", get_model("resnet20").eval(), *data(16 if quick else 32, (3, 32, 32)), 3 if quick else 6),
    ]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--busy", type=int, default=1, help="busy-loop processes during the run (default 1)")
    parser.add_argument("--quick", action="store_true", help="less data and fewer points (a smoke run)")
    args = parser.parse_args(argv)
    spinners = [multiprocessing.get_context("spawn").Process(target=_spin, daemon=True) for _ in range(args.busy)]
    for s in spinners:
        s.start()
    try:
        print(f"torch {torch.__version__}, torch threads {torch.get_num_threads()}, {args.busy} busy-loop "
              f"process(es), {args.runs} runs, wall clock; loop/engine >= 1: the engine is faster")
        summary = []
        for name, model, x, y, side in cases(args.quick):
            space, points = grid_points(model, side)
            print(f"\n{name}: {len(x)} samples, {len(points)} points")
            ratios, walls, plans = [], [], []
            for run in range(args.runs):
                before = plain_loop(model, space, points, x, y)
                wall, cpu, ev = engine(model, points, x, y)
                after = plain_loop(model, space, points, x, y)
                loop_wall, loop_cpu = (before[0] + after[0]) / 2, (before[1] + after[1]) / 2
                ratios.append(loop_cpu / cpu)
                walls.append(loop_wall / wall)
                plans.append(plan_text(ev))
                print(f"  run {run + 1}: CPU loop {loop_cpu:6.2f} s engine {cpu:6.2f} s "
                      f"loop/engine {ratios[-1]:5.2f} | "
                      f"wall loop {loop_wall:6.2f} s engine {wall:6.2f} s loop/engine {walls[-1]:5.2f} | "
                      f"plan: {plans[-1]} ({ev.plan_source})", flush=True)
            ok = sum(r >= 0.95 for r in ratios)
            median = sorted(ratios)[len(ratios) // 2]
            summary.append(f"{name:9} CPU loop/engine min {min(ratios):.2f} median {median:.2f}"
                           f" (wall min {min(walls):.2f})  >= 0.95 in {ok}/{len(ratios)}  "
                           f"plans: {len(set(plans))} distinct")
        print("\nsummary")
        for line in summary:
            print(" ", line)
    finally:
        for s in spinners:
            s.terminate()
            s.join()


if __name__ == "__main__":
    main()
