"""Streamed evaluation data against data held in memory: time on data that fits, peak memory as data grows.

    python benchmarks/streaming.py [--quick]

(a) Time, on data that fits in memory (LeNet, 2048 MNIST-shaped random samples, a 8x8 grid): the same
    surface with the data held in memory (``lossviz.surface(model, (x, y), batch_size=256)``) and
    streamed from a DataLoader of batches of 256 (``data_memory=0``: never materialized; each chunk of
    points reads every batch once). Both with the plan pinned (loop, and vmap with K=16) and with
    ``strategy="auto"``; the process's CPU time on 1 thread, best of 3 interleaved repeats.
    ``stream/memory`` is the ratio of times (goal, issue 11: <= 1.3).
(b) Peak memory (a fresh process each, ``ru_maxrss``): an MLP on N and 10N samples of 784 features
    generated batch by batch (1000 per batch) by a re-iterable, evaluated at 4 points, streamed
    (``data_memory`` 32 MiB, below either size) and held in memory (``data_memory=None``).
    Streamed, the peak should stay flat as N grows 10x; in memory it grows with the data.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lossviz
from lossviz.evaluate import forget_plans, intra_op_threads
from lossviz.zoo import get_model


class GeneratedBatches:
    """``n`` samples of 784 features with labels, in batches of ``size``, batch i generated from seed i."""

    def __init__(self, n: int, size: int = 1000):
        self.n, self.size = n, size

    def __iter__(self):
        for i, start in enumerate(range(0, self.n, self.size)):
            g = torch.Generator().manual_seed(i)
            m = min(self.size, self.n - start)
            yield torch.randn(m, 784, generator=g), torch.randint(0, 10, (m,), generator=g)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))


def _cpu_time(fn) -> float:
    t0 = time.thread_time()
    fn()
    return time.thread_time() - t0


def timing(quick: bool) -> None:
    n, side = (1024, 6) if quick else (2048, 8)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)
    loader = DataLoader(TensorDataset(x, y), batch_size=256)
    model = get_model("lenet")
    grid = dict(x=f"-1:1:{side}", y=f"-1:1:{side}", progress=False, metrics=("loss", "acc"), threads=1,
                channels_last=False)
    plans = {"loop": dict(strategy="loop", batch_size=256), "vmap K=16": dict(strategy="vmap", points_per_call=16,
                                                                           batch_size=256),
             "auto": dict(strategy="auto")}
    print(f"(a) LeNet, {n} samples in batches of 256, {side}x{side} grid, CPU time on 1 thread, best of 3")
    for label, plan in plans.items():
        best = {"memory": float("inf"), "stream": float("inf")}
        values = {}
        for _ in range(3):
            for where, data, extra in (("memory", (x, y), {}), ("stream", loader, {"data_memory": 0})):
                forget_plans()
                kw = {**grid, **plan, **extra}
                if where == "stream":
                    kw.pop("batch_size", None)  # the loader's batches
                holder = {}
                t = _cpu_time(lambda d=data, kw=kw, h=holder: h.setdefault("s", lossviz.surface(model, d, **kw)))
                best[where] = min(best[where], t)
                values[where] = holder["s"]
        diff = float(abs(values["memory"].values["train_loss"] - values["stream"].values["train_loss"]).max())
        print(f"  {label:10s} memory {best['memory']:6.2f} s  stream {best['stream']:6.2f} s  "
              f"stream/memory {best['stream'] / best['memory']:.2f}  (plans: memory "
              f"{values['memory'].meta['strategy']}, stream {values['stream'].meta['strategy']}; "
              f"max |loss difference| {diff:.1e})")


def _peak_child(n: int, streamed: bool) -> None:
    with intra_op_threads(1):
        s = lossviz.surface(mlp(), GeneratedBatches(n), x="-1:1:2", y="-1:1:2", progress=False, strategy="loop",
                            metrics=("loss",), data_memory=(32 << 20) if streamed else None, threads=1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"peak_mib": peak, "streamed": s.meta["streamed"], "n": s.meta["n_samples"]["train"]}))


def memory(quick: bool) -> None:
    n0 = 10_000 if quick else 20_000
    print("\n(b) MLP 784-64-10, generated batches of 1000, 4 points: peak RSS of a fresh process")
    rows = {}
    for streamed in (True, False):
        for n in (n0, 10 * n0):
            out = subprocess.run([sys.executable, __file__, "--child", str(n), "--streamed", str(int(streamed))],
                                 capture_output=True, text=True, check=True)
            rows[(streamed, n)] = json.loads(out.stdout.strip().splitlines()[-1])
    for streamed in (True, False):
        a, b = rows[(streamed, n0)], rows[(streamed, 10 * n0)]
        label = "streamed " if streamed else "in memory"
        print(f"  {label}  N={n0:>7d}: {a['peak_mib']:7.0f} MiB   N={10 * n0:>7d}: {b['peak_mib']:7.0f} MiB   "
              f"ratio {b['peak_mib'] / a['peak_mib']:.2f}  (data {10 * n0 * 784 * 4 / 2**20:.0f} MiB at 10N)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="less data and fewer points")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--streamed", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        _peak_child(args.child, bool(args.streamed))
        return
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread")
    timing(args.quick)
    memory(args.quick)


if __name__ == "__main__":
    main()
