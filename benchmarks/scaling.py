"""Scaling of a surface over workers: in-process vs a Dask LocalCluster of 1 and 2 worker processes and
a spawned process pool of 2.

Prints wall time and points per second per configuration, and the ratio to in-process measured in
the same run (the machine's core count bounds what 2 workers can gain). By default the chunks are
sized by ``compute_surface`` (about 4 per worker) and the plan is measured once in-process and pinned
for the workers; ``--chunk`` fixes the chunk size instead.

    .venv/bin/python benchmarks/scaling.py [--grid 41] [--model cnn] [--n 256] [--chunk N]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from lossviz.landscape import compute_surface
from lossviz.zoo.models import get_model


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--grid", type=int, default=41)
    p.add_argument("--model", default="cnn")
    p.add_argument("--n", type=int, default=256, help="evaluation samples")
    p.add_argument("--chunk", type=int, default=None, help="points per chunk (default: sized to the workers)")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = get_model(args.model).eval()
    g = torch.Generator().manual_seed(0)
    shape = {"mlp": (2,), "lenet": (1, 28, 28)}.get(args.model, (3, 32, 32))
    n_classes = 10 if args.model != "mlp" else 2
    data = (torch.randn(args.n, *shape, generator=g), torch.randint(0, n_classes, (args.n,), generator=g))
    spec = f"-1:1:{args.grid}"
    kw = dict(x=spec, y=spec, progress=False, chunk_size=args.chunk)
    n_points = args.grid**2

    def timed(executor=None):
        t0 = time.perf_counter()
        surf = compute_surface(model, data, executor=executor, **kw)
        return time.perf_counter() - t0, surf

    from distributed import Client, LocalCluster

    rows = []
    t_local, ref = timed()
    rows.append(("in-process (1 thread)", t_local, 0.0))
    for workers in (1, 2):
        with LocalCluster(n_workers=workers, processes=True, threads_per_worker=1, dashboard_address=None,
                          silence_logs=40) as cluster, Client(cluster) as client:
            client.run(torch.set_num_threads, 1)
            timed(client)  # warm the workers (imports, first vmapped call)
            t, surf = timed(client)
            diff = float(abs(surf.values["train_loss"] - ref.values["train_loss"]).max())
            rows.append((f"dask LocalCluster {workers} worker(s)", t, diff))
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        timed(pool)  # warm the workers
        t, surf = timed(pool)
        diff = float(abs(surf.values["train_loss"] - ref.values["train_loss"]).max())
        rows.append(("process pool 2 workers", t, diff))
    print(f"plan shared with the workers: {surf.meta.get('plan_shared')}, chunk size: {args.chunk or 'auto'}")
    print(f"model {args.model}, {args.n} samples, {args.grid}x{args.grid} grid, {os.cpu_count()} CPU cores")
    print(f"{'configuration':32s} {'time s':>8s} {'points/s':>9s} {'speed vs in-process':>20s} {'max |diff|':>11s}")
    for label, t, diff in rows:
        print(f"{label:32s} {t:8.2f} {n_points / t:9.1f} {t_local / t:20.2f} {diff:11.2e}")


if __name__ == "__main__":
    main()
