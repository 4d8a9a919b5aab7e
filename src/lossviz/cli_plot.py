"""``lossviz plot`` and ``surface --plot``: the figures of the reference's ``plot_2D.py`` / ``plot_1D.py``
drawn with matplotlib (PNG and PDF, no kaleido), and the interactive HTML of :mod:`lossviz.figures`.

2D surfaces give ``<file>_<metric>_2dcontour``, ``_2dcontourf``, ``_2dheat`` and ``_3dsurface``
(contour levels ``arange(vmin, vmax, vlevel)``, the heat map clipped to ``[vmin, vmax]``); 1D surfaces
``<file>_1d_loss_acc[_log]`` (loss and accuracy, train solid and test dashed, loss axis up to
``loss_max``), ``<file>_1d_train_loss[_log]`` and ``<file>_1d_train_err``; surfaces with ``min_eig`` and
``max_eig`` also ``|min_eig / max_eig|`` (``<file>_min_eig_max_eig_abs_ratio_heat_sns`` /
``<file>_1d_eig_abs_ratio``); with a projection file the trajectory over the contours
(``<proj_file>_<metric>_2dcontour_proj``). The names are the reference's, its ``.pdf`` and a ``.png``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from lossviz.reference_flags import flags

__all__ = ["KINDS", "add_plot_arguments", "add_plot_parser", "cmd_plot", "figure", "main_figure", "reference_plots"]

KINDS = ("contour", "contourf", "heatmap", "surface", "loss_acc", "train_loss", "train_err", "eig_ratio")
"""The figures: 2D (``contour``, ``contourf``, ``heatmap``, ``surface`` = 3-D), 1D (``loss_acc``,
``train_loss``, ``train_err``) and ``eig_ratio`` (``|min_eig / max_eig|``, 1D or 2D)."""

_SUFFIX_2D = {"contour": "_2dcontour", "contourf": "_2dcontourf", "heatmap": "_2dheat", "surface": "_3dsurface"}


def add_plot_arguments(g: Any, *, standalone: bool = False) -> None:
    """The options of ``plot_2D.py`` / ``plot_1D.py`` (their spellings too) on the group ``g``."""
    g.add_argument("--vmin", type=float, default=0.1, help="lowest contour level / colour (default 0.1)")
    g.add_argument("--vmax", type=float, default=10.0, help="highest contour level / colour (default 10)")
    g.add_argument("--vlevel", type=float, default=0.5, help="contour level spacing (default 0.5)")
    g.add_argument("--log", action="store_true", help="log scale for the loss (1D: semilogy; 2D: log levels)")
    g.add_argument(*flags("--loss-max"), type=float, default=5.0, help="1D: top of the loss axis (default 5)")
    g.add_argument("--zlim", type=float, default=None, help="3-D surface: top of the z axis")
    g.add_argument("--show", action="store_true", help="the reference's --show: figures are written, not shown")
    if standalone:
        g.add_argument("--xmin", type=float, default=None, help="1D: left end of the x axis (default: the data's)")
        g.add_argument("--xmax", type=float, default=None, help="1D: right end of the x axis (default: the data's)")
        g.add_argument("--kind", choices=("all", *KINDS), default="all",
                       help="which figure (default all of the reference's for the surface)")
        g.add_argument("--format", choices=("png", "pdf", "both"), default="both",
                       help="image format of the reference-named figures (default both)")
        g.add_argument(*flags("--dir-file"), default=None,
                       help="direction file: its PCA explained variance labels a trajectory's axes")
        g.add_argument("--prefix", default=None,
                       help="plot_1D.py's repeats: the 1D surfaces <prefix>_<idx>.h5 in one figure")
        g.add_argument(*flags("--idx-min"), type=int, default=1, help="--prefix: first index (default 1)")
        g.add_argument(*flags("--idx-max"), type=int, default=10, help="--prefix: last index (default 10)")
    g.add_argument(*flags("--proj-file"), default=None,
                   help="projected trajectory (proj_xcoord, proj_ycoord) drawn over the 2D contours")


def add_plot_parser(sub: Any, handler: Any) -> argparse.ArgumentParser:
    """The ``plot`` sub-command."""
    p = sub.add_parser("plot", help="plot a surface file: the reference's PNG/PDF figures, or HTML",
                       description="plot_2D.py / plot_1D.py: without --out, the reference's figures next to FILE "
                                   "(PNG and PDF); --out X.html the interactive plotly figure, --out X.png / X.pdf "
                                   "one --kind of figure.")
    p.add_argument("file", nargs="?", help="surface HDF5 file (ours or the reference's)")
    p.add_argument(*flags("--file"), "--surf_file", dest="file_flag", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help="one output .html / .png / .pdf (default: the reference's names)")
    p.add_argument(*flags("--metric"), default=None, help="metric to plot (default: train_loss or the first)")
    add_plot_arguments(p, standalone=True)
    p.set_defaults(handler=handler)
    return p


# ---------------------------------------------------------------------------------------- figures
def _levels(vmin: float, vmax: float, vlevel: float, log: bool) -> np.ndarray:
    levels = np.arange(vmin, vmax, vlevel)
    if log and vmin > 0 and len(levels) > 1:
        return np.geomspace(vmin, vmax, len(levels))
    return levels


def _new_figure(projection: str | None = None):
    from matplotlib.figure import Figure

    fig = Figure()
    return fig, fig.add_subplot(projection=projection)


def _z(surface: Any, metric: str) -> np.ndarray:
    if metric in surface.values:
        return np.asarray(surface.values[metric], dtype=np.float64)
    split, _, what = metric.partition("_")
    if what == "err" and f"{split}_acc" in surface.values:  # plot_2D.py's train_err = 100 - train_acc
        return 100.0 - np.asarray(surface.values[f"{split}_acc"], dtype=np.float64)
    raise ValueError(f"the surface has no metric {metric!r}; it has {', '.join(surface.values)}")


def figure(surface: Any, kind: str, metric: str, opts: Any, proj: tuple[np.ndarray, np.ndarray] | None = None):
    """The matplotlib ``Figure`` of ``kind`` (see :data:`KINDS`) for ``surface``'s ``metric``; ``opts``
    carries vmin, vmax, vlevel, log, loss_max, zlim (and xmin / xmax for 1D)."""
    if kind in _SUFFIX_2D:
        return _figure_2d(surface, kind, metric, opts, proj)
    if kind == "eig_ratio":
        return _figure_eig_ratio(surface)
    return _figure_1d(surface, kind, opts)


def _figure_2d(surface: Any, kind: str, metric: str, opts: Any, proj):
    if surface.y is None:
        raise ValueError(f"a {kind} figure needs a 2D surface; this one is 1D (use --kind loss_acc)")
    X, Y = np.meshgrid(surface.x, surface.y)
    Z = _z(surface, metric)
    levels = _levels(opts.vmin, opts.vmax, opts.vlevel, opts.log)
    fig, ax = _new_figure("3d" if kind == "surface" else None)
    if kind == "contour":
        cs = ax.contour(X, Y, Z, levels=levels, cmap="summer")
        ax.clabel(cs, inline=True, fontsize=8)
    elif kind == "contourf":
        fig.colorbar(ax.contourf(X, Y, Z, levels=levels, cmap="summer", extend="both"), ax=ax)
    elif kind == "heatmap":
        from matplotlib.colors import LogNorm, Normalize

        norm = LogNorm(opts.vmin, opts.vmax) if opts.log and opts.vmin > 0 else Normalize(opts.vmin, opts.vmax)
        fig.colorbar(ax.pcolormesh(X, Y, np.clip(Z, opts.vmin, opts.vmax), cmap="viridis", norm=norm,
                                   shading="nearest"), ax=ax)
    else:
        shown = np.ma.masked_invalid(Z if opts.zlim is None else np.minimum(Z, opts.zlim))
        fig.colorbar(ax.plot_surface(X, Y, shown, cmap="coolwarm", linewidth=0, antialiased=False),
                     ax=ax, shrink=0.5, aspect=5)
        if opts.zlim is not None:
            ax.set_zlim(top=opts.zlim)
    if proj is not None and kind != "surface":
        ax.plot(proj[0], proj[1], marker=".")
    if (getattr(surface, "meta", None) or {}).get("explained_variance_ratio"):  # PCA axes: "PC1: 91.8 %"
        from lossviz.figures import surface_axis_labels

        xt, yt = surface_axis_labels(surface)
        ax.set_xlabel(xt)
        ax.set_ylabel(yt)
    ax.set_title(metric)
    return fig


def _figure_1d(surface: Any, kind: str, opts: Any):
    if surface.y is not None:
        raise ValueError(f"a {kind} figure needs a 1D surface; this one is 2D (use --kind contour)")
    x = surface.x
    lo = x.min() if getattr(opts, "xmin", None) is None else opts.xmin
    hi = x.max() if getattr(opts, "xmax", None) is None else opts.xmax
    fig, ax = _new_figure()
    line = ax.semilogy if opts.log else ax.plot
    if kind == "loss_acc":
        acc_ax = ax.twinx()
        for split, style in (("train", "-"), ("test", "--")):
            if f"{split}_loss" in surface.values:
                line(x, _z(surface, f"{split}_loss"), "b" + style, label=f"{split} loss", linewidth=1)
            if f"{split}_acc" in surface.values:
                acc_ax.plot(x, _z(surface, f"{split}_acc"), "r" + style, label=f"{split} accuracy", linewidth=1)
        ax.set_ylabel("Loss", color="b")
        acc_ax.set_ylabel("Accuracy", color="r")
        acc_ax.set_ylim(0, 100)
        ax.set_ylim(top=opts.loss_max) if opts.log else ax.set_ylim(0, opts.loss_max)
    elif kind == "train_loss":
        line(x, _z(surface, "train_loss"))
        ax.set_ylabel("Training Loss")
        ax.set_ylim(top=opts.loss_max) if opts.log else ax.set_ylim(0, opts.loss_max)
    else:
        ax.plot(x, _z(surface, "train_err"))
        ax.set_ylabel("Training Error")
        ax.set_ylim(0, 100)
    ax.set_xlim(lo, hi)
    return fig


def _figure_eig_ratio(surface: Any):
    if "min_eig" not in surface.values or "max_eig" not in surface.values:
        raise ValueError("an eig_ratio figure needs min_eig and max_eig (lossviz hessian writes them)")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.abs(_z(surface, "min_eig") / _z(surface, "max_eig"))
    fig, ax = _new_figure()
    if surface.y is None:
        ax.plot(surface.x, ratio)
        ax.set_ylim(0, 1)
    else:
        X, Y = np.meshgrid(surface.x, surface.y)
        fig.colorbar(ax.pcolormesh(X, Y, ratio, cmap="viridis", vmin=0, vmax=0.5, shading="nearest"), ax=ax)
    ax.set_title("|min_eig / max_eig|")
    return fig


# ---------------------------------------------------------------------------------------- files
def _reference_names(surface: Any, prefix: str, metric: str, opts: Any, proj_file: str | None) -> dict[str, str]:
    """``{kind: file name without extension}``: what the reference writes for this surface."""
    names: dict[str, str] = {}
    eig = "min_eig" in surface.values and "max_eig" in surface.values
    if surface.y is not None:
        if proj_file:
            names["contour"] = f"{proj_file}_{metric}_2dcontour_proj"
        elif metric in surface.values or metric.endswith("_err"):
            names.update({k: f"{prefix}_{metric}{s}" for k, s in _SUFFIX_2D.items()})
        if eig:
            names["eig_ratio"] = f"{prefix}_min_eig_max_eig_abs_ratio_heat_sns"
    else:
        if "train_loss" in surface.values:
            log = "_log" if opts.log else ""
            names["loss_acc"] = f"{prefix}_1d_loss_acc{log}"
            names["train_loss"] = f"{prefix}_1d_train_loss{log}"
            if "train_acc" in surface.values:
                names["train_err"] = f"{prefix}_1d_train_err"
        if eig:
            names["eig_ratio"] = f"{prefix}_1d_eig_abs_ratio"
    return names


def read_projection(path: str) -> tuple[np.ndarray, np.ndarray]:
    """``(proj_xcoord, proj_ycoord)`` of a projection file (``plot_trajectory.py``'s layout)."""
    import h5py

    if not Path(path).is_file():
        raise FileNotFoundError(f"projection file {path!r} does not exist")
    with h5py.File(path, "r") as f:
        if "proj_xcoord" not in f or "proj_ycoord" not in f:
            raise ValueError(f"{path!r} has no proj_xcoord / proj_ycoord datasets: not a projection file")
        return np.asarray(f["proj_xcoord"][()], dtype=np.float64), np.asarray(f["proj_ycoord"][()], dtype=np.float64)


def _save(fig: Any, path: Path) -> Path:
    from lossviz.files import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=150 if path.suffix == ".png" else 300, bbox_inches="tight", format=path.suffix[1:])
    return path


def reference_plots(surface: Any, prefix: str, opts: Any, *, formats: Iterable[str] = ("png", "pdf"),
                    metric: str | None = None, kinds: Iterable[str] | None = None) -> list[Path]:
    """Write the reference's figures of ``surface`` named from ``prefix`` (its file), one per format;
    returns the paths written."""
    from lossviz.figures import default_metric

    if getattr(opts, "show", False):
        print("lossviz: note: --show: the figures are written to files, not shown", file=sys.stderr)
    metric = metric or default_metric(surface, getattr(opts, "metric", None))
    proj_file = getattr(opts, "proj_file", None)
    proj = read_projection(proj_file) if proj_file else None
    names = _reference_names(surface, prefix, metric, opts, proj_file)
    if kinds is not None:
        names = {k: v for k, v in names.items() if k in set(kinds)}
    written = []
    for kind, name in names.items():
        fig = figure(surface, kind, metric, opts, proj if kind == "contour" else None)
        written += [_save(fig, Path(f"{name}.{fmt}")) for fmt in formats]
    return written


def main_figure(surface: Any, opts: Any, path: Path, kind: str | None = None, metric: str | None = None) -> Path:
    """Write one figure to ``path`` (.png / .pdf): ``kind`` (default contour for 2D, loss_acc for 1D)."""
    from lossviz.figures import default_metric

    metric = metric or default_metric(surface, getattr(opts, "metric", None))
    kind = kind or ("contour" if surface.y is not None else "loss_acc")
    proj = read_projection(opts.proj_file) if getattr(opts, "proj_file", None) else None
    return _save(figure(surface, kind, metric, opts, proj), path)


def cmd_plot(args) -> int:
    """``lossviz plot FILE``: the reference's figures, or one figure / the HTML to ``--out``."""
    from lossviz.cli_inputs import CLIError, _check_output_path, _read_surface

    path = args.file or args.file_flag
    if not path and args.prefix:
        return _plot_repeats(args)
    if not path and args.proj_file:
        return _plot_projection(args)
    if not path:
        raise CLIError("name the surface file: lossviz plot FILE (or --surf_file FILE; --proj_file for a "
                       "trajectory, --prefix for repeated 1D surfaces)")
    surface = _read_surface(path)
    if args.out is not None and Path(args.out).suffix == ".html":
        _check_output_path(args.out, "--out")
        written, note = _plot(surface, args.metric, f"{Path(path).name}: ", Path(args.out))
        if note:
            print(f"lossviz: note: {note}", file=sys.stderr)
        print(f"wrote {written}")
        return 0
    from lossviz.figures import default_metric

    metric = args.metric if args.metric and (args.metric.endswith("_err") or args.metric in ("min_eig", "max_eig")) \
        else default_metric(surface, args.metric)
    if args.out is not None:
        out = _check_output_path(args.out, "--out")
        if out.suffix not in (".png", ".pdf"):
            raise CLIError(f"--out {args.out!r}: write .html, .png or .pdf")
        print(f"wrote {main_figure(surface, args, out, None if args.kind == 'all' else args.kind, metric)}")
        return 0
    formats = ("png", "pdf") if args.format == "both" else (args.format,)
    kinds = None if args.kind == "all" else [args.kind]
    images = reference_plots(surface, path, args, formats=formats, metric=metric, kinds=kinds)
    if not images:
        wants = "2D" if args.kind in _SUFFIX_2D else "1D" if args.kind != "eig_ratio" else "min_eig/max_eig"
        raise CLIError(f"no {args.kind} figure for this {surface.ndim}D surface: {args.kind} needs a {wants} "
                       "surface; see --kind")
    for p in images:
        print(f"wrote {p}")
    return 0


def _plot_repeats(args) -> int:
    """``plot_1D.plot_1d_loss_err_repeat``: the 1D surfaces ``<prefix>_<idx>.h5`` (train and test loss and
    accuracy) in one figure, ``<prefix>_1d_loss_err_repeat``."""
    from lossviz.cli_inputs import _read_surface

    surfaces = [_read_surface(f"{args.prefix}_{i}.h5") for i in range(args.idx_min, args.idx_max + 1)]
    fig, ax = _new_figure()
    acc_ax = ax.twinx()
    for s in surfaces:
        if s.y is not None:
            from lossviz.cli_inputs import CLIError

            raise CLIError("--prefix plots 1D surfaces; one of them is 2D")
        for split, style in (("train", "-"), ("test", "--")):
            if f"{split}_loss" in s.values:
                ax.plot(s.x, _z(s, f"{split}_loss"), "b" + style, linewidth=1)
            if f"{split}_acc" in s.values:
                acc_ax.plot(s.x, _z(s, f"{split}_acc"), "r" + style, linewidth=1)
    ax.set_xlim(min(s.x.min() for s in surfaces) if args.xmin is None else args.xmin,
                max(s.x.max() for s in surfaces) if args.xmax is None else args.xmax)
    ax.set_ylim(0, args.loss_max)
    acc_ax.set_ylim(0, 100)
    ax.set_ylabel("Loss", color="b")
    acc_ax.set_ylabel("Accuracy", color="r")
    for fmt in ("png", "pdf") if args.format == "both" else (args.format,):
        print(f"wrote {_save(fig, Path(f'{args.prefix}_1d_loss_err_repeat.{fmt}'))}")
    return 0


def _plot_projection(args) -> int:
    """``plot_2D.plot_trajectory``: the projected path alone, ``<proj_file>.pdf`` (axes labelled with the
    PCA explained variance of ``--dir-file`` when it has one)."""
    import h5py

    from lossviz.cli_scripts import trajectory_plot

    xs, ys = read_projection(args.proj_file)
    ratio = None
    if args.dir_file and Path(args.dir_file).is_file():
        with h5py.File(args.dir_file, "r") as f:
            if "explained_variance_ratio_" in f:
                ratio = np.asarray(f["explained_variance_ratio_"][()], dtype=np.float64)
    formats = ("png", "pdf") if args.format == "both" else (args.format,)
    for p in trajectory_plot(np.stack([xs, ys], axis=1), ratio, args.proj_file, formats):
        print(f"wrote {p}")
    return 0


def _plot(surface, wanted: str | None, title: str, path: Path) -> tuple[Path, str | None]:
    """Write the plot of ``surface``'s metric (``wanted`` or the default) to ``path``, titled
    ``title`` + the metric: the figure and the writer of :mod:`lossviz.figures`."""
    from lossviz import figures

    metric = figures.default_metric(surface, wanted)
    return figures.write_figure(figures.surface_figure(surface, metric, title=title + metric), path)
