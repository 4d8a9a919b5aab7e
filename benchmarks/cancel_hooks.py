"""What the engine's cancel checks cost: the same surface points with and without the forward
pre-hooks that let a cancel stop a deep model within a layer (``lossviz.evaluate._stop_inside_forward``).

    python benchmarks/cancel_hooks.py [--repeats 5] [--quick]

For each model (LeNet, ResNet-20, ResNet-56 on random data, the zoo GPT on the generated text
corpus) one :class:`~lossviz.evaluate.Evaluator` is built with its plan pinned (loop and vmap,
one thread, a fixed data batch), so both arms run the same plan on the same private model copy.
The arms alternate ``--repeats`` times (each first in turn): *hooked* (as the engine runs) and *bare* (the copy's
forward pre-hooks removed). Reported: the median CPU time of each arm over all points and the
ratio hooked / bare (1.00: free). Those two are noisy on a loaded machine, so the cost is also
estimated directly: the hook calls one evaluation makes (counted) times one call's time (timed
alone, ``timeit``), as a share of the bare run. The process's CPU time is used, as in
``benchmarks/plan_stability.py``, so that waiting for a core on a loaded machine does not count.
"""

from __future__ import annotations

import argparse
import statistics
import time
import timeit

import torch

from lossviz.directions import random_directions
from lossviz.evaluate import Evaluator
from lossviz.params import ParamSpace
from lossviz.zoo import get_model
from lossviz.zoo.language import tinytext


def grid_points(model: torch.nn.Module, side: int) -> torch.Tensor:
    space = ParamSpace(model, "weights")
    center = space.vector(model)
    dirs = random_directions(space, center, 2, seed=0).stacked()
    a = torch.linspace(-1, 1, side)
    A, B = torch.meshgrid(a, a, indexing="xy")
    return center + torch.stack([A.reshape(-1), B.reshape(-1)], 1) @ dirs


def cases(quick: bool):
    g = torch.Generator().manual_seed(0)

    def images(n: int, shape: tuple[int, ...]):
        return torch.randn((n, *shape), generator=g), torch.randint(0, 10, (n,), generator=g)

    torch.manual_seed(0)
    text = tinytext(n_sentences=200)[0].tensors  # (inputs, next tokens), 32 tokens each
    n_text = 16 if quick else 32
    text_pair = (text[0][:n_text], text[1][:n_text])
    ce = "cross_entropy"
    yield "lenet", get_model("lenet"), images(64 if quick else 256, (1, 28, 28)), ce, 3 if quick else 5
    yield "resnet20", get_model("resnet20").eval(), images(16 if quick else 64, (3, 32, 32)), ce, 2 if quick else 3
    yield "resnet56", get_model("resnet56").eval(), images(16 if quick else 32, (3, 32, 32)), ce, 2 if quick else 3
    yield "gpt", get_model("gpt"), text_pair, "causal_lm", 2 if quick else 3


def hooked_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if m._forward_pre_hooks]


def hook_calls(ev: Evaluator, modules: list[torch.nn.Module], points: torch.Tensor) -> int:
    """How many pre-hook calls one evaluation of ``points`` makes (a counting hook beside each)."""
    calls = [0]

    def count(_module: torch.nn.Module, _args: object) -> None:
        calls[0] += 1

    handles = [m.register_forward_pre_hook(count) for m in modules]
    try:
        ev.evaluate(points)
    finally:
        for h in handles:
            h.remove()
    return calls[0]


def seconds_per_hook_call(modules: list[torch.nn.Module]) -> float:
    """What the engine's hook adds to one module call: a 1x1 Linear called with it, less the same
    call without it (a module with hooks takes ``nn.Module``'s slower full call path)."""
    hook = next(iter(modules[0]._forward_pre_hooks.values()))
    tiny, x, number = torch.nn.Linear(1, 1), torch.zeros(1, 1), 20_000

    def per_call() -> float:
        with torch.no_grad():
            return min(timeit.repeat(lambda: tiny(x), number=number, repeat=5)) / number

    bare = per_call()
    handle = tiny.register_forward_pre_hook(hook)
    try:
        return max(0.0, per_call() - bare)
    finally:
        handle.remove()


def timed(ev: Evaluator, points: torch.Tensor) -> float:
    c0 = time.process_time()
    ev.evaluate(points)
    return time.process_time() - c0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="less data and fewer points (a smoke run)")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}; CPU seconds, median of {args.repeats} alternating runs per arm")
    print(f"{'model':9} {'strategy':8} {'hooks':>5} {'points':>6} {'hooked s':>9} {'bare s':>8} {'hooked/bare':>11}"
          f" {'calls':>7} {'us/call':>7} {'estimated':>9}")
    for name, model, data, loss, side in cases(args.quick):
        points = grid_points(model, side)
        for strategy in ("loop", "vmap"):
            ev = Evaluator(model, data, loss=loss, strategy=strategy, batch_size=len(data[0]),
                           points_per_call=len(points) if strategy == "vmap" else None, threads=1)
            modules = hooked_modules(ev.model)
            saved = [dict(m._forward_pre_hooks) for m in modules]
            ev.evaluate(points[:1])  # warm: the first call pays for lazy setup
            calls = hook_calls(ev, modules, points)
            per_call = seconds_per_hook_call(modules)
            hooked, bare = [], []
            for r in range(args.repeats):
                for arm in ("hooked", "bare") if r % 2 == 0 else ("bare", "hooked"):  # either arm first in turn
                    for m, hooks in zip(modules, saved, strict=True):
                        m._forward_pre_hooks.clear()
                        if arm == "hooked":
                            m._forward_pre_hooks.update(hooks)
                    (hooked if arm == "hooked" else bare).append(timed(ev, points))
            for m, hooks in zip(modules, saved, strict=True):
                m._forward_pre_hooks.update(hooks)
            h, b = statistics.median(hooked), statistics.median(bare)
            print(f"{name:9} {strategy:8} {len(modules):5d} {len(points):6d} {h:9.3f} {b:8.3f} {h / b:11.3f}"
                  f" {calls:7d} {per_call * 1e6:7.2f} {1 + calls * per_call / b:9.4f}", flush=True)


if __name__ == "__main__":
    main()
