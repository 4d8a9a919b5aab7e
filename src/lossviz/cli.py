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
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from lossviz.cli_inputs import (
    CLIError,
    _build_model,
    _device,
    _drawn_directions,
    _forward_hook,
    _gpu_executor,
    _json_kwargs,
    _load_splits,
    _one_line,
    _output_names,
    _read_direction_file,
    _resolve_reference_flags,
)
from lossviz.cli_plot import add_plot_arguments, add_plot_parser, cmd_plot
from lossviz.cli_resume import FLUSH_SECONDS, Interrupted, PartialWriter, resumable, resume_key
from lossviz.cli_scripts import add_hessian_parser, add_trajectory_parser, add_vtp_parser
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


def _default_of(module: str, name: str) -> Any:
    """The default of ``refine_surface``'s / ``subsampled_surface``'s keyword ``name`` (one source)."""
    import inspect

    if module == "refine":
        from lossviz.refine import refine_surface as fn
    else:
        from lossviz.subsample import subsampled_surface as fn
    return inspect.signature(fn).parameters[name].default


def _plot_path(out: Path, fmt: str) -> Path:
    return out.with_suffix("." + fmt)


# ---------------------------------------------------------------------------------------- reference flags
# ---------------------------------------------------------------------------------------- commands
def cmd_surface(args) -> int:
    if getattr(args, "mpi", False):
        return _surface_under_mpi(args)
    return _surface(args)


def _surface_under_mpi(args) -> int:
    """``lossviz surface --mpi`` on every rank: rank 0 runs the command with
    :func:`lossviz.executors.mpi_rank_executor` (chunks go to every rank, rank 0's own worker thread
    included; the spec reaches each rank once), the others serve chunks until it is done and return 0.
    ``-n 1`` evaluates in-process. An interrupted run is flushed by rank 0, then the job aborted."""
    from lossviz.executors import mpi_rank_executor

    try:
        context = mpi_rank_executor()
        from mpi4py import MPI
    except ImportError as e:
        raise CLIError(str(e)) from None
    comm = MPI.COMM_WORLD
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // comm.Get_size()))  # ranks share the machine's cores
    if torch.cuda.is_available() and (args.device in ("auto", "cuda") or args.cuda):
        torch.cuda.set_device(comm.Get_rank() % max(1, torch.cuda.device_count()))  # the reference's rank % GPUs
    with context as executor:
        if executor is None:
            return 0  # a worker rank: it evaluated chunks until rank 0 finished
        code = _surface(args, executor)
    local = getattr(executor, "local_tasks", None)  # counted once its worker thread has joined
    if local is not None:
        print(f"lossviz surface: mpi: {comm.Get_size()} rank(s); rank 0 evaluated {local} chunk(s)", file=sys.stderr)
    if code > 128:
        comm.Abort(code)  # pre-empted: the partial surface is written; the workers may be gone
    return code


def prepare_run(args, executor=None) -> SimpleNamespace:
    """What ``surface`` and ``hessian`` share: the flags checked (cheap checks first: nothing is computed
    or written before the input is sound), the output names, the data, the models built under
    ``--seed``, the directions (read, or drawn and written) and the surface file's metadata."""
    import torch

    from lossviz.grid import SurfaceGrid
    from lossviz.params import ParamSpace

    grid = SurfaceGrid.from_specs(args.x, args.y)
    _resolve_reference_flags(args, grid)
    model_kwargs = _json_kwargs(args.model_kwargs, "--model-kwargs")
    data_kwargs = _json_kwargs(args.data_kwargs, "--data-kwargs")
    _check_surface_flags(args, grid)
    out, dir_out = _output_names(args, grid)
    _check_fewer_passes_flags(args)
    device = _device(args.device)
    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    kind = args.dir_type or ("states" if args.model_file2 else "weights")
    executor = executor if executor is not None else _gpu_executor(args)

    main_split = "test" if args.split == "test" else "train"
    data, test_data = _load_splits(args, data_kwargs)
    if args.plot:
        _check_plot_metric(args.metric, [main_split] + (["test"] if test_data is not None else []),
                           args.metrics or ["loss", "acc"])

    torch.manual_seed(args.seed)  # once, as the reference: the models' init, then the directions' draw
    model = _build_model(args, model_kwargs, args.model_file)
    from lossviz.data import CLI_SPELLING, probe_model_data

    forward = _forward_hook(args.forward)
    for part, part_name in ((data, args.dataset), (test_data, args.dataset + " (test split)")):
        if part is not None:  # a model/data/loss mismatch is named before any work
            probe_model_data(model, part, args.loss, model_name=args.model, data_name=part_name, spelling=CLI_SPELLING,
                             forward=forward)
    model_b = _build_model(args, model_kwargs, args.model_file2) if args.model_file2 else None

    common = dict(split=main_split, test_data=test_data, device=device, dtype=dtype, batch_size=args.batch_size,
                  strategy=args.strategy, threads=args.threads, loss=args.loss, forward=forward)
    if args.metrics is not None:
        common["metrics"] = tuple(args.metrics)
    space = ParamSpace(model, kind)
    center = space.vector(model, dtype=dtype).cpu()
    source = args.dir_file or (dir_out if dir_out is not None and Path(dir_out).is_file() else None)
    if source is not None:
        directions = _read_direction_file(source, space, grid)
    else:
        directions = _drawn_directions(args, grid, space, center, model_b,
                                       lambda: _build_model(args, model_kwargs, args.model_file3))
    dir_name = source or dir_out or ""
    if dir_out is not None and source is None:
        from lossviz.io.h5 import write_directions

        write_directions(dir_out, directions, space)
        print(f"wrote {dir_out} (directions)")
    elif source is not None and source == dir_out:
        print(f"read {dir_out} (directions)")

    meta = {
        "command": "lossviz " + " ".join(shlex.quote(a) for a in args.argv),
        "model_name": args.model, "model_kwargs": model_kwargs, "model_file": args.model_file,
        "model_file2": args.model_file2, "model_file3": args.model_file3, "dataset": args.dataset,
        "data_kwargs": data_kwargs, "dir_file": dir_name,
        **({"interpolation": {"a": 0.0, "b": 1.0}} if model_b is not None else {}),
    }
    key_facts = dict(x=grid.x.spec, y=grid.y.spec if grid.y else None, kind=kind, dataset=args.dataset,
                     data_kwargs=data_kwargs, split=args.split, loss=args.loss, max_samples=args.max_samples,
                     dtype=args.dtype, raw_data=args.raw_data, data_split=[args.data_split, args.split_idx])
    return SimpleNamespace(grid=grid, out=out, kind=kind, executor=executor, main_split=main_split, data=data,
                           test_data=test_data, model=model, common=common, space=space, center=center,
                           directions=directions, dir_name=dir_name, meta=meta, key_facts=key_facts)


def _surface(args, executor=None) -> int:
    run = prepare_run(args, executor)
    grid, out, kind, executor, main_split = run.grid, run.out, run.kind, run.executor, run.main_split
    model, data, test_data, directions, common, meta = (run.model, run.data, run.test_data, run.directions,
                                                        run.common, run.meta)
    dir_name = run.dir_name
    if args.adaptive:
        surface = _refined(args, model, data, directions, grid, kind, executor, common)
    elif args.subsample:
        surface = _subsampled(args, model, data, test_data, directions, grid, kind, executor, common)
    else:
        meta["resume_key"] = resume_key(run.center, directions.vectors, **run.key_facts)
        try:
            surface = _resumable_surface(args, out, meta, model, data, directions, grid, kind, executor, common)
        except Interrupted as e:
            print(f"lossviz surface: interrupted by {e}: the finished points are in {out}; run the same command "
                  "to resume", file=sys.stderr)
            return 128 + e.signum
    loss_name_ = f"{main_split}_loss"
    if loss_name_ in surface.values and np.isnan(surface.values[loss_name_]).all():
        why = "; ".join(surface.meta.get("errors", [])[:1]) or "every loss value is NaN"
        raise CLIError(f"no point of the surface could be evaluated ({why}); nothing was written")
    surface.meta.update(meta)
    from lossviz.io.h5 import write_surface

    if args.plot:  # a metric the surface lacks (accuracy of a regression) is refused before --out is written
        from lossviz.figures import default_metric

        args.metric = default_metric(surface, args.metric)
    write_surface(out, surface, dir_file=dir_name)
    n_nan = int(np.isnan(next(iter(surface.values.values()))).sum())
    print(f"wrote {out} ({'x'.join(map(str, surface.shape))} points, metrics {', '.join(surface.values)}"
          + (f", {n_nan} NaN" if n_nan else "") + ")")
    if args.adaptive or args.subsample:
        print(_cost_line(surface, f"{main_split}_loss"))
    if args.plot:
        _surface_plots(args, surface, out)
    return 0


def _check_surface_flags(args, grid) -> None:
    """The flags' values and combinations, before any work."""
    for flag, v in (("--batch-size", args.batch_size), ("--max-samples", args.max_samples),
                    ("--threads", args.threads), ("--ngpu", args.ngpu), ("--data-split", args.data_split)):
        if v is not None and v < 1:
            raise CLIError(f"{flag} must be a positive integer, got {v}")
    if not 0 <= args.split_idx < args.data_split:
        raise CLIError(f"--split-idx must be in 0..{args.data_split - 1} for --data-split {args.data_split}, "
                       f"got {args.split_idx}")
    if not args.flush_every > 0:
        raise CLIError(f"--flush-every must be a positive number of seconds, got {args.flush_every}")
    if args.model_file2 is not None and args.model_file is None:
        raise CLIError("--model-file2 needs --model-file: the line runs from --model-file to --model-file2")
    if args.model_file3 is not None and (args.model_file is None or grid.ndim == 1):
        raise CLIError("--model-file3 needs --model-file and --y: the y direction runs from --model-file to it")
    if args.same_dir and grid.ndim == 1:
        raise CLIError("--same-dir needs a 2D surface: pass --y too")
    if args.same_dir and args.model_file3:
        raise CLIError("--same-dir and --model-file3 both set the y direction: give one")
    if args.metrics is not None:
        from lossviz.losses import resolve_metrics

        try:  # the one rule of which metric fits which loss (perplexity: a negative log-likelihood)
            resolve_metrics(args.metrics, True, args.loss)
        except ValueError as e:
            raise CLIError(f"--metrics: {e}".replace("loss=", "--loss ")) from None
    for attr in ("model_file2", "model_file3"):
        path = getattr(args, attr)
        if path is not None and not Path(path).is_file():
            raise CLIError(f"model file {path!r} does not exist")


def _resumable_surface(args, out: Path, meta: dict, model, data, directions, grid, kind, executor, common):
    """:func:`lossviz.landscape.compute_surface` resuming the partial surface in ``out`` (checked by its
    ``resume_key``), the partial surface written to ``out`` every ``--flush-every`` seconds and on
    SIGTERM / SIGINT (:class:`lossviz.cli_resume.PartialWriter`)."""
    from lossviz.io.h5 import write_surface
    from lossviz.landscape import compute_surface

    splits = [common["split"]] + (["test"] if common["test_data"] is not None else [])
    extra = [m for m in common.get("metrics", ()) if m not in ("loss", "acc")]  # acc: only where defined
    needed = [f"{split}_{m}" for split in splits for m in ("loss", *extra)]
    found = None if args.overwrite else resumable(out, meta["resume_key"], needed,
                                                  (grid.x.values, grid.y.values if grid.y else None))
    if isinstance(found, str):
        raise CLIError(f"--out {str(out)!r} exists and cannot be resumed: {found}; pass --overwrite to replace it "
                       "or choose another --out")
    if found is not None:
        print(f"lossviz surface: resuming {out}: {found.n_done}/{found.done.size} points done", file=sys.stderr)

    def write(surface) -> None:
        surface.meta.update(meta)
        write_surface(out, surface, dir_file=meta["dir_file"])

    writer = PartialWriter(write, args.flush_every)
    with writer.on_signals():
        return compute_surface(model, data, directions, x=grid.x, y=grid.y, kind=kind, seed=args.seed,
                               executor=executor, progress=not args.no_progress, resume=found, callback=writer,
                               chunk_size=_chunk_size(grid.size, executor), **common)


def _chunk_size(n_points: int, executor) -> int | None:
    """With several workers, chunks of at most 64 points and at least 4 per worker (every rank gets work,
    and finished points reach --out often); in-process, the engine's default."""
    from lossviz.executors import worker_count

    workers = worker_count(executor) if executor is not None else 1
    if workers is None or workers <= 1:
        return None
    return max(1, min(64, -(-n_points // (4 * workers))))


def _surface_plots(args, surface, out: Path) -> None:
    """``--plot``: html through :mod:`lossviz.figures`; png / pdf as ``plot_2D.py`` / ``plot_1D.py`` draw
    them: next to ``--out`` the contours (2D) or loss and accuracy (1D), without ``--out`` the reference's
    figures under its names."""
    if args.plot == "html":
        written, note = _plot(surface, args.metric, f"{args.model}: ", _plot_path(out, "html"))
        if note:
            print(f"lossviz: note: {note}", file=sys.stderr)
        print(f"wrote {written}")
        return
    from lossviz.cli_plot import main_figure, reference_plots

    formats = ("png", "pdf") if args.plot == "both" else (args.plot,)
    if args.out is None:  # files named as the reference names them
        images = reference_plots(surface, str(out), args, formats=formats)
    else:
        images = [main_figure(surface, args, _plot_path(out, fmt)) for fmt in formats]
    for path in images:
        print(f"wrote {path}")


def _check_plot_metric(metric: str | None, splits: list[str], metrics: Sequence[str] = ("loss", "acc")) -> None:
    """``--metric`` (for ``--plot``) names a metric a surface of these splits and ``--metrics`` can
    have: checked before any work, so a typo writes nothing."""
    names = [f"{split}_{m}" for split in splits for m in ("loss", *(m for m in metrics if m != "loss"))]
    if metric is not None and metric not in names:
        raise CLIError(f"--metric {metric!r} is not a metric of this surface: use one of {', '.join(names)} "
                       "(accuracy for class labels only); nothing was computed or written")


def _check_fewer_passes_flags(args) -> None:
    """--adaptive / --subsample and their options: consistent, in range, before any work."""
    if args.adaptive and args.subsample:
        raise CLIError("--adaptive and --subsample cannot be combined (refinement needs exact values at the "
                       "points it evaluates); choose one")
    for flag, value, owner in (("--rtol", args.rtol, "adaptive"), ("--budget", args.budget, "adaptive"),
                               ("--sample-rtol", args.sample_rtol, "subsample")):
        if value is not None and not getattr(args, owner):
            raise CLIError(f"{flag} is an option of --{owner}: add --{owner} or drop {flag}")
    if args.adaptive:
        args.rtol = _default_of("refine", "rtol") if args.rtol is None else args.rtol
        args.budget = _default_of("refine", "budget") if args.budget is None else args.budget
        from lossviz.refine import check_refine_options

        try:
            check_refine_options(args.rtol, args.budget, _default_of("refine", "batch"))  # no --batch flag
        except ValueError as e:
            raise CLIError(f"--{e}") from None
    if args.subsample and args.metrics is not None and set(args.metrics) - {"loss", "acc"}:
        raise CLIError(f"--subsample estimates the loss and accuracy only, not {', '.join(args.metrics)}: drop "
                       "--subsample, or give --metrics loss,acc")
    if args.subsample:
        args.sample_rtol = _default_of("subsample", "rtol") if args.sample_rtol is None else args.sample_rtol
        if not args.sample_rtol > 0:
            raise CLIError(f"--sample-rtol must be a positive relative error such as 0.01, got {args.sample_rtol}")


def _round_reporter(args, what: str):
    """A callback printing one progress line per round to stderr (none with --no-progress)."""
    if args.no_progress:
        return None

    def report(surface, n, total):
        print(f"lossviz: {what} {n}/{total}", file=sys.stderr, flush=True)

    return report


def _refined(args, model, data, directions, grid, kind, executor, common):
    """``--adaptive``: :func:`lossviz.refine.refine_surface` (every round through ``executor``)."""
    from lossviz.refine import refine_surface

    return refine_surface(model, data, directions, x=grid.x, y=grid.y, rtol=args.rtol, budget=args.budget,
                          kind=kind, seed=args.seed, executor=executor,
                          callback=_round_reporter(args, "adaptive: points evaluated"), **common)


def _subsampled(args, model, data, test_data, directions, grid, kind, executor, common):
    """``--subsample``: :func:`lossviz.subsample.subsampled_surface` on the main split, and on the
    test split with the same directions for ``--split both`` (its own sample order and errors)."""
    from lossviz.subsample import subsampled_surface

    opts = {k: v for k, v in common.items() if k not in ("test_data", "split", "metrics")}

    def run(split_data, split, dirs):
        return subsampled_surface(model, split_data, dirs, x=grid.x, y=grid.y, rtol=args.sample_rtol,
                                  sample_seed=args.seed, kind=kind, seed=args.seed,
                                  executor=executor, split=split,
                                  callback=_round_reporter(args, f"subsample ({split}): level, points active"),
                                  **opts)

    surface = run(data, common["split"], directions)
    if test_data is not None:
        test = run(test_data, "test", surface.directions)
        surface.values.update(test.values)
        surface.errors.update(test.errors)
        surface.done = surface.done & test.done
        surface.meta["metrics"] = list(surface.values)
        surface.meta["n_samples"] = {**surface.meta.get("n_samples", {}), **test.meta.get("n_samples", {})}
        surface.meta["adaptive_test"] = test.meta["adaptive"]
    return surface


def _cost_line(surface, loss_name: str) -> str:
    """One line: what ``--adaptive`` / ``--subsample`` evaluated, against the full grid's cost."""
    info = surface.meta.get("adaptive", {})
    size = int(np.prod(surface.shape))
    err = surface.errors.get(loss_name)
    worst = float(np.nanmax(err)) if err is not None and np.isfinite(err).any() else float("nan")
    if info.get("method") == "refine":
        n = int(info["n_evaluated"])
        return (f"adaptive: evaluated {n}/{size} grid points ({100 * n / size:.1f}%) in {info['rounds']} rounds; "
                f"largest estimated error of {loss_name} {worst:.3g}")
    total = int(size * next(iter(surface.meta.get("n_samples", {}).values()), 0))
    passes = int(info.get("sample_passes", 0))
    extra = surface.meta.get("adaptive_test")
    if extra is not None:  # --split both: the test split's passes too
        passes += int(extra.get("sample_passes", 0))
        total += int(size * surface.meta["n_samples"].get("test", 0))
    return (f"subsample: {passes}/{total} sample evaluations ({100 * passes / max(total, 1):.1f}%) in "
            f"{info.get('levels')} levels; largest standard error of {loss_name} {worst:.3g}")


def _read_surface(path: str):
    from lossviz.io.h5 import read_surface

    if not Path(path).is_file():
        raise CLIError(f"surface file {path!r} does not exist")
    return read_surface(path)


def _plot(surface, wanted: str | None, title: str, path: Path) -> tuple[Path, str | None]:
    """Write the plot of ``surface``'s metric (``wanted`` or the default) to ``path``, titled
    ``title`` + the metric: the figure and the writer of :mod:`lossviz.figures`."""
    from lossviz import figures

    metric = figures.default_metric(surface, wanted)
    return figures.write_figure(figures.surface_figure(surface, metric, title=title + metric), path)


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
