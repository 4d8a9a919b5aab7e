"""Loss surfaces: metrics on a 1D line or 2D grid of points ``θ = θ₀ + α·d₁ (+ β·d₂)``.

:func:`compute_surface` (public name ``lossviz.surface``; this module is ``lossviz.landscape``)
evaluates the grid's points coarse to fine, in chunks, through an executor (in-process by default),
so a partial :class:`Surface` is
already an evenly spread picture; it reports progress (tqdm and a callback), stops between chunks
when a ``threading.Event`` is set, and resumes a partial surface. :func:`interpolate` is the 1D
line between two models (``θ_A`` at 0, ``θ_B`` at 1).

Values are stored as ``values[name]`` with the reference's file names (``train_loss``,
``train_acc``, ``test_loss``, ``test_acc``): shape ``(nx,)`` or ``(ny, nx)`` with
``values[i, j] = f(x[j], y[i])``; NaN where not computed (or where the model gave NaN).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from lossviz.batches import Forward
from lossviz.data import DATA_MEMORY, BatchStream, EvalData, eval_source
from lossviz.direction_spec import DirectionSpec
from lossviz.directions import DirectionSet, target_direction
from lossviz.evaluate import Evaluator
from lossviz.executors import DeviceExecutor, relax_malloc_trim, run_chunks, worker_count
from lossviz.grid import Axis, SurfaceGrid, resolve_axes
from lossviz.jobs import JobCancelled
from lossviz.params import ParamSpace
from lossviz.plans import evaluation_threads

Callback = Callable[["Surface", int, int], Any]


# ---------------------------------------------------------------------------------------- result
@dataclass
class Surface:
    """Metrics on a line (``y is None``, arrays ``(nx,)``) or grid (arrays ``(ny, nx)``, row = y)."""

    x: np.ndarray
    y: np.ndarray | None
    values: dict[str, np.ndarray]
    done: np.ndarray
    directions: DirectionSet | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    # estimated error of each value, same shapes (adaptive surfaces: lossviz.refine / .subsample)
    errors: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def ndim(self) -> int:
        return 1 if self.y is None else 2

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.x),) if self.y is None else (len(self.y), len(self.x))

    @property
    def complete(self) -> bool:
        return bool(self.done.all())

    @property
    def metrics(self) -> list[str]:
        return list(self.values)

    @property
    def n_done(self) -> int:
        return int(self.done.sum())

    @property
    def grid(self) -> SurfaceGrid:
        def axis(v: np.ndarray) -> Axis:
            return Axis(float(v[0]), float(v[-1]), len(v))

        return SurfaceGrid(axis(self.x), axis(self.y) if self.y is not None else None)

    def coords(self) -> np.ndarray:
        """All points' coefficients, ``(N, ndim)`` in flat order ``k = i * nx + j``."""
        if self.y is None:
            return np.asarray(self.x, dtype=np.float64)[:, None]
        X, Y = np.meshgrid(self.x, self.y)
        return np.stack([X.ravel(), Y.ravel()], axis=1)

    def __repr__(self) -> str:
        return (
            f"Surface(shape={self.shape}, metrics={self.metrics}, done={self.n_done}/{self.done.size})"
        )


# ---------------------------------------------------------------------------------------- the task
@dataclass
class EvalSpec:
    """Everything a worker needs to evaluate chunks of one surface (picklable, built once).

    ``center`` (D,) and ``directions`` (ndir, D) are CPU tensors; a point is
    ``center + coeffs @ directions``; ``datasets`` maps a split name to its CPU data.
    """

    token: str
    model: nn.Module
    datasets: dict[str, EvalData | BatchStream]
    center: torch.Tensor
    directions: torch.Tensor
    evaluator_kwargs: dict[str, Any]
    n_points: int | None = None  # grid points to evaluate in all (a hint for strategy measuring)
    bn_data: EvalData | None = None  # set: BatchNorm statistics recomputed on it at every point (update_bn)
    plans: dict[str, Any] | None = None  # per split, a Plan measured once and pinned for every worker

    def on_device(self, device: str | torch.device) -> EvalSpec:
        """This spec with its evaluators on ``device`` (same token: a
        :class:`~lossviz.executors.DeviceExecutor` worker thread builds its own evaluator there)."""
        return dataclasses.replace(self, evaluator_kwargs={**self.evaluator_kwargs, "device": device})


_EVALUATORS: OrderedDict[tuple[str, int], dict[str, Evaluator]] = OrderedDict()
_EVALUATORS_LOCK = threading.Lock()
_MAX_CACHED = 4


def evaluators_for(spec: EvalSpec) -> dict[str, Evaluator]:
    """This process's and thread's evaluators for ``spec`` (built on first use, then reused so the
    strategy is measured once; each thread has its own copy of the model)."""
    key = (spec.token, threading.get_ident())
    with _EVALUATORS_LOCK:
        found = _EVALUATORS.get(key)
        if found is not None:
            _EVALUATORS.move_to_end(key)
            return found
    relax_malloc_trim()  # a Dask worker's allocator settings cost 2.5x on CPU forward passes
    kwargs = spec.evaluator_kwargs if spec.bn_data is None else {**spec.evaluator_kwargs, "kind": "states"}

    def pinned(split: str) -> dict[str, Any]:
        plan = (spec.plans or {}).get(split)
        if plan is None:
            return kwargs
        return {**kwargs, "strategy": plan.strategy, "points_per_call": plan.points_per_call,
                "batch_size": plan.batch_size}

    built = {split: Evaluator(spec.model, data, **pinned(split)) for split, data in spec.datasets.items()}
    with _EVALUATORS_LOCK:
        _EVALUATORS[key] = built
        # keep the evaluators of the _MAX_CACHED most recent specs (every thread's: one per device)
        while len({k[0] for k in _EVALUATORS}) > _MAX_CACHED:
            oldest = next(iter(_EVALUATORS))[0]
            for k in [k for k in _EVALUATORS if k[0] == oldest]:
                del _EVALUATORS[k]
    return built


def release_evaluators(spec: EvalSpec) -> None:
    """Drop this process's cached evaluators of ``spec`` (all threads)."""
    with _EVALUATORS_LOCK:
        for key in [k for k in _EVALUATORS if k[0] == spec.token]:
            del _EVALUATORS[key]


#: Bytes of the points :func:`plane_points` builds at a time: a cancel waits for one block at most.
POINTS_BLOCK_BYTES = 64 * 2**20


def plane_points(
    center: torch.Tensor, coeffs: torch.Tensor, directions: torch.Tensor, cancel: threading.Event | None = None
) -> torch.Tensor:
    """``center + coeffs @ directions``: (D,), (m, k), (k, D) -> (m, D), built a block of rows at a time.

    For a large model the points of one chunk are gigabytes, seconds to build: ``cancel`` is checked
    before each block of about ``POINTS_BLOCK_BYTES``, and once set raises
    :class:`~lossviz.jobs.JobCancelled`.
    """
    m, width = coeffs.shape[0], center.numel()
    points = torch.empty(m, width, dtype=center.dtype, device=center.device)
    step = max(1, POINTS_BLOCK_BYTES // max(1, width * points.element_size()))
    for i in range(0, m, step):
        if cancel is not None and cancel.is_set():
            raise JobCancelled(f"cancelled while building the chunk's points ({i} of {m} built)")
        torch.addmm(center, coeffs[i : i + step], directions, out=points[i : i + step])
    return points


def evaluate_chunk(spec: EvalSpec, coeffs: np.ndarray) -> dict[str, np.ndarray]:
    """The chunk task: metrics at ``center + coeffs @ directions`` for the rows of ``coeffs``.

    Returns ``{"<split>_<metric>": float64 array (m,)}``. A top-level function, so that any
    executor (threads, processes, Dask, MPI) can run it.
    """
    evaluators = evaluators_for(spec)
    first = next(iter(evaluators.values()))
    c = torch.as_tensor(np.asarray(coeffs, dtype=np.float64), dtype=first.dtype, device=first.device)
    dirs = spec.directions.to(device=first.device, dtype=first.dtype)
    center = spec.center.to(device=first.device, dtype=first.dtype)
    points = plane_points(center, c, dirs, first.cancel)
    if spec.bn_data is not None:  # each point with its own BatchNorm statistics (a point of the states space)
        from lossviz.connectivity import state_points

        points = state_points(spec.model, points.cpu(), spec.bn_data, spec.evaluator_kwargs.get("forward"))
        points = points.to(device=first.device, dtype=first.dtype)
    out: dict[str, np.ndarray] = {}
    for split, ev in evaluators.items():
        for name, vals in ev.evaluate(points, total=spec.n_points).items():
            out[f"{split}_{name}"] = vals
    return out


# ---------------------------------------------------------------------------------------- directions
def resolve_directions(
    directions: Any,
    space: ParamSpace,
    center: torch.Tensor,
    ndim: int,
    *,
    normalization: str | None = "filter",
    ignore: str | None = "biasbn",
    seed: int | None = 0,
) -> DirectionSet:
    """A :class:`DirectionSet` with ``ndim`` directions over ``space`` (see :class:`DirectionSpec`).

    ``"random"`` draws filter-normalized (etc.) random directions seeded ``seed`` (x then y from one
    stream, like the reference). Given directions (a vector, a ``(ndim, D)`` tensor, a pair, a
    state dict, a :class:`DirectionSet`) are used as given: ``normalization`` applies to random
    directions only.
    """
    spec = DirectionSpec.parse(directions, ndim, normalization=normalization, ignore=ignore, seed=seed,
                               kind=space.kind)
    return spec.vectors(space, center)


# ---------------------------------------------------------------------------------------- compute
def _check_resume(resume: Surface, grid: SurfaceGrid, names: list[str], ds: DirectionSet) -> None:
    if not isinstance(resume, Surface):
        raise TypeError(f"resume must be a Surface, got {type(resume).__name__}")
    same_grid = resume.shape == grid.shape and np.allclose(resume.x, grid.x.values) and (
        (resume.y is None and grid.y is None)
        or (resume.y is not None and grid.y is not None and np.allclose(resume.y, grid.y.values))
    )
    if not same_grid:
        raise ValueError(
            f"resume surface has a different grid (shape {resume.shape}) than requested "
            f"{grid.shape}: pass the same x and y as the surface being resumed"
        )
    missing = [n for n in names if n not in resume.values]
    if missing:
        raise ValueError(
            f"resume surface has no {missing[0]!r} values: pass the same data, test data and metrics"
        )
    if resume.directions is not None:
        theirs, ours = resume.directions.stacked().double().cpu(), ds.stacked().double().cpu()
        if theirs.shape != ours.shape or not torch.allclose(theirs, ours, rtol=1e-5, atol=1e-8):
            raise ValueError(
                "resume surface was computed along other directions: pass the same directions "
                "(or the same seed, normalization and ignore) as the surface being resumed"
            )


def _worker_threads(executor: Any, device: Any, threads: int | None) -> int | None:
    """``threads`` for each worker's evaluator: as given, else 1 where chunks run in parallel on CPUs
    (:func:`evaluation_threads`), else ``None`` (each evaluator measures)."""
    if threads is not None or isinstance(executor, DeviceExecutor):  # DeviceExecutor: one per device
        return threads
    workers = worker_count(executor)
    if workers is not None and workers <= 1:
        return None
    return evaluation_threads(device if device is not None else "cpu", workers=workers or 2)


CHUNKS_PER_WORKER = 4  # parallel executors: chunks are sized so that each worker gets about this many


def _default_chunk(numel: int, itemsize: int, points_per_call: int | None) -> int:
    cap = max(1, (256 << 20) // max(1, numel * itemsize))  # the chunk's points: at most 256 MiB
    return max(1, min(points_per_call or 64, cap))


def compute_surface(
    model: nn.Module,
    data: Any,
    directions: Any = "random",
    x: Any = "-1:1:51",
    y: Any = None,
    *,
    kind: str = "weights",
    normalization: str | None = "filter",
    ignore: str | None = "biasbn",
    seed: int | None = 0,
    metrics: Iterable[Any] | Mapping[str, Any] = ("loss", "acc"),
    loss: Any = "cross_entropy",
    split: str = "train",
    test_data: Any = None,
    executor: Executor | Any | None = None,
    progress: bool = True,
    callback: Callback | None = None,
    cancel: threading.Event | None = None,
    resume: Surface | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    precision: str = "float32",
    channels_last: str | bool = "auto",
    points_per_call: int | None = None,
    strategy: str = "auto",
    batch_size: int | None = None,
    threads: int | None = None,
    chunk_size: int | None = None,
    max_samples: int | None = None,
    max_batches: int | None = None,
    forward: Forward | None = None,
    data_memory: int | None = DATA_MEMORY,
    only: np.ndarray | None = None,
    trajectory: Any = None,
    update_bn: bool = False,
) -> Surface:
    """Metrics of ``model`` on the grid ``θ₀ + x·d₁ (+ y·d₂)`` around its own point ``θ₀``.

    ``directions``: ``"random"`` (seeded ``seed``, normalized by ``normalization`` with ``ignore``
    rules), a :class:`DirectionSet`, a vector / ``(d1, d2)`` / ``(2, D)`` tensor / state dict(s)
    (used as given). ``x``/``y``: grid specs ``"min:max:num"``. Points are evaluated coarse to fine
    in chunks of ``chunk_size``; after each chunk ``callback(surface, n_done, n_total)`` sees the
    partial surface; setting ``cancel`` stops between chunks (finished points stay, the rest NaN
    with ``done`` False); ``resume`` (a partial Surface of the same grid and directions) skips its
    finished points. ``executor``: any ``concurrent.futures.Executor`` running
    :func:`evaluate_chunk` tasks (default: in-process), a ``dask.distributed.Client``, an MPI
    executor or a :class:`~lossviz.executors.DeviceExecutor` (see :mod:`lossviz.executors`; the
    spec reaches each worker once). ``only`` (a boolean array of the grid's shape) evaluates
    those points alone, the others stay NaN and not done (used by :mod:`lossviz.refine` and
    :mod:`lossviz.subsample`). ``precision`` (``"float32"``, ``"tf32"``, ``"bf16"``) and
    ``channels_last`` pick the engine's fast paths (see :class:`Evaluator`; recorded in ``meta``).
    ``x``/``y`` ``"auto"`` (or ``"auto:num"``): fitted to ``trajectory`` (``(n, 1 or 2)`` coordinates in
    the directions' plane; a PCA result given as ``directions`` brings its ``coords``) with a margin,
    else :data:`lossviz.grid.AUTO_SPAN` (:func:`lossviz.grid.auto_axis`).
    ``update_bn``: recompute BatchNorm running statistics at every grid point on ``data`` (as
    :func:`lossviz.connectivity.update_bn`; eval-mode statistics of the centre mislead away from it),
    for ``kind="weights"`` and data held in memory; each point then runs one pass over ``data`` in
    train mode first (default False: the centre's statistics everywhere, as the reference).
    ``strategy``/``batch_size``/``points_per_call`` pin the engine's plan and ``threads`` its CPU
    intra-op threads (default :func:`~lossviz.plans.evaluation_threads`' rule: 1 per worker when
    an executor evaluates chunks in parallel, else measured). Other arguments go to :class:`Evaluator`.

    ``data`` is a batch of any structure or anything that yields batches (see :mod:`lossviz.batches`
    for how the model is called on one: ``model(x)``, ``model(*x)``, ``model(**batch)``, or the
    ``forward(model, batch)`` hook). A DataLoader or re-iterable of batches holding more than
    ``data_memory`` bytes (:data:`~lossviz.data.DATA_MEMORY`) is streamed: every chunk of points reads
    each batch once; it must yield the same batches in the same order each time (a shuffling
    DataLoader is refused). ``max_batches``/``max_samples`` take its first batches/samples.
    """
    if trajectory is None and getattr(directions, "coords", None) is not None:  # a PCA result: its trajectory
        trajectory = directions.coords
    x, y = resolve_axes(x, y, None if trajectory is None else np.asarray(trajectory, dtype=np.float64))
    grid = SurfaceGrid.from_specs(x, y)
    datasets = _eval_datasets(model, data, test_data, split, max_samples, max_batches, data_memory)
    bn_data = _bn_data(model, datasets[split], kind) if update_bn else None
    space = ParamSpace(model, kind)
    center = space.vector(model, dtype=dtype).cpu()
    ds = resolve_directions(
        directions, space, center, grid.ndim,
        normalization=normalization, ignore=ignore, seed=seed,
    )
    evaluator_kwargs = dict(
        kind=kind, loss=loss, metrics=metrics, device=device, dtype=dtype,
        precision=precision, channels_last=channels_last,
        strategy=strategy, points_per_call=points_per_call, batch_size=batch_size,
        threads=_worker_threads(executor, device, threads), forward=forward,
    )
    spec = EvalSpec(
        token=uuid.uuid4().hex,
        model=model,
        datasets=datasets,
        center=center,
        directions=ds.stacked().detach().to(device="cpu", dtype=dtype),
        evaluator_kwargs=evaluator_kwargs,
        bn_data=bn_data,
    )
    # built here once: validates model and data early, names the metrics, and is reused in-process
    local = evaluators_for(spec)
    for ev in local.values():  # a streamed pass checks it before every batch
        ev.cancel = cancel
    names = [f"{s}_{m}" for s, ev in local.items() for m in ev.metric_names]
    values, done = _initial_values(grid, names, ds, resume)
    first = next(iter(local.values()))
    meta = _surface_meta(grid, ds, space, datasets, first, split=split, names=names, dtype=dtype,
                         precision=precision, model_name=type(model).__name__)
    meta["update_bn"] = bn_data is not None
    if resume is not None:
        meta = {**resume.meta, **meta}
    surface = Surface(grid.x.values, grid.y.values if grid.y is not None else None, values, done, ds, meta)

    todo = _points_to_do(grid, done, only)
    spec.n_points = len(todo)
    step = chunk_size or _default_chunk(space.numel, torch.empty((), dtype=dtype).element_size(), points_per_call)
    workers = worker_count(executor)
    parallel = executor is not None and workers != 1 and not isinstance(executor, DeviceExecutor)
    if parallel and chunk_size is None:  # every worker gets several chunks (the last ones balance the load)
        step = max(1, min(step, math.ceil(len(todo) / (CHUNKS_PER_WORKER * (workers or 2)))))
    chunks = [todo[i : i + step] for i in range(0, len(todo), step)]
    measure_here = parallel and strategy == "auto" and len(chunks) > 1
    try:
        errors: list[str] = []
        n_ok = 0
        if measure_here:  # the plan measured once, here, on the first chunk; then pinned for the workers
            errors, n_ok = _evaluate_chunks(surface, spec, grid.coords(), chunks[:1], names, executor=None,
                                            cancel=cancel, callback=callback, progress=False)
            spec.plans = {s: ev.plan for s, ev in local.items() if ev.plan is not None}
            chunks = chunks[1:]
        more, n_more = _evaluate_chunks(surface, spec, grid.coords(), chunks, names, executor=executor,
                                        cancel=cancel, callback=callback, progress=progress)
        errors, n_ok = errors + more, n_ok + n_more
    finally:
        if executor is None or measure_here:
            meta.update(_strategy_meta(first))
            meta["plan_shared"] = bool(measure_here and spec.plans)
            meta["n_samples"] = {s: ev.stream.n_samples if ev.stream is not None else ev.n_samples
                                 for s, ev in local.items()}
        release_evaluators(spec)
    if errors:
        meta["errors"] = errors[:20]
        if n_ok == 0 and chunks:
            raise RuntimeError(f"no point of the surface could be evaluated: {errors[0]}")
    meta["cancelled"] = bool(cancel is not None and cancel.is_set() and not surface.complete)
    return surface


def _bn_data(model: nn.Module, data: EvalData | BatchStream, kind: str) -> EvalData | None:
    """The data BatchNorm statistics are recomputed on at every point (``update_bn``); None for a
    model without BatchNorm (nothing to recompute)."""
    if kind != "weights":
        raise ValueError(f"update_bn=True recomputes the statistics of kind='weights' points, not {kind!r} ones: "
                         "use kind='weights'")
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return None
    if not isinstance(data, EvalData):
        raise ValueError("update_bn=True needs the data in memory (it is read at every point): give a subset "
                         "with max_samples=")
    return data


def _eval_datasets(
    model: nn.Module, data: Any, test_data: Any, split: str, max_samples: int | None,
    max_batches: int | None = None, data_memory: int | None = DATA_MEMORY,
) -> dict[str, EvalData | BatchStream]:
    """The evaluation data per split name (``split``, and ``"test"`` with ``test_data``): in memory,
    or streamed when it is given as batches that outgrow ``data_memory`` (see :func:`eval_source`)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not split or not isinstance(split, str):
        raise ValueError(f"split must be a non-empty name such as 'train', got {split!r}")
    def source(part: Any) -> EvalData | BatchStream:
        return eval_source(part, max_samples, max_batches=max_batches, memory=data_memory)

    datasets = {split: source(data)}
    if test_data is not None:
        if split == "test":
            raise ValueError("split='test' clashes with test_data: name the main split otherwise")
        datasets["test"] = source(test_data)
    return datasets


def _initial_values(
    grid: SurfaceGrid, names: list[str], ds: DirectionSet, resume: Surface | None
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``(values, done)`` to start from: NaN and not done, or a copy of ``resume``'s (checked)."""
    if resume is None:
        return {n: np.full(grid.shape, np.nan) for n in names}, np.zeros(grid.shape, dtype=bool)
    _check_resume(resume, grid, names, ds)
    values = {n: np.array(resume.values[n], dtype=np.float64, copy=True) for n in names}
    return values, np.array(resume.done, dtype=bool, copy=True)


def _surface_meta(
    grid: SurfaceGrid, ds: DirectionSet, space: ParamSpace, datasets: dict[str, EvalData | BatchStream],
    first: Evaluator,
    *, split: str, names: list[str], dtype: torch.dtype, precision: str, model_name: str,
) -> dict[str, Any]:
    """What a surface records about how it was computed."""
    return {
        "kind": space.kind,
        "method": ds.method,
        "normalization": ds.normalization,
        "ignore": ds.ignore,
        "seed": ds.seed,
        "directions": ds.describe(),
        "x": grid.x.spec,
        "y": grid.y.spec if grid.y is not None else None,
        "split": split,
        "splits": list(datasets),
        "n_samples": {s: None if isinstance(d, BatchStream) else len(d) for s, d in datasets.items()},
        "streamed": [s for s, d in datasets.items() if isinstance(d, BatchStream)],
        "loss": first.loss_name,
        "metrics": names,
        "dtype": str(dtype).replace("torch.", ""),
        "precision": precision,
        "channels_last": first.channels_last,
        "device": str(first.device),
        "model": model_name,
        "numel": space.numel,
    }


def _strategy_meta(first: Evaluator) -> dict[str, Any]:
    """The in-process evaluator's plan and where it came from (``plan``: "measured", "reused" from
    this process's remembered plans, or "pinned" by ``strategy=``); CPU channels_last "auto" is
    decided on the first chunk."""
    return {
        "plan": first.plan_source,
        "threads": first.threads,
        "strategy": first.strategy_used,
        "points_per_call": first.points_per_call_used,
        "batch_size": first.batch_size_used,
        "channels_last": first.channels_last,
        **({"fallback": first.fallback} if first.fallback else {}),
    }


def _points_to_do(grid: SurfaceGrid, done: np.ndarray, only: np.ndarray | None) -> np.ndarray:
    """Flat indices of the points still to evaluate, coarse to fine (within ``only`` when given)."""
    order = grid.order()
    wanted = ~done.ravel()
    if only is not None:
        only = np.asarray(only)
        if only.dtype != bool or only.shape != grid.shape:
            raise ValueError(
                f"only must be a boolean array of the grid's shape {grid.shape}, got "
                f"{only.dtype} {only.shape}"
            )
        wanted &= only.ravel()
    return order[wanted[order]]


def _evaluate_chunks(
    surface: Surface, spec: EvalSpec, coords: np.ndarray, chunks: list[np.ndarray], names: list[str], *,
    executor: Any, cancel: threading.Event | None, callback: Callback | None, progress: bool,
) -> tuple[list[str], int]:
    """Evaluate ``chunks`` (flat indices) into ``surface`` in place; returns (errors, points done).

    A failed chunk stays NaN and not done (a warning says why); ``callback`` sees the surface after
    every chunk.
    """
    from tqdm.auto import tqdm

    errors: list[str] = []
    n_ok = 0
    n_total = surface.done.size
    bar = tqdm(total=n_total, initial=surface.n_done, disable=not progress, desc="surface", unit="pt")
    try:
        for i, fut in run_chunks(evaluate_chunk, spec, [coords[idx] for idx in chunks], executor, cancel=cancel):
            idx = chunks[i]
            try:
                result = fut.result()
            except JobCancelled:  # stopped inside a streamed pass: the chunk stays NaN, not done
                bar.update(len(idx))
                continue
            except Exception as exc:  # noqa: BLE001 - a model may raise anything: the chunk stays NaN, not done
                errors.append(f"{type(exc).__name__}: {exc}")
                warnings.warn(
                    f"lossviz: a chunk of {len(idx)} points failed and is left NaN ({errors[-1]})",
                    RuntimeWarning, stacklevel=2,
                )
            else:
                for name in names:
                    surface.values[name].reshape(-1)[idx] = result[name]
                surface.done.reshape(-1)[idx] = True
                n_ok += len(idx)
            bar.update(len(idx))
            if callback is not None:
                callback(surface, surface.n_done, n_total)
    finally:
        bar.close()
    return errors, n_ok


def interpolate(
    model_a: nn.Module,
    model_b: nn.Module,
    data: Any,
    x: Any = "-0.5:1.5:401",
    *,
    kind: str = "states",
    **kwargs: Any,
) -> Surface:
    """Metrics along ``θ(α) = θ_A + α (θ_B - θ_A)``: ``model_a`` at 0, ``model_b`` at 1.

    With ``kind="states"`` (default) BatchNorm running statistics are interpolated too. Other
    keyword arguments go to :func:`compute_surface`.
    """
    for bad in ("directions", "y", "normalization", "ignore"):
        if bad in kwargs:
            raise TypeError(f"interpolate() takes no {bad!r}: the line runs from model_a to model_b")
    space_a, space_b = ParamSpace(model_a, kind), ParamSpace(model_b, kind)
    if not space_a.compatible_with(space_b):
        diff = next(
            (f"{ea.name!r} {list(ea.shape)} vs {eb.name!r} {list(eb.shape)}"
             for ea, eb in zip(space_a.entries, space_b.entries, strict=False)
             if ea.name != eb.name or ea.shape != eb.shape),
            f"{len(space_a.entries)} vs {len(space_b.entries)} tensors",
        )
        raise ValueError(
            f"model_a and model_b have different architectures ({diff}): give two models of one architecture"
        )
    a = space_a.vector(model_a, dtype=torch.float64).cpu()
    b = space_b.vector(model_b, dtype=torch.float64).cpu()
    ds = DirectionSet([target_direction(space_a, a, b)], kind=kind, normalization=None,
                      ignore=None, method="target")
    surf = compute_surface(model_a, data, ds, x=x, kind=kind, normalization=None, ignore=None, **kwargs)
    surf.meta["interpolation"] = {"a": 0.0, "b": 1.0}
    return surf
