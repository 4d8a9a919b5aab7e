"""PCA directions of a trajectory: ``pca.pca_gram`` (what ``directions.pca_directions`` uses)
against the scikit-learn full-SVD path it replaced, measured in the same run.

    PYTHONPATH=src python benchmarks/pca_directions.py [--points 40] [--dim 200000] [--repeat 3]

Prints each path's median seconds, the largest difference of the directions (sign-fixed) and the
ratio sklearn time / pca_gram time.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from lossviz.directions import pca_directions


def sklearn_path(traj: torch.Tensor, k: int) -> np.ndarray:
    """The former ``pca_directions`` core: rows ``w_i - w_last``, sklearn ``PCA(svd_solver="full")``."""
    from sklearn.decomposition import PCA

    rows = (traj.double() - traj[-1].double()).numpy()
    pca = PCA(n_components=k, svd_solver="full").fit(rows)
    comps = np.asarray(pca.components_)
    np.linalg.lstsq(comps.T, rows.T, rcond=None)  # the coordinates, as before
    return comps


def gram_path(traj: torch.Tensor, k: int) -> np.ndarray:
    return pca_directions(traj.double(), n_components=k).directions.numpy()


def median_seconds(fn, *args, repeat: int) -> tuple[float, np.ndarray]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=40, help="trajectory points (checkpoints)")
    ap.add_argument("--dim", type=int, default=200_000, help="parameters per checkpoint")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    traj = torch.randn(args.points, args.dim, generator=g).cumsum(0)
    t_sk, d_sk = median_seconds(sklearn_path, traj, 2, repeat=args.repeat)
    t_gram, d_gram = median_seconds(gram_path, traj, 2, repeat=args.repeat)
    signs = np.sign(np.sum(d_sk * d_gram, axis=1))
    diff = float(np.abs(d_gram - d_sk * signs[:, None]).max())
    print(f"trajectory {args.points} x {args.dim} (float64), 2 directions, median of {args.repeat}")
    print(f"  sklearn full SVD: {t_sk:.3f} s")
    print(f"  pca_gram:         {t_gram:.3f} s")
    print(f"  largest difference of the directions: {diff:.2e}")
    print(f"  ratio sklearn / pca_gram: {t_sk / t_gram:.1f}x")


if __name__ == "__main__":
    main()
