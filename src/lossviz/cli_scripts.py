"""``lossviz trajectory``, ``vtp`` and ``hessian``: the reference's ``plot_trajectory.py``, ``h52vtp.py`` and
``plot_hessian_eigen.py`` as sub-commands, thin layers over :mod:`lossviz.directions`,
:mod:`lossviz.io.vtp` and :mod:`lossviz.hessian`, taking the reference's flags and naming files as it does.

* ``trajectory``: the checkpoints ``<folder>/<prefix><epoch><suffix>`` for ``epoch`` in
  ``range(start, max + save, save)``; PCA directions of ``w_i - w_last`` over all but the last
  (``projection.setup_PCA_directions``) written to ``<folder>/PCA_<dir_type>[_ignore=..]_save_epoch=<save>/
  directions.h5``, every checkpoint projected onto them into ``<dir_file>_proj_cos.h5``
  (``proj_xcoord``, ``proj_ycoord``) and drawn to ``<proj_file>.pdf`` / ``.png``.
* ``vtp``: :func:`lossviz.io.vtp.h5_to_vtp` (``--zmax``, ``--log``, ``--interp``).
* ``hessian``: ``min_eig`` / ``max_eig`` of the loss Hessian at every grid point
  (:func:`lossviz.hessian.eigen_map`), into the surface file the reference names (its other
  metrics kept), resumable like ``surface``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from lossviz.cli_resume import Interrupted
from lossviz.reference_flags import flags

__all__ = ["add_hessian_parser", "add_trajectory_parser", "add_vtp_parser", "trajectory_plot"]


# ---------------------------------------------------------------------------------------- trajectory
def add_trajectory_parser(sub: Any) -> argparse.ArgumentParser:
    t = sub.add_parser("trajectory", help="PCA directions of a folder of checkpoints and the projected path "
                                          "(plot_trajectory.py)")
    t.add_argument("--model", default="resnet56", help="zoo name or package.module:factory (default resnet56)")
    t.add_argument("--model-kwargs", default="{}", metavar="JSON", help="builder arguments")
    t.add_argument(*flags("--model-folder"), required=True, help="folder of the checkpoints")
    t.add_argument("--prefix", default="model_", help="checkpoint name before the epoch (default model_)")
    t.add_argument("--suffix", default=".t7", help="checkpoint name after the epoch (default .t7)")
    t.add_argument(*flags("--start-epoch"), type=int, default=0, help="first epoch (default 0)")
    t.add_argument(*flags("--max-epoch"), type=int, default=300, help="last epoch, the center (default 300)")
    t.add_argument(*flags("--save-epoch"), type=int, default=1, help="epochs between checkpoints (default 1)")
    t.add_argument(*flags("--dir-type"), choices=("weights", "states"), default="weights")
    t.add_argument("--ignore", default="", choices=("", "biasbn"), help="biasbn: leave out the 1-D tensors")
    t.add_argument(*flags("--dir-file"), default=None, help="existing direction file to project onto (no PCA)")
    t.add_argument("--dataset", default="cifar10", help=argparse.SUPPRESS)  # the reference's; unused
    t.set_defaults(handler=cmd_trajectory)
    return t


def _trajectory_files(args) -> list[Path]:
    from lossviz.cli_inputs import CLIError

    if args.save_epoch < 1 or args.max_epoch < args.start_epoch:
        raise CLIError("--save-epoch must be >= 1 and --max-epoch >= --start-epoch")
    files = [Path(args.model_folder) / f"{args.prefix}{e}{args.suffix}"
             for e in range(args.start_epoch, args.max_epoch + args.save_epoch, args.save_epoch)]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise CLIError(f"checkpoint {missing[0]!r} does not exist ({len(missing)} of {len(files)} missing): check "
                       "--model-folder, --prefix, --suffix and the epochs")
    if len(files) < 3:
        raise CLIError(f"PCA of a trajectory needs at least 3 checkpoints, found {len(files)}")
    return files


def cmd_trajectory(args) -> int:
    import h5py
    import torch

    from lossviz.cli_inputs import _build_model, _json_kwargs, _read_direction_file
    from lossviz.directions import DirectionSet, pca_directions, project_onto
    from lossviz.files import atomic_path
    from lossviz.io.h5 import write_directions
    from lossviz.params import ParamSpace

    files = _trajectory_files(args)
    kwargs = _json_kwargs(args.model_kwargs, "--model-kwargs")
    opts = argparse.Namespace(model=args.model)
    models = [_build_model(opts, kwargs, str(f)) for f in files]
    space = ParamSpace(models[-1], args.dir_type)
    points = torch.stack([space.vector(m, dtype=torch.float64) for m in models])
    center = points[-1]
    if args.dir_file:
        from lossviz.grid import SurfaceGrid

        directions = _read_direction_file(args.dir_file, space, SurfaceGrid.from_specs("0:1:2", "0:1:2"))
        dir_file = args.dir_file
    else:
        pca = pca_directions(points[:-1], center, 2, ignore=args.ignore or None, space=space)
        meta = {"explained_variance_ratio_": pca.explained_variance_ratio.tolist(),
                "singular_values_": pca.singular_values.tolist(),
                "explained_variance_": pca.explained_variance.tolist(), "model_folder": args.model_folder}
        directions = DirectionSet(list(pca.directions), kind=args.dir_type, normalization=None,
                                  ignore=args.ignore or None, method="pca", meta=meta)
        folder = Path(args.model_folder) / (f"PCA_{args.dir_type}" + (f"_ignore={args.ignore}" if args.ignore else "")
                                            + f"_save_epoch={args.save_epoch}")
        folder.mkdir(exist_ok=True)
        dir_file = str(folder / "directions.h5")
        write_directions(dir_file, directions, space)
        print(f"wrote {dir_file} (PCA directions, explained variance "
              f"{100 * pca.explained_variance_ratio[0]:.2f}% + {100 * pca.explained_variance_ratio[1]:.2f}%)")
    coords = project_onto(points, center, directions.stacked().double())
    proj_file = dir_file + "_proj_cos.h5"
    with atomic_path(proj_file) as tmp, h5py.File(tmp, "w") as f:
        f["proj_xcoord"] = coords[:, 0]
        f["proj_ycoord"] = coords[:, 1]
    print(f"wrote {proj_file} ({len(files)} checkpoints projected)")
    for path in trajectory_plot(coords, directions.meta.get("explained_variance_ratio_"), proj_file):
        print(f"wrote {path}")
    return 0


def trajectory_plot(coords: np.ndarray, ratio: Any, proj_file: str,
                    formats: tuple[str, ...] = ("pdf", "png")) -> list[Path]:
    """``plot_2D.plot_trajectory``: the path on the plane, axes labelled with the PCs' explained variance."""
    from matplotlib.figure import Figure

    from lossviz.cli_plot import _save

    fig = Figure()
    ax = fig.add_subplot()
    ax.plot(coords[:, 0], coords[:, 1], marker=".")
    if ratio is not None:
        ax.set_xlabel(f"1st PC: {100 * ratio[0]:.2f} %")
        ax.set_ylabel(f"2nd PC: {100 * ratio[1]:.2f} %")
    return [_save(fig, Path(f"{proj_file}.{fmt}")) for fmt in formats]


# ---------------------------------------------------------------------------------------- vtp
def add_vtp_parser(sub: Any) -> argparse.ArgumentParser:
    v = sub.add_parser("vtp", help="a 2D surface file as a ParaView .vtp (h52vtp.py)")
    v.add_argument("file", nargs="?", help="surface HDF5 file (ours or the reference's)")
    v.add_argument(*flags("--file"), "--surf_file", dest="file_flag", default=None, help=argparse.SUPPRESS)
    v.add_argument(*flags("--metric"), default="train_loss", help="dataset to write (default train_loss)")
    v.add_argument("--zmax", type=float, default=-1, help="clip the values at zmax (default -1: no clipping)")
    v.add_argument("--log", action="store_true", help="write log(z + 0.1)")
    v.add_argument("--interp", type=int, default=-1,
                   help="resample the surface to an N x N grid by bicubic splines first (default -1: no)")
    v.add_argument("--out", default=None, help="output .vtp (default <file>_<metric>[_zmax=..][_log].vtp)")
    v.set_defaults(handler=cmd_vtp)
    return v


def cmd_vtp(args) -> int:
    from lossviz.cli_inputs import CLIError
    from lossviz.io.vtp import h5_to_vtp

    path = args.file or args.file_flag
    if not path:
        raise CLIError("name the surface file: lossviz vtp FILE (or --surf_file FILE)")
    print(f"wrote {h5_to_vtp(path, args.metric, log=args.log, zmax=args.zmax, out=args.out, interp=args.interp)}")
    return 0


# ---------------------------------------------------------------------------------------- hessian
def add_hessian_parser(sub: Any) -> argparse.ArgumentParser:
    from lossviz.cli import _HelpFormatter, add_surface_arguments

    h = sub.add_parser("hessian", help="min and max Hessian eigenvalues on a grid (plot_hessian_eigen.py)",
                       description="min_eig and max_eig of the loss Hessian at every point of the grid, written "
                                   "into the surface file (the reference's flags too).",
                       formatter_class=_HelpFormatter)
    add_surface_arguments(h)
    g = h.add_argument_group("eigenvalues")
    g.add_argument("--tol", type=float, default=1e-4, help="Lanczos tolerance (default 1e-4)")
    g.add_argument("--max-iter", type=int, default=100, help="most Lanczos steps per point (default 100)")
    from lossviz.cli_plot import add_plot_arguments

    add_plot_arguments(h.add_argument_group("plot (--plot)"))
    h.set_defaults(handler=cmd_hessian, adaptive=False, subsample=False, rtol=None, budget=None, sample_rtol=None,
                   metrics=None)
    return h


def cmd_hessian(args) -> int:
    from lossviz.cli_inputs import CLIError
    from lossviz.cli_surface import prepare_run

    if args.mpi:
        raise CLIError("--mpi: lossviz hessian evaluates in this process (rank 0 alone); drop --mpi")
    run = prepare_run(args)
    run.common["test_data"] = None
    try:
        surface = _eigen_surface(args, run)
    except Interrupted as e:
        print(f"lossviz hessian: interrupted by {e}: the finished points are in {run.out}; run the same command "
              "to resume", file=sys.stderr)
        return 128 + e.signum
    print(f"wrote {run.out} (min_eig, max_eig at {int(surface.done.sum())}/{surface.done.size} points)")
    if args.plot:
        from lossviz.cli_plot import reference_plots

        formats = {"both": ("png", "pdf"), "html": ("png",)}.get(args.plot, (args.plot,))
        for p in reference_plots(surface, str(run.out), args, formats=formats, kinds=["eig_ratio"]):
            print(f"wrote {p}")
    return 0


def _eigen_surface(args: Any, run: Any):
    """Every unfinished point's eigenvalues into ``run.out`` (its other metrics kept), by
    :func:`lossviz.hessian.eigen_map`, flushed every ``--flush-every`` seconds and on SIGTERM/SIGINT."""
    from lossviz.cli_resume import PartialWriter
    from lossviz.hessian import EIGEN_NAMES, eigen_map
    from lossviz.io.h5 import read_surface, write_surface
    from lossviz.landscape import Surface

    grid = run.grid
    shape = grid.shape
    values: dict[str, np.ndarray] = {}
    if run.out.exists():
        old = read_surface(run.out)
        same = old.shape == shape and np.allclose(old.x, grid.x.values) and (
            old.y is None if grid.y is None else old.y is not None and np.allclose(old.y, grid.y.values))
        if not same:
            from lossviz.cli_inputs import CLIError

            raise CLIError(f"--out {str(run.out)!r} holds a surface on another grid; choose another --out")
        values = {k: np.array(v) for k, v in old.values.items()}
    others = [np.isfinite(v) for k, v in values.items() if k not in EIGEN_NAMES]
    base = Surface(grid.x.values, grid.y.values if grid.y else None, values,
                   np.logical_and.reduce(others) if others else np.ones(shape, dtype=bool), run.directions,
                   {**run.meta, "hessian": {"tol": args.tol, "max_iter": args.max_iter, "loss": args.loss}})

    def write(s) -> None:
        write_surface(run.out, s, dir_file=run.dir_name)

    writer = PartialWriter(write, args.flush_every)
    with writer.on_signals():
        surface = eigen_map(run.model, run.data, args.loss, directions=run.directions, grid=base, tol=args.tol,
                            max_iter=args.max_iter, seed=args.seed, batch_size=args.batch_size or 256,
                            dtype=run.common["dtype"], device=run.common["device"], callback=writer)
    write(surface)
    return surface
