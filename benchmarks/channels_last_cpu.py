"""channels-last on CPU, per model and strategy: ms per point with and without it, in one run.

Why ``channels_last="auto"`` stays off on CPU: it helps some CNNs under the loop strategy and slows
others (and most under vmap), so no fixed rule is right there.

    .venv/bin/python benchmarks/channels_last_cpu.py
"""

from __future__ import annotations

import time

import torch

from lossviz.evaluate import Evaluator
from lossviz.params import ParamSpace
from lossviz.zoo.models import get_model

MODELS = (("cnn", (1, 28, 28), 256), ("lenet", (1, 28, 28), 256), ("resnet20", (3, 32, 32), 32),
          ("vgg9", (3, 32, 32), 64))


def ms_per_point(ev: Evaluator, points: torch.Tensor, repeats: int = 3) -> float:
    ev.evaluate(points[:2])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        ev.evaluate(points)
        best = min(best, time.perf_counter() - t0)
    return 1000 * best / len(points)


def main() -> None:
    torch.set_num_threads(1)
    print("model     strategy  plain ms/pt  channels-last ms/pt  ratio")
    for name, shape, n in MODELS:
        torch.manual_seed(0)
        model = (get_model(name, in_channels=shape[0]) if shape[0] == 1 else get_model(name)).eval()
        x, y = torch.randn(n, *shape), torch.randint(0, 10, (n,))
        center = ParamSpace(model, "weights").vector(model)
        points = center.repeat(8, 1) + 0.01 * torch.randn(8, center.numel())
        for strategy in ("loop", "vmap"):
            ppc = 4 if strategy == "vmap" else None
            t = [ms_per_point(Evaluator(model, (x, y), strategy=strategy, channels_last=cl, points_per_call=ppc),
                              points) for cl in (False, True)]
            print(f"{name:9s} {strategy:8s} {t[0]:11.2f}  {t[1]:19.2f}  {t[1] / t[0]:5.2f}", flush=True)


if __name__ == "__main__":
    main()
