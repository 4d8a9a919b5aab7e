"""The ``lossviz`` command line: surfaces in the reference's file layout, plots, and file summaries.

``lossviz surface`` takes the flags of ``tomgoldstein/loss-landscape``'s ``plot_surface.py`` in our
spelling (``--model-file`` for ``--model_file``, ...)::

    lossviz surface --model resnet56 --model-file model_300.t7 --dataset cifar10 --data-root data \
        --x=-1:1:51 --y=-1:1:51 --out resnet56.h5 --dir-file resnet56_dirs.h5 --plot
    lossviz surface --model mlp --model-file a.pt --model-file2 b.pt --x=-0.5:1.5:401 --out interp.h5
    lossviz surface --model mypkg.nets:build --dataset mypkg.data:load --data-kwargs '{"n": 500}' \
        --split both --x=-1:1:101 --y=-1:1:101 --adaptive --out big.h5
    lossviz plot resnet56.h5 --out resnet56.html
    lossviz info resnet56.h5
    lossviz import trained_nets/resnet56_sgd --project runs/resnet56 --model resnet56 --data cifar10

``--dataset package.module:factory`` calls ``factory(**data_kwargs)``, which returns ``(X, y)``
tensors or a Dataset (the train split) or ``{"train": ..., "test": ...}``. ``--adaptive``
(:func:`lossviz.refine.refine_surface`, also under ``--mpi``) and ``--subsample``
(:func:`lossviz.subsample.subsampled_surface`) evaluate fewer forward passes and write each
metric's estimated error as ``<metric>_err``. ``lossviz import`` reads a folder of checkpoints (the
reference's ``model_{e}.t7``, ``.pt``, Lightning ``.ckpt``, Hugging Face ``checkpoint-N/``, safetensors)
into a project (:meth:`lossviz.session.Session.import_checkpoints`).

Bad input (a malformed grid spec, an unknown model, a checkpoint that does not fit the model, a file
without the expected datasets) ends with exit status 2 and a one-line message; output files are
written atomically at the end, so a failed run leaves them absent or unchanged. ``LOSSVIZ_DEBUG=1``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["build_parser", "main"]

EXIT_USAGE = 2
NORMALIZATIONS = ("filter", "layer", "model", "weight", "dfilter", "dlayer", "none")
PLOT_FORMATS = ("png", "html")


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


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
        description="Loss and accuracy on a grid theta0 + x*d1 (+ y*d2) around a model.",
        formatter_class=_HelpFormatter,
    )
    g = s.add_argument_group("model")
    g.add_argument("--model", default="mlp", help="zoo name (see `lossviz models`) or package.module:factory")
    g.add_argument("--model-kwargs", default="{}", metavar="JSON",
                   help='builder arguments, e.g. \'{"num_classes": 100}\'')
    g.add_argument("--model-file", help="checkpoint of the center model (.pt/.pth/.t7/.safetensors)")
    g.add_argument("--model-file2", help="second checkpoint: the x direction runs from --model-file (0) to it (1)")
    g = s.add_argument_group("grid and directions")
    g.add_argument("--x", default="-1:1:51", metavar="MIN:MAX:NUM", help="x coefficients (default -1:1:51)")
    g.add_argument("--y", default=None, metavar="MIN:MAX:NUM", help="y coefficients: gives a 2D surface")
    g.add_argument("--dir-type", choices=("weights", "states"), default=None,
                   help="weights (parameters) or states (state dict with BN statistics); "
                        "default weights, states for --model-file2")
    g.add_argument("--xnorm", choices=NORMALIZATIONS, default="filter",
                   help="x direction normalization (default filter)")
    g.add_argument("--ynorm", choices=NORMALIZATIONS, default="filter",
                   help="y direction normalization (default filter)")
    g.add_argument("--xignore", choices=("biasbn", "none"), default="biasbn",
                   help="biasbn: zero the 1-D entries (default)")
    g.add_argument("--yignore", choices=("biasbn", "none"), default="biasbn")
    g.add_argument("--same-dir", action="store_true", help="use the x direction for y too")
    g.add_argument("--seed", type=int, default=0, help="seed of the random directions and of the model's init")
    g.add_argument("--dir-file", help="direction file (reference layout): read if it exists, else written")
    g = s.add_argument_group("data")
    g.add_argument("--dataset", default="spirals",
                   help="zoo data set (spirals, digits, mnist, cifar10, fakedata) or package.module:factory, "
                        "called with --data-kwargs and returning (X, y) tensors, a torch Dataset, or "
                        "{\"train\": ..., \"test\": ...} of those")
    g.add_argument("--data-root", help="folder of mnist / cifar10")
    g.add_argument("--data-kwargs", default="{}", metavar="JSON", help='loader arguments, e.g. \'{"n": 500}\'')
    g.add_argument("--split", choices=("train", "test", "both"), default="train")
    g.add_argument("--batch-size", type=int, default=None,
                   help="data batch size: pins the engine's plan (default: measured against the plain loop)")
    g.add_argument("--max-samples", type=int, default=None, help="evaluate on the first N samples only")
    g.add_argument("--loss", default="cross_entropy", choices=_loss_names(),
                   help="a name of lossviz.losses.LOSS_NAMES (default cross_entropy); mse on class labels is the "
                        "reference's MSE of softmax outputs and one-hot labels, on float targets plain MSE")
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
    g = s.add_argument_group("run and output")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    g.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    g.add_argument("--strategy", choices=("auto", "vmap", "loop"), default="auto",
                   help="engine strategy: auto measures vmap and other batch sizes against the plain loop and "
                        "keeps a rival only if it is clearly faster; vmap or loop pins it (default auto)")
    g.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads while evaluating on CPU (default: 1 per worker with --mpi, "
                        "else measured: 1 or the CPUs available)")
    g.add_argument("--out", default="surface.h5", help="surface file to write (default surface.h5)")
    g.add_argument("--plot", nargs="?", const="png", choices=PLOT_FORMATS, default=None,
                   help="also write a plot next to --out: png (needs kaleido; else HTML) or html")
    g.add_argument("--metric", default=None, help="metric to plot (default: the first split's loss)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--mpi", action="store_true",
                   help="run under `mpiexec -n N`: rank 0 coordinates and writes the files, the other "
                        "N-1 ranks evaluate chunks (needs mpi4py: pip install 'lossviz[mpi]')")
    s.set_defaults(handler=cmd_surface)

    p = sub.add_parser("plot", help="plot a surface file (HTML, or PNG with kaleido)")
    p.add_argument("file", help="surface HDF5 file (ours or the reference's)")
    p.add_argument("--out", default=None, help="output .html or .png (default: FILE with .html)")
    p.add_argument("--metric", default=None, help="metric to plot (default: train_loss or the first)")
    p.set_defaults(handler=cmd_plot)

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


# ---------------------------------------------------------------------------------------- helpers
def _loss_names() -> list[str]:
    """The one table of loss names, :data:`lossviz.losses.LOSS_NAMES` (torch-free)."""
    from lossviz.losses import LOSS_NAMES

    return sorted(LOSS_NAMES)


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


def _json_kwargs(text: str, flag: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise CLIError(f"{flag} is not valid JSON ({e.msg} at column {e.colno}): write e.g. '{{\"n\": 500}}'") from None
    if not isinstance(value, dict):
        raise CLIError(f"{flag} must be a JSON object such as '{{\"n\": 500}}', got {text!r}")
    return value


def _device(spec: str):
    import torch

    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except (RuntimeError, ValueError):
        raise CLIError(f"unknown --device {spec!r}: use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise CLIError(f"--device {spec}: CUDA is not available on this machine; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise CLIError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif dev.type not in ("cpu", "mps"):
        raise CLIError(f"unsupported --device {spec!r}: use cpu, cuda, cuda:N or auto")
    return dev


def _check_output_path(path: str, flag: str) -> Path:
    p = Path(path)
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise CLIError(f"{flag} {path!r}: folder {str(folder)!r} does not exist")
    if p.is_dir():
        raise CLIError(f"{flag} {path!r} is a folder; give a file name")
    return p


def _build_model(args, kwargs: dict, checkpoint: str | None):
    import torch

    from lossviz.io.checkpoints import load_checkpoint_into
    from lossviz.zoo import get_model

    torch.manual_seed(args.seed)  # a model without a checkpoint is its seeded initialization
    model = get_model(args.model, **kwargs)
    if checkpoint is not None:
        if not Path(checkpoint).is_file():
            raise CLIError(f"model file {checkpoint!r} does not exist")
        load_checkpoint_into(model, checkpoint)
    return model.eval()


def _factory_splits(spec: str, data_kwargs: dict) -> dict[str, Any]:
    """``{"train": ..., "test": ...}`` (either may be absent) from a ``--dataset module:factory``."""
    from lossviz.data import data_splits
    from lossviz.zoo.factory import import_factory

    try:
        factory = import_factory(spec, "--dataset", "the data")
    except ValueError as e:
        raise CLIError(str(e)) from None
    try:
        result = factory(**data_kwargs)
    except TypeError as e:
        raise CLIError(f"--dataset {spec!r}: calling it with --data-kwargs {json.dumps(data_kwargs)} failed "
                       f"({e}); pass the factory's arguments in --data-kwargs") from None
    try:
        return data_splits(result, f"--dataset {spec!r}")
    except ValueError as e:
        raise CLIError(str(e)) from None


def _load_splits(args, data_kwargs: dict) -> tuple[Any, Any]:
    """(main split data, test data for ``--split both`` or None), as EvalData."""
    from lossviz.data import as_eval_data

    wanted = {"train": ["train"], "test": ["test"], "both": ["train", "test"]}[args.split]
    if ":" in args.dataset:
        if args.data_root is not None:
            raise CLIError(f"--data-root is for zoo data sets; pass the folder to {args.dataset!r} "
                           'through --data-kwargs, e.g. \'{"root": "data"}\'')
        splits = _factory_splits(args.dataset, data_kwargs)
        for name in wanted:
            if name not in splits:
                raise CLIError(
                    f"--dataset {args.dataset!r} gives no {name!r} split but --split {args.split} needs it: "
                    f'return {{"train": ..., "test": ...}} from the factory, or use --split '
                    f"{'train' if name == 'test' else 'test'}")
    else:
        from lossviz.zoo import get_data

        train, test = get_data(args.dataset, args.data_root, **data_kwargs)
        splits = {"train": train, "test": test}
    out = []
    for name in wanted:
        try:
            out.append(as_eval_data(splits[name], args.max_samples))
        except (TypeError, ValueError) as e:
            raise CLIError(f"--dataset {args.dataset!r}, {name!r} split: {_one_line(e)}") from None
    return out[0], (out[1] if len(out) > 1 else None)


def _random_directions(space, center, args, ndim: int):
    """x then y drawn from one generator seeded ``--seed`` (the reference's order), each with its own
    normalization and ignore rule; ``--same-dir`` reuses x for y."""
    from lossviz.direction_spec import DirectionSpec
    from lossviz.directions import DirectionSet

    def rule(flag: str) -> str | None:
        return None if flag == "none" else flag

    drawn = 1 if ndim == 1 or args.same_dir else 2
    spec = DirectionSpec.parse(
        "random", drawn, seed=args.seed, kind=space.kind,
        normalization=(rule(args.xnorm), rule(args.ynorm))[:drawn],
        ignore=(rule(args.xignore), rule(args.yignore))[:drawn],
    )
    vecs = spec.vectors(space, center).vectors
    if ndim == 2 and args.same_dir:
        vecs.append(vecs[0].clone())
    meta = {"ynorm": rule(args.ynorm), "yignore": rule(args.yignore), "same_dir": bool(args.same_dir)}
    return DirectionSet(vecs, kind=space.kind, normalization=rule(args.xnorm), ignore=rule(args.xignore),
                        seed=args.seed, method="random", meta=meta if ndim == 2 else {})


def _plot_path(out: Path, fmt: str) -> Path:
    return out.with_suffix("." + fmt)


# ---------------------------------------------------------------------------------------- commands
def cmd_surface(args) -> int:
    if getattr(args, "mpi", False):
        return _surface_under_mpi(args)
    return _surface(args)


def _surface_under_mpi(args) -> int:
    """``lossviz surface --mpi`` on every rank: rank 0 runs the command with an
    ``mpi4py.futures.MPICommExecutor`` (the spec reaches each rank once), the others serve chunks
    until it is done and return 0."""
    from lossviz.executors import mpi_comm_executor

    try:
        context = mpi_comm_executor()
        from mpi4py import MPI
    except ImportError as e:
        raise CLIError(str(e)) from None
    size = MPI.COMM_WORLD.Get_size()
    if size < 2:
        raise CLIError("--mpi needs at least 2 processes (rank 0 coordinates): run it as "
                       "`mpiexec -n N lossviz surface --mpi ...` with N >= 2, or drop --mpi")
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // size))  # ranks share the machine's cores
    with context as executor:
        if executor is None:
            return 0  # a worker rank: it evaluated chunks until rank 0 finished
        return _surface(args, executor)


def _surface(args, executor=None) -> int:
    import torch

    from lossviz.grid import SurfaceGrid
    from lossviz.params import ParamSpace

    # validate everything cheap first: nothing is computed or written before the input is sound
    grid = SurfaceGrid.from_specs(args.x, args.y)
    model_kwargs = _json_kwargs(args.model_kwargs, "--model-kwargs")
    data_kwargs = _json_kwargs(args.data_kwargs, "--data-kwargs")
    for flag, v in (("--batch-size", args.batch_size), ("--max-samples", args.max_samples),
                    ("--threads", args.threads)):
        if v is not None and v < 1:
            raise CLIError(f"{flag} must be a positive integer, got {v}")
    out = _check_output_path(args.out, "--out")
    if args.dir_file is not None:
        _check_output_path(args.dir_file, "--dir-file")
        if Path(args.dir_file).resolve() == out.resolve():
            raise CLIError("--dir-file and --out name the same file; give two names")
    if args.model_file2 is not None and args.model_file is None:
        raise CLIError("--model-file2 needs --model-file: the line runs from --model-file to --model-file2")
    if args.same_dir and grid.ndim == 1:
        raise CLIError("--same-dir needs a 2D surface: pass --y too")
    _check_fewer_passes_flags(args)
    device = _device(args.device)
    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    kind = args.dir_type or ("states" if args.model_file2 else "weights")

    main_split = "test" if args.split == "test" else "train"
    data, test_data = _load_splits(args, data_kwargs)

    model = _build_model(args, model_kwargs, args.model_file)
    from lossviz.data import CLI_SPELLING, probe_model_data

    for part, part_name in ((data, args.dataset), (test_data, args.dataset + " (test split)")):
        if part is not None:  # a model/data/loss mismatch is named before any work
            probe_model_data(model, part, args.loss, model_name=args.model, data_name=part_name, spelling=CLI_SPELLING)
    model_b = _build_model(args, model_kwargs, args.model_file2) if args.model_file2 else None

    common = dict(split=main_split, test_data=test_data, device=device, dtype=dtype, batch_size=args.batch_size,
                  strategy=args.strategy, threads=args.threads, loss=args.loss)
    space = ParamSpace(model, kind)
    center = space.vector(model, dtype=dtype).cpu()
    dir_file_exists = args.dir_file is not None and Path(args.dir_file).exists()
    if dir_file_exists:
        from lossviz.io.h5 import read_directions

        directions = read_directions(args.dir_file, space)
        if directions.ndim != grid.ndim:
            raise CLIError(
                f"direction file {args.dir_file!r} holds {directions.ndim} direction(s) but the surface is "
                f"{grid.ndim}D: " + ("pass --y" if directions.ndim == 2 else "drop --y or use another --dir-file")
            )
    elif model_b is not None:
        from lossviz.directions import DirectionSet, target_direction

        space_b = ParamSpace(model_b, kind)
        target = target_direction(space, center, space_b.vector(model_b, dtype=dtype).cpu())
        vecs = [target]
        if grid.ndim == 2:  # the reference: x from model 1 to model 2, y random (or x again)
            vecs.append(target.clone() if args.same_dir else _random_directions(space, center, args, 2).vectors[1])
        directions = DirectionSet(vecs, kind=kind, normalization=None, ignore=None, seed=args.seed,
                                  method="target", meta={"model_file2": args.model_file2})
    else:
        directions = _random_directions(space, center, args, grid.ndim)

    if args.adaptive:
        surface = _refined(args, model, data, directions, grid, kind, executor, common)
    elif args.subsample:
        surface = _subsampled(args, model, data, test_data, directions, grid, kind, executor, common)
    else:
        from lossviz.landscape import compute_surface

        surface = compute_surface(model, data, directions, x=grid.x, y=grid.y, kind=kind, seed=args.seed,
                                  executor=executor, progress=not args.no_progress, **common)
    loss_name = f"{main_split}_loss"
    if loss_name in surface.values and np.isnan(surface.values[loss_name]).all():
        why = "; ".join(surface.meta.get("errors", [])[:1]) or "every loss value is NaN"
        raise CLIError(f"no point of the surface could be evaluated ({why}); nothing was written")
    surface.meta.update({
        "command": "lossviz " + " ".join(shlex.quote(a) for a in args.argv),
        "model_name": args.model,
        "model_kwargs": model_kwargs,
        "model_file": args.model_file,
        "model_file2": args.model_file2,
        "dataset": args.dataset,
        "data_kwargs": data_kwargs,
        "dir_file": args.dir_file or "",
    })
    if model_b is not None:
        surface.meta["interpolation"] = {"a": 0.0, "b": 1.0}

    from lossviz.io.h5 import write_directions, write_surface

    if args.dir_file is not None and not dir_file_exists:
        write_directions(args.dir_file, directions, space)
    write_surface(out, surface, dir_file=args.dir_file or "")
    n_nan = int(np.isnan(next(iter(surface.values.values()))).sum())
    print(f"wrote {out} ({'x'.join(map(str, surface.shape))} points, metrics {', '.join(surface.values)}"
          + (f", {n_nan} NaN" if n_nan else "") + ")")
    if args.dir_file is not None and not dir_file_exists:
        print(f"wrote {args.dir_file} (directions)")
    if args.adaptive or args.subsample:
        print(_cost_line(surface, f"{main_split}_loss"))
    if args.plot:
        written, note = _plot(surface, args.metric, f"{args.model}: ", _plot_path(out, args.plot))
        if note:
            print(f"lossviz: note: {note}", file=sys.stderr)
        print(f"wrote {written}")
    return 0


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

    opts = {k: v for k, v in common.items() if k not in ("test_data", "split")}

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


def cmd_plot(args) -> int:
    surface = _read_surface(args.file)
    out = Path(args.out) if args.out else Path(args.file).with_suffix(".html")
    _check_output_path(str(out), "--out")
    written, note = _plot(surface, args.metric, f"{Path(args.file).name}: ", out)
    if note:
        print(f"lossviz: note: {note}", file=sys.stderr)
    print(f"wrote {written}")
    return 0


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


def _one_line(exc: BaseException) -> str:
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    msg = " ".join(str(msg).split())
    return msg or type(exc).__name__


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
