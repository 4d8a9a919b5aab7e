"""``lossviz surface``: the flags checked, the model, data and directions prepared, the surface computed
(in-process, on an executor or under MPI; resumable, or with fewer passes by ``--adaptive`` /
``--subsample``), written in the reference's HDF5 layout and plotted. The flags are in :mod:`lossviz.cli`."""

from __future__ import annotations

import os
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
    _output_names,
    _read_direction_file,
    _resolve_reference_flags,
)
from lossviz.cli_plot import _plot
from lossviz.cli_resume import Interrupted, PartialWriter, resumable, resume_key

__all__ = ["cmd_surface", "prepare_run"]


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
