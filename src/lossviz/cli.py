"""The ``lossviz`` command line: surfaces in the reference's file layout, plots, and file summaries.

``lossviz surface`` takes the flags of ``tomgoldstein/loss-landscape``'s ``plot_surface.py``, in our
spelling (``--model-file``) and in the reference's (``--model_file``; the table is
:data:`lossviz.reference_flags.ALIASES`), so its README commands run with ``python plot_surface.py``
replaced by ``lossviz surface``::

    lossviz surface --model resnet56 --model-file model_300.t7 --dataset cifar10 --data-root data \
        --x=-1:1:51 --y=-1:1:51 --out resnet56.h5 --dir-out resnet56_dirs.h5 --plot
    mpiexec -n 4 lossviz surface --mpi --model vgg9 --x=-0.5:1.5:401 --dir_type states \
        --model_file a/model_300.t7 --model_file2 b/model_300.t7 --plot
    lossviz surface --model mypkg.nets:build --dataset mypkg.data:load --data-kwargs '{"n": 500}' \
        --split both --x=-1:1:101 --y=-1:1:101 --adaptive --out big.h5
    lossviz plot resnet56.h5            # plot_2D.py / plot_1D.py's figures, PNG and PDF
    lossviz trajectory --model resnet56 --model_folder run --max_epoch 300   # plot_trajectory.py
    lossviz vtp resnet56.h5 --zmax 10 --log                                  # h52vtp.py
    lossviz hessian --model resnet56 --model_file model_300.t7 --x=-1:1:21   # plot_hessian_eigen.py
    lossviz info resnet56.h5
    lossviz import trained_nets/resnet56_sgd --project runs/resnet56 --model resnet56 --data cifar10

Where the reference and lossviz differ, lossviz says so: ``--dir-file`` must name an existing file (a
typo must not draw new directions; ``--dir-out`` writes one); without ``--out`` the files are named from
the flags as the reference names them; a pasted reference command that relied on the reference's
defaults (no normalization, cifar10, resnet56) is told once which ones lossviz used. ``--seed 123`` gives
the reference's directions (it seeds, builds the model, then draws). Under ``mpiexec -n N`` (N >= 1)
every rank evaluates.

Resumable: the partial surface is written to ``--out`` every ``--flush-every`` seconds and on SIGTERM /
SIGINT (exit status 128 + the signal); the same command resumes it (unfinished points NaN; a reference
file's ``-1`` points are unfinished), and refuses an ``--out`` holding another surface unless
``--overwrite``.

``--dataset package.module:factory`` calls ``factory(**data_kwargs)``, which returns ``(X, y)``
tensors or a Dataset (the train split) or ``{"train": ..., "test": ...}``. ``--adaptive``
(:func:`lossviz.refine.refine_surface`, also under ``--mpi``) and ``--subsample``
(:func:`lossviz.subsample.subsampled_surface`) evaluate fewer forward passes and write each
metric's estimated error as ``<metric>_err`` (at the end: they are not resumable). ``lossviz import``
reads a folder of checkpoints (the
reference's ``model_{e}.t7``, ``.pt``, Lightning ``.ckpt``, Hugging Face ``checkpoint-N/``, safetensors)
into a project (:meth:`lossviz.session.Session.import_checkpoints`).

Bad input (a malformed grid spec, an unknown model, a checkpoint that does not fit the model, a file
without the expected datasets) ends with exit status 2 and a one-line message before any point is
computed, leaving the output files absent or unchanged. ``LOSSVIZ_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence

import numpy as np

from lossviz.cli_inputs import CLIError, _json_kwargs, _one_line, _read_surface
from lossviz.cli_plot import add_plot_arguments, add_plot_parser, cmd_plot
from lossviz.cli_resume import FLUSH_SECONDS
from lossviz.cli_scripts import add_hessian_parser, add_trajectory_parser, add_vtp_parser
from lossviz.cli_surface import _default_of, cmd_surface
from lossviz.reference_flags import flags, loss_name, rule_name

__all__ = ["CLIError", "build_parser", "main"]

EXIT_USAGE = 2
NORMALIZATIONS = ("filter", "layer", "model", "weight", "dfilter", "dlayer", "none")
PLOT_FORMATS = ("both", "png", "pdf", "html")


# ---------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lossviz",
        description="Loss landscapes of PyTorch models (Li et al. 2018), in the reference's HDF5 layout.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    s = sub.add_parser(
        "surface",
        help="compute a 1D/2D loss surface (or a two-model interpolation) into an HDF5 file",
        description="Loss and accuracy on a grid theta0 + x*d1 (+ y*d2) around a model. The reference's "
                    "flag spellings (--model_file, --dir_type, --xignore, ...) are accepted too.",
        formatter_class=_HelpFormatter,
    )
    add_surface_arguments(s)
    g = s.add_argument_group("fewer forward passes")
    g.add_argument("--adaptive", action="store_true",
                   help="lossviz.refine.refine_surface: a coarse grid, then the points where the surface has "
                        "structure; the rest interpolated, with estimated errors <metric>_err in the file")
    g.add_argument("--rtol", type=float, default=None,
                   help="--adaptive: relative error trusted to interpolation (default <refine.rtol>)")
    g.add_argument("--budget", type=float, default=None,
                   help="--adaptive: most points evaluated, a fraction of the grid (default <refine.budget>)")
    g.add_argument("--subsample", action="store_true",
                   help="lossviz.subsample.subsampled_surface: each point's loss from growing random subsets "
                        "of the data, standard errors <metric>_err in the file")
    g.add_argument("--sample-rtol", type=float, default=None,
                   help="--subsample: stop a point once its standard error is below this fraction of its loss "
                        "(default <subsample.rtol>)")
    g = s.add_argument_group("metrics")
    g.add_argument("--metrics", type=metric_names, default=None, metavar="NAMES",
                   help="comma-separated metrics of every split: " + ", ".join(_metric_choices())
                        + " (default loss,acc; acc where one is defined, the next-token accuracy for "
                          "--loss causal_lm; perplexity: exp of the whole split's mean token loss), written "
                          "as <split>_<metric> (train_perplexity, ...)")
    add_plot_arguments(s.add_argument_group("plot (--plot)"))
    s.set_defaults(handler=cmd_surface)

    add_plot_parser(sub, cmd_plot)
    add_trajectory_parser(sub)
    add_vtp_parser(sub)
    add_hessian_parser(sub)
    i = sub.add_parser("info", help="summarize a surface file")
    i.add_argument("file", help="surface HDF5 file (ours or the reference's)")
    i.set_defaults(handler=cmd_info)

    m = sub.add_parser("models", help="list the zoo's models and data sets")
    m.set_defaults(handler=cmd_models)

    im = sub.add_parser(
        "import", help="import a folder of checkpoints (yours, Lightning's, the HF Trainer's) into a project",
        description="Import checkpoint files (.t7/.pt/.pth/.ckpt/.bin/.safetensors, HF checkpoint-N/ folders) "
                    "into a lossviz project in one transaction; sub-folders become branches. Nothing is unpickled.",
    )
    im.add_argument("sources", nargs="+", metavar="SOURCE", help="a folder of checkpoints, or checkpoint files")
    im.add_argument("--project", required=True, help="the project folder (created when missing)")
    im.add_argument("--model", help="zoo name or package.module:factory (default: the project's)")
    im.add_argument("--model-kwargs", default="{}", metavar="JSON", help="builder arguments")
    im.add_argument("--data", help="zoo data set to evaluate the checkpoints on (default: the project's, or none)")
    im.add_argument("--strict", action="store_true", help="import nothing when any checkpoint file is refused")
    im.add_argument("--no-evaluate", action="store_true", help="store the files' own metrics only")
    im.set_defaults(handler=cmd_import)
    return parser


def add_surface_arguments(s: argparse.ArgumentParser) -> None:
    """The model, grid, direction, data and run flags of ``surface`` (shared with ``hessian``), each
    also under the reference's spelling (:func:`lossviz.reference_flags.flags`)."""
    g = s.add_argument_group("model")
    g.add_argument("--model", default=None,
                   help="zoo name (see `lossviz models`) or package.module:factory (default mlp; resnet56 in a "
                        "command with the reference's spellings, as plot_surface.py)")
    g.add_argument("--model-kwargs", default="{}", metavar="JSON",
                   help='builder arguments, e.g. \'{"num_classes": 100}\'')
    g.add_argument(*flags("--model-file"), help="checkpoint of the center model (.pt/.pth/.t7/.safetensors)")
    g.add_argument(*flags("--model-file2"),
                   help="second checkpoint: the x direction runs from --model-file (0) to it (1)")
    g.add_argument(*flags("--model-file3"),
                   help="third checkpoint: the y direction runs from --model-file (0) to it (1)")
    g.add_argument(*flags("--model-folder"), default="",
                   help="folder the --model-file* paths are relative to (default: as given)")
    g = s.add_argument_group("grid and directions")
    g.add_argument("--x", default="-1:1:51", metavar="MIN:MAX:NUM", help="x coefficients (default -1:1:51)")
    g.add_argument("--y", default=None, metavar="MIN:MAX:NUM", help="y coefficients: gives a 2D surface")
    g.add_argument(*flags("--dir-type"), choices=("weights", "states"), default=None,
                   help="weights (parameters) or states (state dict with BN statistics); "
                        "default weights, states for --model-file2")
    for axis in ("x", "y"):
        g.add_argument(f"--{axis}norm", type=rule_name, choices=NORMALIZATIONS, default=None,
                       help=f"{axis} direction normalization (default filter; the reference's '' is none)")
        g.add_argument(f"--{axis}ignore", type=rule_name, choices=("biasbn", "none"), default=None,
                       help="biasbn: zero the 1-D entries (default); none (the reference's ''): set them to "
                            "the model's own values")
    g.add_argument(*flags("--same-dir"), action="store_true", help="use the x direction for y too")
    g.add_argument("--seed", type=int, default=0,
                   help="seeds torch before the models are built and the random directions drawn from the "
                        "same stream, in plot_surface.py's order: --seed 123 gives the reference's directions "
                        "for the same model (it always seeds 123)")
    g.add_argument(*flags("--dir-file"), help="existing direction file (reference layout) to read; refused if absent")
    g.add_argument("--dir-out", help="direction file to write the directions to (read if it exists); default "
                                     "with no --out: named from the flags as the reference names it")
    g.add_argument("--idx", type=int, default=0, help="the reference's repetition index: only in file names")
    g = s.add_argument_group("data")
    g.add_argument("--dataset", default=None,
                   help="zoo data set (spirals, digits, mnist, cifar10, fakedata) or package.module:factory "
                        "(default spirals; cifar10 from cifar10/data in a command with the reference's "
                        "spellings, as plot_surface.py), "
                        "called with --data-kwargs and returning (X, y) tensors, a torch Dataset, or "
                        "{\"train\": ..., \"test\": ...} of those")
    g.add_argument(*flags("--data-root"), help="folder of mnist / cifar10")
    g.add_argument("--data-kwargs", default="{}", metavar="JSON", help='loader arguments, e.g. \'{"n": 500}\'')
    g.add_argument("--split", choices=("train", "test", "both"), default="train")
    g.add_argument(*flags("--raw-data"), action="store_true",
                   help="mnist / cifar10 without the mean/std normalization (normalize=False)")
    g.add_argument(*flags("--data-split"), type=int, default=1,
                   help="cut the train split into this many contiguous parts ... (default 1)")
    g.add_argument(*flags("--split-idx"), type=int, default=0, help="... and evaluate on this one (from 0)")
    g.add_argument(*flags("--batch-size"), type=int, default=None,
                   help="data batch size: pins the engine's plan (default: measured against the plain loop)")
    g.add_argument("--max-samples", type=int, default=None, help="evaluate on the first N samples only")
    g.add_argument("--forward", default=None, metavar="MODULE:FUNCTION",
                   help="forward(model, batch) -> outputs: how to call the model on a batch (default: model(x), "
                        "model(*x) for a tuple, model(**batch) for a dict; see lossviz.batches)")
    g.add_argument(*flags("--loss"), default="cross_entropy", type=loss_name, choices=_loss_names(),
                   help="a name of lossviz.losses.LOSS_NAMES (default cross_entropy; the reference's "
                        "crossentropy is cross_entropy); mse on class labels is the reference's MSE of softmax "
                        "outputs and one-hot labels, on float targets plain MSE")
    g = s.add_argument_group("run and output")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    g.add_argument(*flags("--cuda"), action="store_true", help="--device cuda (the reference's flag)")
    g.add_argument("--ngpu", type=int, default=1,
                   help="evaluate on GPUs cuda:0..N-1 at once (one evaluator per GPU; default 1)")
    g.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    g.add_argument("--strategy", choices=("auto", "vmap", "loop"), default="auto",
                   help="engine strategy: auto measures vmap and other batch sizes against the plain loop and "
                        "keeps a rival only if it is clearly faster; vmap or loop pins it (default auto)")
    g.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads while evaluating on CPU (default: 1 per worker with --mpi, "
                        "else measured: 1 or the CPUs available); the reference's --threads counts data "
                        "loader workers, which in-memory tensors do not need")
    g.add_argument(*flags("--out"), default=None,
                   help="surface file to write; resumed when it holds this surface's unfinished points "
                        "(default: named from the flags as the reference names it)")
    g.add_argument("--overwrite", action="store_true",
                   help="start afresh even if --out holds a partial or another surface")
    g.add_argument("--flush-every", type=float, default=FLUSH_SECONDS, metavar="SECONDS",
                   help=f"write the partial surface to --out at least this often (default {FLUSH_SECONDS:g})")
    g.add_argument("--plot", nargs="?", const="both", choices=PLOT_FORMATS, default=None,
                   help="also write plots next to --out: png and pdf (both, the default), png or pdf "
                        "(matplotlib, the reference's figures) or html (plotly)")
    g.add_argument(*flags("--metric"), default=None, help="metric to plot (default: the first split's loss)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument(*flags("--mpi"), action="store_true",
                   help="run under `mpiexec -n N` (N >= 1): every rank evaluates chunks, rank 0 also writes "
                        "the files (needs mpi4py: pip install 'lossviz[mpi]')")
    g.add_argument("--trainloader", help=argparse.SUPPRESS)
    g.add_argument("--testloader", help=argparse.SUPPRESS)


# ---------------------------------------------------------------------------------------- helpers
def _loss_names() -> list[str]:
    """The one table of loss names, :data:`lossviz.losses.LOSS_NAMES` (torch-free)."""
    from lossviz.losses import LOSS_NAMES

    return sorted(LOSS_NAMES)


def _metric_choices() -> tuple[str, ...]:
    """The one table of metric names, :data:`lossviz.losses.METRIC_NAMES` (torch-free)."""
    from lossviz.losses import METRIC_NAMES

    return METRIC_NAMES


def metric_names(text: str) -> list[str]:
    """``--metrics loss,acc,perplexity`` as a list of names of :data:`lossviz.losses.METRIC_NAMES`;
    an unknown or missing name is argparse's usage error naming the choices (before any work)."""
    names = [n.strip() for n in text.split(",")]
    choices = _metric_choices()
    bad = [n for n in names if n not in choices]
    if bad:
        raise argparse.ArgumentTypeError(
            f"unknown metric {bad[0]!r} in {text!r}: give a comma-separated list of {', '.join(choices)} "
            "(e.g. --metrics loss,acc,perplexity)"
        )
    return list(dict.fromkeys(names))


class _HelpFormatter(argparse.HelpFormatter):
    """Writes ``<refine.rtol>`` in a flag's help as :func:`_default_of`'s value when that help is shown,
    so that building the parser imports no numeric module (``lossviz --help`` does not import torch)."""

    def _expand_help(self, action: argparse.Action) -> str:
        text = super()._expand_help(action)
        return re.sub(r"<(refine|subsample)\.(\w+)>", lambda m: str(_default_of(m.group(1), m.group(2))), text)


# ---------------------------------------------------------------------------------------- commands
def cmd_info(args) -> int:
    from lossviz.figures import axis_text

    surface = _read_surface(args.file)
    lines = [f"{args.file}: {surface.ndim}D surface, shape {'x'.join(map(str, surface.shape))} (ny x nx)"
             if surface.ndim == 2 else f"{args.file}: 1D surface, {surface.shape[0]} points"]
    lines.append(f"  x: {axis_text(surface.x)}")
    if surface.y is not None:
        lines.append(f"  y: {axis_text(surface.y)}")
    lines.append(f"  computed: {int(surface.done.sum())}/{surface.done.size} points")
    center = tuple(int(np.argmin(np.abs(a))) for a in ([surface.y] if surface.y is not None else []) + [surface.x])
    for name, arr in surface.values.items():
        arr = np.asarray(arr, dtype=np.float64)
        finite = arr[np.isfinite(arr)]
        rng = f"min {finite.min():.6g}, max {finite.max():.6g}" if finite.size else "no finite values"
        lines.append(f"  {name}: {rng}, at the point nearest the origin {arr[center]:.6g}, "
                     f"{int(np.isnan(arr).sum())} NaN")
    for name, arr in surface.errors.items():
        arr = np.asarray(arr, dtype=np.float64)
        worst = f"{np.nanmax(arr):.3g}" if np.isfinite(arr).any() else "nan"
        lines.append(f"  {name}_err: estimated error, largest {worst}")
    meta = surface.meta or {}
    adaptive = meta.get("adaptive") or {}
    if adaptive.get("method") == "refine":
        lines.append(f"  adaptive: {adaptive.get('n_evaluated')}/{surface.done.size} points evaluated, "
                     f"the rest interpolated ({adaptive.get('rounds')} rounds)")
    elif adaptive.get("method") == "subsample":
        lines.append(f"  subsample: {100 * float(adaptive.get('fraction', 0)):.1f}% of the sample evaluations "
                     f"of the full data ({adaptive.get('levels')} levels)")
    for key in ("dir_file", "kind", "method", "normalization", "ignore", "seed", "model_name", "model_file",
                "model_file2", "dataset", "loss"):
        if meta.get(key) not in (None, ""):
            lines.append(f"  {key}: {meta[key]}")
    print("\n".join(lines))
    return 0


def cmd_models(args) -> int:
    from lossviz.zoo import list_data, list_models

    print("models: " + ", ".join(list_models()) + ", torchvision:<name>, package.module:factory")
    print("data sets: " + ", ".join(list_data()))
    return 0


def cmd_import(args) -> int:
    """``lossviz import``: :meth:`lossviz.session.Session.import_checkpoints` into ``--project``."""
    from lossviz.session import Session
    from lossviz.store import read_summary

    stored = read_summary(args.project) or {}
    if args.model is None and not stored.get("model"):
        raise CLIError(f"--project {args.project}: give --model (a zoo name or package.module:factory) to build "
                       "the checkpoints' model" + ("" if stored else " of the new project"))
    data = args.data if args.data else (None if stored.get("data") else False)
    kwargs = _json_kwargs(args.model_kwargs, "--model-kwargs")
    with Session(args.project, model=args.model, data=data, model_kwargs=kwargs or None, device="cpu") as session:
        result = session.import_checkpoints(args.sources if len(args.sources) > 1 else args.sources[0],
                                            strict=args.strict, evaluate=not args.no_evaluate)
    print(result)
    return 0


# ---------------------------------------------------------------------------------------- entry
_USER_ERRORS = (CLIError, ValueError, TypeError, FileNotFoundError, KeyError, OSError, RuntimeError, ImportError)


def _join_grid_values(argv: list[str]) -> list[str]:
    """``--x -1:1:51`` -> ``--x=-1:1:51``: argparse would take ``-1:1:51`` for an option."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("--x", "--y") and i + 1 < len(argv) and argv[i + 1].startswith("-") and ":" in argv[i + 1]:
            out.append(f"{a}={argv[i + 1]}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lossviz`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    parser = build_parser()
    try:
        args = parser.parse_args(_join_grid_values(argv))
    except SystemExit as e:  # argparse printed its usage message
        return int(e.code) if isinstance(e.code, int) else EXIT_USAGE
    args.argv = argv
    try:
        return int(args.handler(args) or 0)
    except _USER_ERRORS as e:
        if os.environ.get("LOSSVIZ_DEBUG"):
            raise
        print(f"lossviz {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"lossviz {args.command}: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
