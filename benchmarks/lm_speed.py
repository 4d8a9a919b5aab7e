"""Points per second of loss-landscape evaluation for the zoo GPT (lossviz.zoo.language.TinyGPT) on the
tinytext corpus: vmap over K points against the loop over points, float32 and bf16, printed as ratios.

Measured in the same run on the same device and data (per-token cross-entropy, token accuracy and
perplexity at every point):

* reference: the plain per-point loop (the point's weights copied into the model, then the data in
  batches; the loss and accuracy summed in Python), the baseline every ratio is against;
* loop: lossviz's engine pinned to ``strategy="loop"``;
* vmap: the engine pinned to ``strategy="vmap"`` with K points per call;
* each of them in ``precision="bf16"`` too where the device supports bfloat16 (CUDA with bf16 kernels;
  on CPU autocast runs it, usually slower than float32).

The values of vmap and loop are compared (max relative difference of the losses), so a fast path that
computes something else shows. On a GPU:

    .venv/bin/python benchmarks/lm_speed.py --device cuda --sequences 2048 --points 256
    .venv/bin/python benchmarks/lm_speed.py --device cpu --sequences 64 --points 16 --small   # a quick look
"""

from __future__ import annotations

import argparse
import copy
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F

from lossviz.evaluate import Evaluator
from lossviz.params import ParamSpace
from lossviz.zoo.language import TinyGPT, tinytext

SMALL = {"n_layer": 1, "d_model": 32, "n_head": 2}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} thread(s))"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu"


@torch.no_grad()
def reference_loop(model, x, y, points: torch.Tensor, space: ParamSpace, batch: int, bf16: bool) -> tuple[float, list]:
    """(seconds per point, losses) of the plain per-point loop."""
    tensors = list(space.tensors_of(model).values())
    losses = []
    sync(x.device)
    t0 = time.perf_counter()
    for p in points:
        for t, part in zip(tensors, space.split(p), strict=True):
            t.copy_(part.reshape(t.shape))
        total, correct, count = 0.0, 0, 0
        for i in range(0, len(x), batch):
            with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=bf16):
                z = model(x[i : i + batch])
            z = z.float()
            yb = y[i : i + batch]
            total += F.cross_entropy(z.flatten(0, 1), yb.flatten(), reduction="sum").item()
            correct += (z.argmax(-1) == yb).sum().item()
            count += yb.numel()
        losses.append(total / count)
    sync(x.device)
    return (time.perf_counter() - t0) / len(points), losses


def interleaved_best(repeats: int, runs: dict) -> dict:
    """``{name: (fastest seconds per point, value)}`` of ``runs`` (``name -> run() -> (seconds, value)``),
    timed in turn ``repeats`` times after one warm-up round, so that a busy spell hits all alike."""
    for run in runs.values():
        run()  # warm-up: first (vmapped) call, kernels, caches
    best: dict = {name: (float("inf"), None) for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            seconds, value = run()
            best[name] = (min(best[name][0], seconds), value)
    return best


def engine(model, data, points: torch.Tensor, strategy: str, precision: str, batch: int, k: int,
           device: torch.device, threads: int | None):
    """A run of the engine with a pinned plan: ``run() -> (seconds per point, losses)``."""
    ev = Evaluator(model, data, loss="token_cross_entropy", metrics=("loss", "acc", "perplexity"), device=device,
                   strategy=strategy, precision=precision, batch_size=batch, points_per_call=k, threads=threads)

    def run():
        sync(device)
        t0 = time.perf_counter()
        out = ev.evaluate(points)
        sync(device)
        return (time.perf_counter() - t0) / len(points), out["loss"]

    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--sequences", type=int, default=256, help="evaluation sequences of 32 tokens")
    p.add_argument("--points", type=int, default=64, help="grid points per measurement")
    p.add_argument("--k", type=int, default=None, help="points per vmapped call (default: all --points)")
    p.add_argument("--batch", type=int, default=None, help="sequences per data batch (default: all)")
    p.add_argument("--small", action="store_true", help=f"a smaller GPT {SMALL} (CPU)")
    p.add_argument("--attention", default="manual", choices=("manual", "sdpa"))
    p.add_argument("--no-bf16", action="store_true")
    p.add_argument("--repeats", type=int, default=3, help="timings per figure (the fastest is kept)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU: torch intra-op threads for every figure (default 1: on a shared machine more "
                        "threads measure contention)")
    args = p.parse_args()

    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n_sentences = max(50, args.sequences * 33 // 28 + 20)
    train, _ = tinytext(n_sentences=n_sentences, block_size=32, test_fraction=0.01)
    x, y = (t[: args.sequences].to(device) for t in train.tensors)
    kw = SMALL if args.small else {}
    model = TinyGPT(attention=args.attention, **kw).to(device).eval()
    space = ParamSpace(model)
    center = space.vector(model).detach()
    g = torch.Generator(device="cpu").manual_seed(1)
    noise = torch.randn(args.points, space.numel, generator=g).to(device)
    points = center + 0.01 * center.norm() / space.numel**0.5 * noise
    batch = args.batch or len(x)
    k = args.k or args.points
    n_params = space.numel
    print(f"device: {device_name(device)}; torch {torch.__version__}")
    print(f"TinyGPT {n_params:,} parameters ({args.attention} attention), {len(x)} sequences x 32 tokens, "
          f"{args.points} points, data batch {batch}, K = {k}")

    precisions = ["float32"] + (["bf16"] if bf16_supported(device) and not args.no_bf16 else [])
    threads = args.threads if device.type == "cpu" else None  # the same for all (no measuring)
    rows = {}
    for precision in precisions:
        bf16 = precision == "bf16"
        ref_model = copy.deepcopy(model)  # the reference copies points into its weights
        best = interleaved_best(args.repeats, {
            "reference": lambda: reference_loop(ref_model, x, y, points, space, batch, bf16),  # noqa: B023
            "loop": engine(model, (x, y), points, "loop", precision, batch, k, device, threads),
            "vmap": engine(model, (x, y), points, "vmap", precision, batch, k, device, threads),
        })
        (ref_s, ref_losses), (loop_s, loop_losses), (vmap_s, vmap_losses) = best.values()
        rows[precision] = (ref_s, loop_s, vmap_s)
        agree = float(np.max(np.abs(vmap_losses - loop_losses) / np.abs(loop_losses)))
        agree_ref = float(np.max(np.abs(loop_losses - np.asarray(ref_losses)) / np.abs(loop_losses)))
        print(f"\n{precision}: points/s  reference {1 / ref_s:9.1f}   loop {1 / loop_s:9.1f}   vmap {1 / vmap_s:9.1f}")
        print(f"  ratios: vmap/loop {loop_s / vmap_s:5.2f}x   loop/reference {ref_s / loop_s:5.2f}x   "
              f"vmap/reference {ref_s / vmap_s:5.2f}x")
        print(f"  max relative difference of the losses: vmap vs loop {agree:.1e}, loop vs reference {agree_ref:.1e}")
    if "bf16" in rows:
        f32, b16 = rows["float32"], rows["bf16"]
        print(f"\nbf16/float32 speed: reference {f32[0] / b16[0]:.2f}x   loop {f32[1] / b16[1]:.2f}x   "
              f"vmap {f32[2] / b16[2]:.2f}x")


if __name__ == "__main__":
    main()
