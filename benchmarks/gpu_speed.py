"""Points per second of a loss surface for ResNet-20/56 on CIFAR-sized images (GPU, or CPU small).

Three figures per model, measured in the same run on the same device:
* reference loop: the reference's ``plot_surface.py`` way: per point, copy the point's weights
  into the model, then ``eval_loss`` over the data in batches of 128 (loss and accuracy);
* engine: ``lossviz.compute_surface`` (strategy measured: vmap over K points or a loop);
* floor: bare forward passes of the unmodified model over the same data (no loss, no weight
  copy): no per-point method can beat it.

    .venv/bin/python benchmarks/gpu_speed.py --device cuda --n 10000 --points 64
    .venv/bin/python benchmarks/gpu_speed.py --device cpu --n 256 --points 8 --models resnet20
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
import torch.nn.functional as F

from lossviz.directions import random_directions
from lossviz.landscape import compute_surface
from lossviz.params import ParamSpace
from lossviz.zoo.models import get_model


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return f"CPU {line.split(':', 1)[1].strip()} ({torch.get_num_threads()} thread(s))"
    except OSError:
        pass
    return f"CPU {platform.processor()}"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def reference_loop(model, X, Y, points: torch.Tensor, space: ParamSpace, batch: int = 128) -> float:
    """Seconds per point, the reference's way (weights copied in, batches of 128)."""
    tensors = list(space.tensors_of(model).values())
    sync(X.device)
    t0 = time.perf_counter()
    for p in points:
        for t, part in zip(tensors, space.split(p), strict=True):
            t.copy_(part.reshape(t.shape))
        total, correct = 0.0, 0
        for i in range(0, len(X), batch):
            out = model(X[i : i + batch])
            total += F.cross_entropy(out, Y[i : i + batch], reduction="sum").item()
            correct += (out.argmax(1) == Y[i : i + batch]).sum().item()
    sync(X.device)
    return (time.perf_counter() - t0) / len(points)


@torch.no_grad()
def floor(model, X, batch: int, repeats: int) -> float:
    """Seconds of bare forward passes over all of X (best of ``repeats``)."""
    best = float("inf")
    for _ in range(repeats):
        sync(X.device)
        t0 = time.perf_counter()
        for i in range(0, len(X), batch):
            model(X[i : i + batch])
        sync(X.device)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--n", type=int, default=10000, help="CIFAR-sized images (3x32x32)")
    p.add_argument("--points", type=int, default=64, help="grid points the engine evaluates")
    p.add_argument("--ref-points", type=int, default=None, help="points for the reference loop (default points//4)")
    p.add_argument("--models", default="resnet20,resnet56")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(args.n, 3, 32, 32, generator=g).to(device)
    Y = torch.randint(0, 10, (args.n,), generator=g).to(device)
    print(f"device: {device_name(device)}; {args.n} images 3x32x32; torch {torch.__version__}")
    print(f"{'model':10s} {'reference loop pt/s':>20s} {'engine pt/s':>12s} {'floor pt/s':>11s} "
          f"{'engine/reference':>17s} {'engine/floor':>13s}  engine plan")
    for name in args.models.split(","):
        torch.manual_seed(0)
        model = get_model(name).to(device).eval()
        space = ParamSpace(model, "weights")
        center = space.vector(model).to(device)
        nx = max(2, round(args.points ** 0.5))
        dirs = torch.stack(random_directions(space, center.cpu(), 2, seed=0).vectors).to(device)
        n_ref = args.ref_points or max(2, args.points // 4)
        coeffs = torch.rand(n_ref, 2, generator=g).to(device) * 2 - 1
        ref_pts = center + coeffs @ dirs
        reference_loop(model, X, Y, ref_pts[:1], space)  # warm-up
        t_ref = reference_loop(model, X, Y, ref_pts, space)
        space.load_into(model, center)
        t_floor = floor(model, X, 128 if device.type == "cpu" else 1024, 2)
        t0 = time.perf_counter()
        surf = compute_surface(model, (X, Y), x=f"-1:1:{nx}", y=f"-1:1:{nx}", device=device, progress=False)
        t_engine = (time.perf_counter() - t0) / surf.done.size
        plan = f"{surf.meta.get('strategy')} K={surf.meta.get('points_per_call')} batch={surf.meta.get('batch_size')}"
        print(f"{name:10s} {1 / t_ref:20.3f} {1 / t_engine:12.3f} {1 / t_floor:11.3f} "
              f"{t_ref / t_engine:17.2f} {t_floor / t_engine:13.2f}  {plan}")


if __name__ == "__main__":
    main()
