"""What the ``lossviz surface`` flags name, built and checked: the model and its checkpoint, the data
splits, the ``--forward`` hook, the directions as ``plot_surface.py`` draws them, the reference's flags
mapped onto ours and the output file names. Every problem is a :class:`CLIError` naming the flag and the
fix (printed as one line by :func:`lossviz.cli.main`, exit status 2)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from lossviz.reference_flags import (
    REFUSED,
    direction_file_name,
    is_reference_command,
    refused_flags,
    surface_file_name,
)

RAW_DATA_SETS = ("mnist", "cifar10")
REFERENCE_DATA_ROOT = "cifar10/data"  # plot_surface.py's --datapath default


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


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
    from lossviz.io.checkpoints import load_checkpoint_into
    from lossviz.zoo import get_model

    model = get_model(args.model, **kwargs)  # consumes torch's global stream, seeded once by the caller
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

        if data_kwargs.get("augment"):
            raise CLIError("--data-kwargs augment: training-time augmentation changes every read; surfaces are "
                           "evaluated on the plain images (as the reference does): drop it")
        if args.raw_data:
            if args.dataset not in RAW_DATA_SETS:
                raise CLIError(f"--raw-data is for {' / '.join(RAW_DATA_SETS)} (their mean/std normalization); "
                               f"{args.dataset!r} has none: drop it")
            data_kwargs = {**data_kwargs, "normalize": False}
        train, test = get_data(args.dataset, args.data_root, **data_kwargs)
        splits = {"train": train, "test": test}
    out = []
    for name in wanted:
        cut = name == "train" and args.data_split > 1  # the reference cuts the train split only
        try:
            part = as_eval_data(splits[name], None if cut else args.max_samples)
        except (TypeError, ValueError) as e:
            raise CLIError(f"--dataset {args.dataset!r}, {name!r} split: {_one_line(e)}") from None
        out.append(_data_part(part, args.data_split, args.split_idx, args.max_samples) if cut else part)
    return out[0], (out[1] if len(out) > 1 else None)


def _forward_hook(spec: str | None):
    """The ``--forward`` hook imported from ``package.module:function`` (None: the calling rule)."""
    if spec is None:
        return None
    from lossviz.zoo.factory import import_factory

    try:
        return import_factory(spec, "--forward", "the model's outputs")
    except ValueError as e:
        raise CLIError(str(e)) from None


def _data_part(data, n_parts: int, index: int, max_samples: int | None):
    """Part ``index`` of ``n_parts`` contiguous parts of ``data`` (``dataloader.load_dataset``'s
    ``data_split`` / ``split_idx``), then its first ``max_samples``."""
    from lossviz.batches import slice_batch
    from lossviz.data import EvalData

    n = len(data)
    lo, hi = n * index // n_parts, min(n * (index + 1) // n_parts, n)
    hi = hi if max_samples is None else min(hi, lo + max_samples)
    if hi <= lo:
        raise CLIError(f"--data-split {n_parts}: part {index} of {n} samples is empty; use fewer parts")
    return EvalData.of(slice_batch(data.batch, lo, hi))


def _rule(flag: str | None) -> str | None:
    return None if flag in (None, "none") else flag


def _random_vector(space, center, generator, norm: str | None, ignore: str | None):
    from lossviz.directions import random_direction

    return random_direction(space, center, generator=generator, normalization=_rule(norm), ignore=_rule(ignore))


def _drawn_directions(args, grid, space, center, model_b, build_model_c):
    """The directions as ``plot_surface.py`` makes them: x the line to ``--model-file2`` or random, y
    the x direction (``--same-dir``), the line to ``--model-file3`` or random. Random ones are drawn
    from torch's global stream as it is after the models were built under ``--seed`` (the
    reference seeds, builds the model, then draws), x before y; ``--model-file3`` is built after x's
    draw, as there."""
    import torch

    from lossviz.directions import DirectionSet, target_direction
    from lossviz.params import ParamSpace

    def line_to(other):
        return target_direction(space, center, ParamSpace(other, space.kind).vector(other, dtype=center.dtype).cpu())

    generator = torch.Generator()
    generator.set_state(torch.get_rng_state())
    x = line_to(model_b) if model_b is not None else _random_vector(space, center, generator, args.xnorm, args.xignore)
    vecs = [x]
    if grid.ndim == 2:
        if args.same_dir:
            vecs.append(x.clone())
        elif args.model_file3:
            torch.set_rng_state(generator.get_state())
            vecs.append(line_to(build_model_c()))
        else:
            vecs.append(_random_vector(space, center, generator, args.ynorm, args.yignore))
    targets = {k: v for k, v in (("model_file2", args.model_file2), ("model_file3", args.model_file3)) if v}
    if targets:  # x's rules are recorded when x is random (y the line to --model-file3)
        x_random = model_b is None
        return DirectionSet(vecs, kind=space.kind, normalization=_rule(args.xnorm) if x_random else None,
                            ignore=_rule(args.xignore) if x_random else None, seed=args.seed, method="target",
                            meta=targets)
    meta = {"ynorm": _rule(args.ynorm), "yignore": _rule(args.yignore), "same_dir": bool(args.same_dir)}
    return DirectionSet(vecs, kind=space.kind, normalization=_rule(args.xnorm), ignore=_rule(args.xignore),
                        seed=args.seed, method="random", meta=meta if grid.ndim == 2 else {})


def _read_direction_file(path: str, space, grid):
    from lossviz.io.h5 import read_directions

    directions = read_directions(path, space)
    if directions.ndim != grid.ndim:
        raise CLIError(
            f"direction file {path!r} holds {directions.ndim} direction(s) but the surface is "
            f"{grid.ndim}D: " + ("pass --y" if directions.ndim == 2 else "drop --y or use another --dir-file")
        )
    return directions


def _resolve_reference_flags(args, grid) -> None:
    """The reference's flags to ours: refused ones end the run, ``--cuda`` is ``--device cuda``,
    ``--model-folder`` prefixes the model files, and the rules not given take lossviz's defaults
    (filter, biasbn), said once when a pasted reference command relied on the reference's ('', '')."""
    refused = refused_flags(args.argv)
    if refused:
        raise CLIError(f"{refused[0]} is not supported: {REFUSED[refused[0]]}")
    if args.model_folder:
        for attr in ("model_file", "model_file2", "model_file3"):
            value = getattr(args, attr)
            if value and not os.path.isabs(value):
                setattr(args, attr, os.path.join(args.model_folder, value))
    if args.cuda:
        if args.device not in ("auto", "cuda") and not args.device.startswith("cuda:"):
            raise CLIError(f"--cuda and --device {args.device} disagree: drop one")
        args.device = "cuda" if args.device == "auto" else args.device
    pasted = is_reference_command(args.argv)
    notes = []
    if args.model is None:
        args.model = "resnet56" if pasted else "mlp"
    if args.dataset is None:
        args.dataset = "cifar10" if pasted else "spirals"
        if pasted and args.data_root is None:
            args.data_root = REFERENCE_DATA_ROOT
            notes.append(f"--dataset not given: plot_surface.py's cifar10 from {REFERENCE_DATA_ROOT}")
    args.rules_given = {f for f in ("xnorm", "xignore", "ynorm", "yignore") if getattr(args, f) is not None}
    relied = [f for f in ("xnorm", "xignore", "ynorm", "yignore")[: 4 if grid.ndim == 2 else 2]
              if f not in args.rules_given]
    for flag in ("xnorm", "ynorm"):
        setattr(args, flag, getattr(args, flag) or "filter")
    for flag in ("xignore", "yignore"):
        setattr(args, flag, getattr(args, flag) or "biasbn")
    random_axes = not (args.dir_file or args.model_file2 or args.model_file3)
    if relied and random_axes:
        notes.append(f"{'/'.join('--' + f for f in relied)} not given: lossviz's defaults (--xnorm filter "
                     "--xignore biasbn) were used; plot_surface.py's are no normalization and no ignore (pass "
                     "--xnorm '' --xignore '' for those) and it always seeds 123 (--seed 123)")
    if args.model_file2 and args.dir_type is None:
        notes.append("--dir_type not given: states, the line through the BatchNorm statistics too (plot_surface.py's "
                     "default is weights)")
    if pasted and notes:
        print("lossviz surface: note: " + "; ".join(notes), file=sys.stderr)


def _output_names(args, grid) -> tuple[Path, str | None]:
    """``(surface file, direction file to write or None)``: as given, or without ``--out`` named from the
    flags as ``plot_surface.py`` names them (the direction file then written, or read if it exists)."""
    if args.dir_file is not None and args.dir_out is not None:
        raise CLIError("--dir-file reads directions and --dir-out writes them: give one")
    if args.dir_file is not None and not Path(args.dir_file).is_file():
        raise CLIError(f"--dir-file {args.dir_file!r} does not exist: a direction file to read must exist (a typo "
                       f"must not draw new directions); to write new directions there pass --dir-out {args.dir_file}")
    dir_out = args.dir_out
    if args.out is not None:
        out = args.out
    else:
        kind = args.dir_type or ("states" if args.model_file2 else "weights")
        # a line's rules are in the name only as given (they do not apply to it), a random direction's always
        unused = ({"xnorm", "xignore"} if args.model_file2 else set()) | (
            {"ynorm", "yignore"} if args.same_dir or args.model_file3 else set())
        named = argparse.Namespace(**{**vars(args), "dir_type": kind,
                                      **dict.fromkeys(unused - args.rules_given)})
        dir_name = args.dir_file or dir_out or direction_file_name(named, two_d=grid.ndim == 2)
        out = surface_file_name(dir_name, grid.x, grid.y, raw_data=args.raw_data, data_split=args.data_split,
                                split_idx=args.split_idx)
        dir_out = None if args.dir_file else dir_name
    out_path = _check_output_path(out, "--out")
    for flag, path in (("--dir-out", dir_out), ("--dir-file", args.dir_file)):
        if path is not None:
            _check_output_path(path, flag)
            if Path(path).resolve() == out_path.resolve():
                raise CLIError(f"{flag} and --out name the same file; give two names")
    return out_path, dir_out


def _gpu_executor(args):
    """``--ngpu N`` (N > 1): a :class:`~lossviz.executors.DeviceExecutor` over cuda:0..N-1."""
    if args.ngpu == 1:
        return None
    import torch

    from lossviz.executors import DeviceExecutor

    if args.mpi:
        raise CLIError("--ngpu with --mpi: each rank uses one GPU (rank % GPUs); start one rank per GPU instead")
    if not torch.cuda.is_available() or torch.cuda.device_count() < args.ngpu:
        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        raise CLIError(f"--ngpu {args.ngpu}: {have} CUDA device(s) here")
    return DeviceExecutor([f"cuda:{i}" for i in range(args.ngpu)])


def _one_line(exc: BaseException) -> str:
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    msg = " ".join(str(msg).split())
    return msg or type(exc).__name__


def _read_surface(path: str):
    from lossviz.io.h5 import read_surface

    if not Path(path).is_file():
        raise CLIError(f"surface file {path!r} does not exist")
    return read_surface(path)
