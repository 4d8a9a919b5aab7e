"""PCA of n checkpoints × d parameters: lossviz's streaming PCA (randomized and exact Gram paths)
against scikit-learn's PCA and ``torch.pca_lowrank``.

For each n, n float32 checkpoint vectors (a random-walk "trajectory") are written as ``.npy`` files
to a temporary folder. Each method then runs in its own subprocess (one thread everywhere), so that
its peak memory is its own:

* ``randomized`` — ``pca_gram(paths, 2, method="randomized")``: subspace iteration on the Gram
  matrix with 12 vectors (k = 2 + 10 oversamples), one pass over the files per iteration (the mean
  and components come with the passes) until no top-2 coordinate changes by more than 1e-6 of its
  component's scale. The passes run in float32 until the estimated error is below 1e-4, then in
  float64 (the result comes from a float64 pass). ``method="auto"`` takes this path for n > 300.
* ``randomized32`` — the same with ``dtype=np.float32``: every pass in float32.
* ``gram64`` — ``pca_gram(paths, 2, method="gram")``, exact: reads the files by column blocks, Gram
  matrix and mean in one pass, components (for scikit-learn's sign convention) in a second; float64
  arithmetic.
* ``gram32`` — the same with float32 block arithmetic (Gram still accumulated in float64).
* ``sklearn`` — load every file into one stacked (n, d) array, ``PCA(2).fit_transform`` (the
  "auto" solver: randomized SVD for these shapes).
* ``sklearn_full`` — the same with ``svd_solver="full"`` (exact, like ours), only for
  n ≤ ``--full-max-n`` (its memory is several times the stacked matrix).
* ``torch_lowrank`` — the stacked float32 tensor, ``torch.pca_lowrank(x, q=6, center=True, niter=2)``
  (its defaults), coordinates ``U[:, :2] S[:2]``.

Reported: wall seconds of the PCA call including reading the files, peak RSS of the process
(``ru_maxrss``) and its growth over the RSS after imports, the ratios to the ``sklearn`` baseline
measured in the same run, and the largest top-2 coordinate difference to ``sklearn`` and to the
exact result (``gram64``, else ``sklearn_full``), each relative to its component's largest
coordinate, after aligning signs. The files are read from the page cache when it holds them.

    python benchmarks/projection_speed.py            # n = 300 and 1000, d = 1M (4 GiB of files)
    python benchmarks/projection_speed.py --quick    # n = 60 and 400, d = 100k
    python benchmarks/projection_speed.py --n 1000 --d 300000
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

    from lossviz.pca import pca_gram

    paths = sorted(Path(folder).glob("ckpt_*.npy"))[:n]
    base = rss_mb()
    t0 = time.perf_counter()
    passes = None
    if method in ("gram64", "gram32", "randomized", "randomized32"):
        r = pca_gram(paths, 2, dtype=np.float32 if method.endswith("32") else np.float64,
                     method="randomized" if method.startswith("randomized") else "gram")
        coords, ratio, passes = r.coords, r.explained_variance_ratio, r.passes
    else:
        first = np.load(paths[0])
        x = np.empty((n, first.shape[0]), dtype=first.dtype)
        for i, p in enumerate(paths):
            x[i] = np.load(p)
        if method == "torch_lowrank":
            xt = torch.from_numpy(x)
            u, s, _ = torch.pca_lowrank(xt, q=min(6, *xt.shape), center=True, niter=2)
            coords = (u[:, :2] * s[:2]).double().numpy()
            total = float(((xt - xt.mean(0)) ** 2).sum())  # for the ratio only (not timed apart)
            ratio = (s[:2].double() ** 2 / total).numpy()
        else:
            solver = "full" if method == "sklearn_full" else "auto"
            pca = PCA(n_components=2, svd_solver=solver, random_state=0)
            coords = pca.fit_transform(x)
            ratio = pca.explained_variance_ratio_
    seconds = time.perf_counter() - t0
    np.save(out + ".npy", np.asarray(coords, dtype=np.float64))
    with open(out + ".json", "w") as f:
        json.dump(
            dict(seconds=seconds, peak_mb=peak_rss_mb(), base_mb=base,
                 ratio=[float(v) for v in ratio], passes=passes),
            f,
        )


def coord_error(r: dict, ref: dict | None) -> float:
    """Largest top-2 coordinate difference, relative to each component's largest |coordinate|."""
    if ref is None:
        return float("nan")
    c, e = r["coords"][:, :2], ref["coords"][:, :2]
    s = np.sign(np.sum(c * e, axis=0))
    s[s == 0] = 1
    return float((np.abs(c * s - e).max(axis=0) / np.abs(e).max(axis=0)).max())


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
    ap.add_argument("--quick", action="store_true", help="n = 60, 400 and d = 100k")
    ap.add_argument("--n", type=int, nargs="+", default=None, help="numbers of checkpoints (300 1000)")
    ap.add_argument("--d", type=int, default=None, help="parameters per checkpoint (1_000_000)")
    ap.add_argument("--methods", nargs="+",
                    default=["randomized", "gram64", "sklearn", "sklearn_full", "torch_lowrank"],
                    help="of randomized randomized32 gram64 gram32 sklearn sklearn_full torch_lowrank")
    ap.add_argument("--full-max-n", type=int, default=300, help="run sklearn_full only up to this n")
    ap.add_argument("--tmp", default=None, help="folder for the checkpoint files (default: system temp)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.dir, args.n[0], args.out)
        return 0
    ns = args.n or ([60, 400] if args.quick else [300, 1000])
    d = args.d or (100_000 if args.quick else 1_000_000)
    print(f"PCA (2 components) of n float32 checkpoints × d = {d:,} parameters, one thread per method")
    header = (f"{'n':>5} {'method':<13} {'passes':>6} {'seconds':>8} {'× sklearn':>9} {'peak MB':>8} "
              f"{'+MB':>8} {'× sklearn':>9} {'Δ sklearn':>9} {'Δ exact':>9}  explained variance ratio")
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
            exact = results.get("gram64", results.get("sklearn_full"))
            base = results.get("sklearn")
            for m, r in results.items():
                grow = r["peak_mb"] - r["base_mb"]
                ts = f"{r['seconds'] / base['seconds']:.2f}" if base else "-"
                ms = f"{grow / (base['peak_mb'] - base['base_mb']):.3f}" if base else "-"
                ratio = ", ".join(f"{v:.6f}" for v in r["ratio"])
                passes = "-" if r["passes"] is None else str(r["passes"])
                print(f"{n:>5} {m:<13} {passes:>6} {r['seconds']:>8.2f} {ts:>9} {r['peak_mb']:>8.0f} "
                      f"{grow:>8.0f} {ms:>9} {coord_error(r, base):>9.1e} {coord_error(r, exact):>9.1e}"
                      f"  [{ratio}]")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    print("\nseconds: the PCA call including reading the files; peak MB: the process's peak RSS "
          "(ru_maxrss); +MB: peak minus RSS after imports; × sklearn: ratio to scikit-learn's PCA (auto "
          "solver) in this run; Δ sklearn / Δ exact: max over the top-2 components of "
          "max|Δcoord| / max|coord| against sklearn / against gram64 (else sklearn_full), signs aligned.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
