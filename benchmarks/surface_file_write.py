"""The cost of building a stored surface file in memory before one plain write (issue 13: a full disk is
then an ``OSError``, never an h5py handle left on a failing file), against h5py writing to the file.

A ``--grid`` x ``--grid`` surface with four metrics and the two direction vectors of ``--model`` (what
``Session.surface`` stores) is written, in one run, two ways, each the best of ``--repeats``:

- ``direct``: h5py writes the file, then reopens it to add the direction vectors (the way before);
- ``in memory``: :func:`lossviz.io.h5.surface_bytes` builds the file with the vectors, one
  :func:`lossviz.files.write_durably` writes it (the way now).

Prints both times, the file sizes and ``in memory / direct``.

    .venv/bin/python benchmarks/surface_file_write.py [--model resnet20] [--grid 51] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from lossviz.directions import random_directions
from lossviz.files import fsync_file, write_durably
from lossviz.io.h5 import surface_bytes
from lossviz.landscape import Surface
from lossviz.params import ParamSpace
from lossviz.zoo import get_model


def best(fn: Callable[[], None], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--grid", type=int, default=51)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    model = get_model(args.model)
    space = ParamSpace(model)
    dirs = random_directions(space, space.vector(model), 2, seed=0)
    axis = np.linspace(-1, 1, args.grid)
    values = {f"{s}_{m}": np.random.default_rng(0).random((args.grid, args.grid)) for s in ("train", "test")
              for m in ("loss", "acc")}
    surf = Surface(x=axis, y=axis, values=values, done=np.ones((args.grid, args.grid), bool), directions=dirs,
                   meta={"center": 1})
    vectors = dirs.stacked().float().numpy()
    described = json.dumps(dirs.describe())

    def add_vectors(f: h5py.File) -> None:
        f.create_dataset("lossviz_direction_vectors", data=vectors)
        f.attrs["lossviz_direction_set"] = described

    with tempfile.TemporaryDirectory() as root:
        direct_path, memory_path = Path(root) / "direct.h5", Path(root) / "memory.h5"

        def direct() -> None:
            # the writer before, inline: h5py writes the file, then reopens it for the vectors
            with h5py.File(direct_path, "w") as f:
                f["xcoordinates"], f["ycoordinates"] = axis, axis
                for name, arr in values.items():
                    f.create_dataset(name, data=arr)
                f.create_dataset("lossviz_done", data=np.ones((args.grid, args.grid), np.uint8))
            with h5py.File(direct_path, "a") as f:
                add_vectors(f)
                f.flush()
            fsync_file(direct_path)

        def in_memory() -> None:
            write_durably(memory_path, surface_bytes(surf, extend=add_vectors))

        direct()  # warm both (imports, page cache)
        in_memory()
        t_direct = best(direct, args.repeats)
        t_memory = best(in_memory, args.repeats)
        sizes = os.path.getsize(direct_path), os.path.getsize(memory_path)
    print(f"{args.model}: {space.numel} parameters, {args.grid}x{args.grid} grid, {len(values)} metrics")
    print(f"direct     {t_direct * 1e3:8.2f} ms  ({sizes[0] / 1e6:.2f} MB)")
    print(f"in memory  {t_memory * 1e3:8.2f} ms  ({sizes[1] / 1e6:.2f} MB)")
    print(f"in memory / direct = {t_memory / t_direct:.2f}")


if __name__ == "__main__":
    main()
