"""PCA of n checkpoints × d parameters: lossviz's streaming Gram PCA against scikit-learn's PCA.

For each n, n float32 checkpoint vectors (a random-walk "trajectory") are written as ``.npy`` files
to a temporary folder. Each method then runs in its own subprocess (one thread everywhere), so that
its peak memory is its own:

* ``gram64`` — ``lossviz.projection.pca_gram(paths, 2)``: reads the files by column blocks, Gram
  matrix and mean in one pass, components (for scikit-learn's sign convention) in a second; float64
  arithmetic.
* ``gram32`` — the same with float32 block arithmetic (Gram still accumulated in float64).
* ``sklearn`` — load every file into one stacked (n, d) array, ``PCA(2).fit_transform`` (the
  "auto" solver: randomized SVD for these shapes).
* ``sklearn_full`` — the same with ``svd_solver="full"`` (exact, like ours), only for
  n ≤ ``--full-max-n`` (its memory is several times the stacked matrix).

Reported: wall seconds of the PCA call including reading the files, peak RSS of the process
(``ru_maxrss``) and its growth over the RSS after imports, the ratios to the ``sklearn`` baseline
measured in the same run, and the largest coordinate difference to the exact result (``gram64``),
relative to the largest coordinate. The files are read from the page cache when it holds them.

    python benchmarks/projection_speed.py            # n = 300 and 1000, d = 1M
    python benchmarks/projection_speed.py --quick    # n = 60 and 200, d = 100k
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

THREAD_ENV = dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), "1")


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def write_checkpoints(folder: Path, n: int, d: int, seed: int = 0) -> list[Path]:
    """A random walk with a drift, float32, one .npy file per checkpoint."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(d, dtype=np.float32) * 0.1
    drift = rng.standard_normal(d, dtype=np.float32) * 1e-3
    paths = []
    for i in range(n):
        x += drift + rng.standard_normal(d, dtype=np.float32) * 1e-3
        p = folder / f"ckpt_{i:05d}.npy"
        np.save(p, x)
        paths.append(p)
    return paths


def worker(method: str, folder: str, n: int, out: str) -> None:
    import torch

    torch.set_num_threads(1)
    from sklearn.decomposition import PCA

    from lossviz.projection import pca_gram

    paths = sorted(Path(folder).glob("ckpt_*.npy"))[:n]
    base = rss_mb()
    t0 = time.perf_counter()
    if method in ("gram64", "gram32"):
        r = pca_gram(paths, 2, dtype=np.float64 if method == "gram64" else np.float32)
        coords, ratio = r.coords, r.explained_variance_ratio
    else:
        first = np.load(paths[0])
        x = np.empty((n, first.shape[0]), dtype=first.dtype)
        for i, p in enumerate(paths):
            x[i] = np.load(p)
        solver = "full" if method == "sklearn_full" else "auto"
        pca = PCA(n_components=2, svd_solver=solver, random_state=0)
        coords = pca.fit_transform(x)
        ratio = pca.explained_variance_ratio_
    seconds = time.perf_counter() - t0
    np.save(out + ".npy", np.asarray(coords, dtype=np.float64))
    with open(out + ".json", "w") as f:
        json.dump(
            dict(seconds=seconds, peak_mb=peak_rss_mb(), base_mb=base,
                 ratio=[float(v) for v in ratio]),
            f,
        )


def run_method(method: str, folder: Path, n: int, scratch: Path) -> dict:
    out = str(scratch / f"{method}_{n}")
    env = {**os.environ, **THREAD_ENV}
    subprocess.run(
        [sys.executable, __file__, "--worker", method, "--dir", str(folder), "--n", str(n), "--out", out],
        check=True,
        env=env,
    )
    with open(out + ".json") as f:
        res = json.load(f)
    res["coords"] = np.load(out + ".npy")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="n = 60, 200 and d = 100k")
    ap.add_argument("--n", type=int, nargs="+", default=None, help="numbers of checkpoints (300 1000)")
    ap.add_argument("--d", type=int, default=None, help="parameters per checkpoint (1_000_000)")
    ap.add_argument("--methods", nargs="+", default=["gram64", "gram32", "sklearn", "sklearn_full"])
    ap.add_argument("--full-max-n", type=int, default=300, help="run sklearn_full only up to this n")
    ap.add_argument("--tmp", default=None, help="folder for the checkpoint files (default: system temp)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.dir, args.n[0], args.out)
        return 0
    ns = args.n or ([60, 200] if args.quick else [300, 1000])
    d = args.d or (100_000 if args.quick else 1_000_000)
    print(f"PCA (2 components) of n float32 checkpoints × d = {d:,} parameters, one thread per method")
    header = (f"{'n':>5} {'method':<13} {'seconds':>8} {'× sklearn':>9} {'peak MB':>8} {'+MB':>8} "
              f"{'× sklearn':>9} {'max|Δcoord|/max|coord|':>23}  explained variance ratio")
    print(header)
    print("-" * len(header))
    for n in ns:
        scratch = Path(tempfile.mkdtemp(prefix=f"pca_bench_{n}_", dir=args.tmp))
        try:
            t = time.perf_counter()
            write_checkpoints(scratch, n, d)
            print(f"{n:>5} (wrote {n} files, {n * d * 4 / 2**30:.2f} GiB, in {time.perf_counter() - t:.1f} s)")
            results = {}
            for m in args.methods:
                if m == "sklearn_full" and n > args.full_max_n:
                    continue
                results[m] = run_method(m, scratch, n, scratch)
            ref = results.get("gram64")
            base = results.get("sklearn")
            for m, r in results.items():
                diff = float("nan")
                if ref is not None:
                    c, e = r["coords"], ref["coords"]
                    s = np.sign(np.sum(c * e, axis=0))
                    s[s == 0] = 1
                    diff = float(np.abs(c * s - e).max() / np.abs(e).max())
                grow = r["peak_mb"] - r["base_mb"]
                ts = f"{r['seconds'] / base['seconds']:.2f}" if base else "-"
                ms = f"{grow / (base['peak_mb'] - base['base_mb']):.3f}" if base else "-"
                ratio = ", ".join(f"{v:.6f}" for v in r["ratio"])
                print(f"{n:>5} {m:<13} {r['seconds']:>8.2f} {ts:>9} {r['peak_mb']:>8.0f} {grow:>8.0f} "
                      f"{ms:>9} {diff:>23.2e}  [{ratio}]")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    print("\nseconds: the PCA call including reading the files; peak MB: the process's peak RSS; +MB: "
          "peak minus RSS after imports; × sklearn: ratio to scikit-learn's PCA (auto solver) "
          "in this run; Δcoord: against gram64 after aligning signs.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
