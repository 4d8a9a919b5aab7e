"""Throttled partial saves of ``Session.surface``: a spirals-MLP surface saved after every chunk
(``save_every_s=0``, the old behaviour) against the default interval, in one run, fresh projects.

Prints each run's wall time and number of saves, and the ratio of the best times.

    .venv/bin/python benchmarks/surface_saves.py [--grid 101] [--repeats 3] [--every 2.0]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from lossviz.session import Session


def timed_surface(root: str, grid: int, every: float) -> tuple[float, int]:
    """(seconds, saves) of one ``grid``×``grid`` surface in a fresh project."""
    s = Session(root, model="mlp", data="spirals", device="cpu", data_kwargs={"n": 1000, "n_test": 300},
                hparams={"batch_size": 100, "lr": 0.05})
    try:
        job = s.train(epochs=1)
        job.wait()
        tip = job.result[-1].id
        saves = []
        put = s.store.put_result

        def counting_put(*args, **kwargs):
            saves.append(1)
            return put(*args, **kwargs)

        s.store.put_result = counting_put
        spec = f"-1:1:{grid}"
        t0 = time.perf_counter()
        surf = s.surface(tip, x=spec, y=spec, seed=1, save_every_s=every)
        elapsed = time.perf_counter() - t0
        assert surf.complete
        return elapsed, len(saves)
    finally:
        s.close()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--grid", type=int, default=101)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--every", type=float, default=2.0, help="the throttled interval (seconds)")
    args = p.parse_args()
    torch.set_num_threads(1)
    root = tempfile.mkdtemp()
    runs: dict[str, list[tuple[float, int]]] = {}
    for rep in range(args.repeats):
        for label, every in (("every chunk", 0.0), (f"every {args.every:g} s", args.every)):
            dt, n = timed_surface(f"{root}/{rep}-{every}", args.grid, every)
            runs.setdefault(label, []).append((dt, n))
            print(f"run {rep}: saves {label:12s} {dt:7.2f} s, {n} saves", flush=True)
    (base, base_runs), (throttled, thr_runs) = runs.items()
    b, t = min(base_runs), min(thr_runs)
    print(f"best of {args.repeats}, {args.grid}x{args.grid} grid: {base} {b[0]:.2f} s ({b[1]} saves), "
          f"{throttled} {t[0]:.2f} s ({t[1]} saves): {b[0] / t[0]:.2f}x")


if __name__ == "__main__":
    main()
