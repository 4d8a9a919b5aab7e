"""The surface service: a surface's stored key, finding it again, resuming a partial one, the
throttled saver, full and adaptive runs as jobs, and reading/writing stored surfaces.

``Session.surface`` checks its arguments, builds the key (:meth:`SurfaceService._surface_spec`), returns
a complete stored surface at once, and otherwise runs a :class:`SurfaceRun` on the session's job queue:
:func:`lossviz.landscape.compute_surface` over the grid (resumed from a stored partial) or
:func:`lossviz.refine.refine_surface` (``adaptive=``), saving partial results at most every
``save_every_s`` seconds.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
import torch
from torch import nn

from lossviz.direction_spec import DirectionSpec
from lossviz.jobs import Job
from lossviz.params import SpaceKind, space_kind
from lossviz.session.core import SessionBase
from lossviz.session.project import callable_name
from lossviz.store import Checkpoint, spec_key
from lossviz.validation import Interval, check

if TYPE_CHECKING:
    from lossviz.grid import SurfaceGrid
    from lossviz.landscape import Surface

ADAPTIVE_OPTIONS = ("rtol", "budget", "coarse_step", "batch", "near_min", "spacing")
SESSION_OWNED = ("callback", "cancel", "resume", "progress", "only", "trajectory")
DIRECTION_META_KEYS = ("kind", "normalization", "ignore", "seed", "method")


# ---------------------------------------------------------------------------------------- options
def _adaptive_options(adaptive: Any) -> dict | None:
    """``Session.surface``'s ``adaptive=`` as the full options of
    :func:`lossviz.refine.refine_surface` (its defaults filled in, so ``True`` and ``{}`` name the
    same result), or ``None`` for the full uniform surface. Bad options raise ValueError here,
    before any work."""
    if adaptive is None or adaptive is False:
        return None
    from lossviz.refine import check_refine_options, refine_surface

    if adaptive is True:
        given: dict = {}
    elif isinstance(adaptive, Mapping):
        given = dict(adaptive)
    else:
        raise TypeError(
            f"adaptive must be True, None or a dict of refine options {list(ADAPTIVE_OPTIONS)}, got "
            f"{type(adaptive).__name__}"
        )
    unknown = sorted(str(k) for k in given if k not in ADAPTIVE_OPTIONS)
    if unknown:
        raise ValueError(f"unknown adaptive option(s) {unknown}: the allowed ones are {list(ADAPTIVE_OPTIONS)}")
    params = inspect.signature(refine_surface).parameters
    options = {k: params[k].default for k in ADAPTIVE_OPTIONS} | given

    def option(name: str, constraint: Interval) -> Any:
        return check(f"adaptive option {name!r}", options[name], constraint)

    for name in ("rtol", "budget", "batch"):
        options[name] = option(name, Interval(float, None, None))
    try:
        check_refine_options(options["rtol"], options["budget"], options["batch"])
    except ValueError as e:
        raise ValueError(f"adaptive option {e}") from None
    if options["coarse_step"] is not None:
        options["coarse_step"] = option("coarse_step", Interval(int, 1, None))
    options["near_min"] = option("near_min", Interval(int, 0, None))
    options["spacing"] = option("spacing", Interval(int, 0, None))
    return options


def _adaptive_cap(shape: tuple[int, ...], options: Mapping[str, Any]) -> int:
    """The most points :func:`~lossviz.refine.refine_surface` evaluates with ``options`` (its
    budget, or the coarse lattice when that is larger): the job's progress total."""
    from lossviz.refine import coarse_mask, first_lattice_step

    step = first_lattice_step(shape, options["coarse_step"])
    return max(int(options["budget"] * math.prod(shape)), int(coarse_mask(shape, step).sum()))


def _save_interval(save_every_s: Any) -> float:
    return check("save_every_s", save_every_s, Interval(float, 0, None),
                 hint="a number of seconds (0: save after every chunk)")


def _check_engine(engine: Mapping[str, Any]) -> None:
    for bad in SESSION_OWNED:
        if bad in engine:
            raise TypeError(f"session.surface() takes no {bad!r}: the session sets it itself")


def _engine_key(engine: Mapping[str, Any]) -> dict:
    """The engine options that change a surface's values (so are part of its key)."""
    key = {}
    if engine.get("precision", "float32") != "float32":  # bf16/tf32 values are not float32's
        key["precision"] = engine["precision"]
    if engine.get("dtype", torch.float32) != torch.float32:  # nor are float64's
        key["dtype"] = str(engine["dtype"]).replace("torch.", "")
    return key


class _ThrottledSaver:
    """Saves a surface being computed at most every ``every_s`` seconds (0: at every offer), and
    always when told the end (done, cancelled) or a failure came.

    ``offer(surface)`` after each chunk or round; ``final(surface, complete)`` at the end;
    ``flush_partial()`` on failure (saves the last offered surface when it is not saved yet).
    """

    def __init__(self, save: Callable[[Any, bool], None], every_s: float,
                 clock: Callable[[], float] = time.monotonic):
        self._save, self._every_s, self._clock = save, every_s, clock
        self._last = clock()  # the first partial waits one interval: a short surface is saved once
        self._pending: Any = None

    def offer(self, surface: Any, last: bool = False) -> None:
        """A newer state of ``surface``; ``last``: the final save follows at once (not saved here)."""
        self._pending = surface
        if not last and self._clock() - self._last >= self._every_s:
            self._write(surface, False)

    def final(self, surface: Any, complete: bool) -> None:
        self._write(surface, complete)

    def flush_partial(self) -> None:
        if self._pending is not None:
            self._write(self._pending, False)

    def _write(self, surface: Any, complete: bool) -> None:
        self._save(surface, complete)
        self._last = self._clock()
        self._pending = None


@dataclass
class SurfaceRun:
    """One surface to compute: where, what (the stored key and spec), how (the engine arguments)."""

    center: Checkpoint
    key: str
    spec: dict
    grid: SurfaceGrid
    directions: DirectionSpec
    refine_options: dict | None
    resume: Any
    every_s: float
    common: dict
    #: the exception a save of the surface raised (a full disk): ``Session.surface`` raises it
    save_error: BaseException | None = None

    @property
    def description(self) -> str:
        what = "adaptive surface" if self.refine_options is not None else "surface"
        return f"{what} around checkpoint {self.center.id} ({self.grid.shape})"


def _finished_job(job: Job, surf: Any) -> Job:
    """``job`` ended at once with a stored ``surf`` as its result."""
    job.result = surf
    job.total = job.done = surf.done.size
    job._finish("done")
    return job


class SurfaceService(SessionBase):
    """Loss surfaces of a session: computed as jobs, stored in the project, found again."""

    # ------------------------------------------------------------------ directions (a DirectionResolver)
    def trajectory(self, center: Any) -> list[int]:
        """The checkpoints PCA directions are fitted on by default: the center's branch and the
        branches it forked from, up to the center (ok checkpoints only)."""
        ids: list[int] = []
        c: Checkpoint | None = self.checkpoint(center)
        while c is not None:
            ids.append(c.id)
            c = self.store.checkpoint(c.parent) if c.parent is not None else None
        return [i for i in reversed(ids) if self.store.checkpoint(i).status == "ok"]

    def train_data(self) -> Any:
        """The training split's evaluation tensors (Hessian directions are computed on them)."""
        return self.eval_data()["train"]

    # ------------------------------------------------------------------ the service
    @overload
    def surface(
        self, center: Any, directions: Any = ..., x: Any = ..., y: Any = ..., normalization: str | None = ...,
        ignore: str | None = ..., kind: SpaceKind = ..., seed: int = ..., checkpoints: Sequence[Any] | None = ...,
        wait: Literal[True] = ..., *, adaptive: bool | Mapping[str, Any] | None = ..., save_every_s: float = ...,
        **engine: Any,
    ) -> Surface: ...

    @overload
    def surface(
        self, center: Any, directions: Any = ..., x: Any = ..., y: Any = ..., normalization: str | None = ...,
        ignore: str | None = ..., kind: SpaceKind = ..., seed: int = ..., checkpoints: Sequence[Any] | None = ...,
        *, wait: Literal[False], adaptive: bool | Mapping[str, Any] | None = ..., save_every_s: float = ...,
        **engine: Any,
    ) -> Job: ...

    @overload
    def surface(
        self, center: Any, directions: Any = ..., x: Any = ..., y: Any = ..., normalization: str | None = ...,
        ignore: str | None = ..., kind: SpaceKind = ..., seed: int = ..., checkpoints: Sequence[Any] | None = ...,
        wait: bool = ..., *, adaptive: bool | Mapping[str, Any] | None = ..., save_every_s: float = ...,
        **engine: Any,
    ) -> Surface | Job: ...

    def surface(
        self,
        center: Any,
        directions: Any = "random",
        x: Any = "-1:1:21",
        y: Any = None,
        normalization: str | None = "filter",
        ignore: str | None = "biasbn",
        kind: SpaceKind = "weights",
        seed: int = 0,
        checkpoints: Sequence[Any] | None = None,
        wait: bool = True,
        *,
        adaptive: bool | Mapping[str, Any] | None = None,
        save_every_s: float = 2.0,
        **engine: Any,
    ) -> Surface | Job:
        """The loss surface around checkpoint ``center`` (stored in the project, found again).

        ``directions``: ``"random"`` (normalized by ``normalization``, ``ignore`` rules, ``seed``),
        ``"pca"`` (of ``checkpoints``, by default the center's lineage; the trajectory's coordinates
        in ``meta["trajectory"]``), ``"hessian"`` (top eigenvectors), a checkpoint id (the direction
        to it), a vector, or a pair of those. An interrupted surface resumes where it stopped.
        ``wait=True`` returns the :class:`~lossviz.landscape.Surface`; ``wait=False`` returns the
        :class:`~lossviz.jobs.Job` whose ``result`` is the Surface filling progressively.
        ``engine`` options (``chunk_size``, ``points_per_call``, ``strategy``, ``batch_size``,
        ``precision``, ``channels_last``, ``dtype``) go to
        :func:`lossviz.landscape.compute_surface`; a non-float32 ``precision`` or ``dtype`` is part of
        the stored surface's key.

        ``adaptive``: ``True`` (or a dict of the options ``rtol``, ``budget``, ``coarse_step``,
        ``batch``, ``near_min``, ``spacing``) computes the surface by
        :func:`lossviz.refine.refine_surface`: a coarse lattice, then rounds of points where the
        interpolant is least trustworthy (for ``"pca"`` directions also the grid points along the
        trajectory); the others are interpolated, with their estimated error in
        ``surface.errors`` and the evaluated points in ``meta["adaptive"]["evaluated"]``. Its
        options are part of the stored key (an adaptive and a full surface of one grid are two
        results). Progress and the ``"surface"`` event come once per round; a cancel stops after
        the round running. An adaptive surface is not resumed: a stored partial one (cancelled,
        killed) is computed again from scratch.

        ``x``/``y`` ``"auto"`` (or ``"auto:num"``) fit the axis to the trajectory in the surface's plane
        (:func:`lossviz.grid.auto_axis`: its extent and the centre, with a margin): for ``"pca"``
        directions the fitted trajectory, for directions to checkpoints or given vectors the center's
        lineage projected into the plane; random and Hessian directions get
        :data:`lossviz.grid.AUTO_SPAN`. The stored key holds the resolved axes.

        ``save_every_s``: while computing, the partial surface is saved at most every
        ``save_every_s`` seconds (0: after every chunk), and always at the end, on cancel and on
        failure; a killed process resumes from the last partial saved.
        """
        from lossviz.grid import SurfaceGrid, is_auto, resolve_axes

        c = self.checkpoint(center)
        if not (is_auto(x) or is_auto(y)):
            SurfaceGrid.from_specs(x, y)  # a malformed spec is refused before anything else
        if kind not in ("weights", "states"):
            raise ValueError(f"kind must be 'weights' or 'states', got {kind!r}")
        refine_options = _adaptive_options(adaptive)
        every_s = _save_interval(save_every_s)
        _check_engine(engine)
        spec_of_directions = DirectionSpec.parse(directions, 1 if y is None else 2, normalization=normalization,
                                                 ignore=ignore, seed=seed, kind=kind, checkpoints=checkpoints,
                                                 center=c)
        if is_auto(x) or is_auto(y):
            x, y = resolve_axes(x, y, self._plane_trajectory(spec_of_directions, c))
        grid = SurfaceGrid.from_specs(x, y)
        spec = self._surface_spec(c, grid, refine_options, engine, spec_of_directions.key(self))
        key = spec_key(spec)
        found = self.store.find_result(key)
        if found is not None and found["complete"] and found["path"] is not None:
            stored = self._read_surface(found["path"])
            if wait:
                return stored
            return _finished_job(self._job("surface", lambda j: stored, f"surface around checkpoint {c.id} (stored)"),
                                 stored)
        resume = None
        if refine_options is None and found is not None and found["path"]:
            resume = self._read_surface(found["path"])
        run = SurfaceRun(c, key, spec, grid, spec_of_directions, refine_options, resume, every_s,
                         self._engine_arguments(kind, normalization, ignore, seed, engine))
        job = self._job("surface", lambda j: self._run_surface(j, run), run.description)
        if not wait:
            return self._surfaces.submit(job)
        return self._wait_for_surface(job, run)

    def _plane_trajectory(self, spec: DirectionSpec, c: Checkpoint) -> np.ndarray | None:
        """The coordinates ``"auto"`` axes are fitted to: PCA directions' trajectory, or the center's
        lineage projected into the plane of given directions; None for random and Hessian ones."""
        from lossviz import projection as P

        if spec.source in ("random", "hessian"):
            return None
        dirs, extra = spec.build(self)
        if spec.source == "pca":
            return np.asarray(extra["trajectory"]["coords"], dtype=np.float64)
        kind = space_kind(dirs.kind)
        ids = self.trajectory(c.id)
        vecs = torch.stack([self.vector(i, kind) for i in ids])
        d = dirs.vectors
        return np.asarray(P.onto_plane(vecs, self.vector(c.id, kind), d[0], d[1] if len(d) > 1 else None))

    def _surface_spec(self, c: Checkpoint, grid: SurfaceGrid, refine_options: dict | None,
                      engine: Mapping[str, Any], directions_key: dict) -> dict:
        """Everything that defines a stored surface (its key is the hash of this)."""
        spec = {
            "type": "surface",
            "center": c.id,
            **directions_key,
            "x": grid.x.spec,
            "y": grid.y.spec if grid.y is not None else None,
            "loss": self.loss if isinstance(self.loss, str) else callable_name(self.loss),
            "metrics": sorted([*self._metrics, *self._metric_names]),  # a project without named ones: as before
            "data": self.data_fingerprint(),
            **_engine_key(engine),
        }
        if self.forward is not None:  # only with a hook: earlier results keep their keys
            spec["forward"] = callable_name(self.forward)
        if refine_options is not None:
            spec["adaptive"] = refine_options
        return spec

    def _engine_arguments(self, kind: str, normalization: str | None, ignore: str | None, seed: int,
                          engine: Mapping[str, Any]) -> dict:
        """The keyword arguments both compute_surface and refine_surface take from the session."""
        metrics: list[Any] = ["loss", "acc", *self._extra_metrics()]
        return dict(kind=kind, normalization=normalization, ignore=ignore, seed=seed, metrics=metrics,
                    loss=self.loss, test_data=self.eval_data().get("test"), device=self.device,
                    **({"forward": self.forward} if self.forward is not None else {}), **engine)

    def _wait_for_surface(self, job: Job, run: SurfaceRun) -> Surface:
        """Run ``job`` here (inside the worker) or on the queue, waiting; Ctrl-C cancels it. A failed
        save (a full disk) is raised as it came: the partial surface was not stored."""
        if self._queue.in_worker() or self._surfaces.in_worker():
            job._run()
        else:
            self._surfaces.submit(job)
            try:
                job.wait()
            except KeyboardInterrupt:
                job.cancel()
                job.wait()
        if run.save_error is not None:
            raise run.save_error
        if job.state == "failed" and job.result is None:
            raise RuntimeError(f"surface failed: {job.error}")
        return job.result

    def _save_surface(self, run: SurfaceRun, surf: Any, complete: bool) -> None:
        meta = {"center": run.center.id, "n_done": int(surf.done.sum()), "n_total": int(surf.done.size)}
        if run.refine_options is not None and "adaptive" in surf.meta:
            meta["n_evaluated"] = int(surf.meta["adaptive"]["n_evaluated"])
        if run.save_error is not None:  # the disk refused a save already: the stored partial stays
            return
        try:
            self.store.put_result(run.key, "surface", run.spec, write=lambda p: self._write_surface(p, surf),
                                  suffix=".h5", meta=meta, complete=complete)
        except Exception as exc:
            run.save_error = exc
            raise

    def _run_surface(self, job: Job, run: SurfaceRun) -> Any:
        model = self.model(run.center.id)
        dirs, extra = run.directions.build(self, model=model, dtype=run.common.get("dtype", torch.float32))
        extra = {"center": run.center.id, "key": run.key, **extra}
        saver = _ThrottledSaver(lambda surf, complete: self._save_surface(run, surf, complete), run.every_s)
        try:
            if run.refine_options is None:
                return self._run_full(job, run, model, dirs, extra, saver)
            return self._run_adaptive(job, run, model, dirs, extra, saver)
        except BaseException:
            # the work done so far is kept (a full surface resumes from it); the original failure is
            # the one to report
            with contextlib.suppress(Exception):
                saver.flush_partial()
            raise

    def _run_full(self, job: Job, run: SurfaceRun, model: nn.Module, dirs: Any, extra: dict,
                  saver: _ThrottledSaver) -> Any:
        from lossviz.landscape import compute_surface

        grid = run.grid
        job.update(0 if run.resume is None else int(run.resume.done.sum()), grid.size, "starting", force=True)

        def callback(surf: Any, n_done: int, n_total: int) -> None:
            surf.meta.update(extra)
            job.result = surf
            saver.offer(surf, last=bool(surf.done.all()))  # a complete one: the final save follows
            job.update(n_done, n_total, f"{n_done}/{n_total} points", force=True)
            self._emit({"type": "surface", "job": job, "surface": surf})

        surf = compute_surface(
            model, self.eval_data()["train"], directions=dirs, x=grid.x, y=grid.y, progress=False,
            callback=callback, cancel=job.cancel_event, resume=run.resume, **run.common,
        )
        surf.meta.update(extra)
        job.result = surf
        saver.final(surf, complete=bool(surf.done.all()))
        if not surf.done.all():
            if job.cancelled:
                job.end_cancelled(surf, f"cancelled with {int(surf.done.sum())}/{surf.done.size} points")
            else:
                errs = surf.meta.get("errors") or ["points failed"]
                self._emit({"type": "error", "message": f"surface job {job.id}: {errs[0]}"})
                job.fail(f"{surf.done.size - int(surf.done.sum())} points not computed: {errs[0]}", surf)
        return surf

    def _run_adaptive(self, job: Job, run: SurfaceRun, model: nn.Module, dirs: Any, extra: dict,
                      saver: _ThrottledSaver) -> Any:
        from lossviz.refine import refine_surface

        options = run.refine_options or {}
        cap = _adaptive_cap(run.grid.shape, options)
        trajectory = extra["trajectory"]["coords"] if "trajectory" in extra else None
        # refine_surface hands the event to compute_surface: a cancel stops at the next chunk
        # (within the first lattice the result is that partial lattice, later the picture
        # interpolated from the rounds done; meta["cancelled"] either way)
        job.update(0, cap, "starting (adaptive)", force=True)

        def callback(surf: Any, n_evaluated: int, n_total: int) -> None:
            surf.meta.update(extra)
            job.result = surf
            saver.offer(surf)
            rounds = surf.meta.get("adaptive", {}).get("rounds")
            job.update(n_evaluated, max(cap, n_evaluated),
                       f"{n_evaluated}/{n_total} points evaluated (round {rounds})", force=True)
            self._emit({"type": "surface", "job": job, "surface": surf})

        surf = refine_surface(
            model, self.eval_data()["train"], dirs, x=run.grid.x, y=run.grid.y, trajectory=trajectory,
            callback=callback, cancel=job.cancel_event, **options, **run.common,
        )
        surf.meta.update(extra)
        job.result = surf
        errs = surf.meta.get("errors")
        cancelled = bool(surf.meta.get("cancelled"))
        saver.final(surf, complete=not cancelled and not errs)
        n_eval = int(surf.meta["adaptive"]["n_evaluated"])
        if cancelled:
            job.end_cancelled(surf, f"cancelled after {n_eval} evaluated points")
        elif errs:
            self._emit({"type": "error", "message": f"surface job {job.id}: {errs[0]}"})
            job.fail(f"some points could not be evaluated (interpolated instead): {errs[0]}", surf)
        return surf

    # ------------------------------------------------------------------ stored surfaces
    @staticmethod
    def _write_surface(path: Path, surf: Any) -> None:
        from lossviz.files import write_durably
        from lossviz.io.h5 import surface_bytes

        def add_vectors(f: Any) -> None:
            described = surf.directions.describe()
            f.create_dataset(
                "lossviz_direction_vectors", data=surf.directions.stacked().detach().cpu().float().numpy(),
            )
            f.attrs["lossviz_direction_set"] = json.dumps(
                {k: described.get(k) for k in DIRECTION_META_KEYS}
                | {"meta": {k: v for k, v in described.items() if k not in (*DIRECTION_META_KEYS, "ndim", "numel")}}
            )

        # built in memory, written in one plain write: a full disk is an OSError naming ENOSPC
        write_durably(path, surface_bytes(surf, extend=None if surf.directions is None else add_vectors))

    @staticmethod
    def _read_surface(path: Path) -> Any:
        import h5py

        from lossviz.directions import DirectionSet
        from lossviz.io.h5 import read_json_attr, read_surface

        surf = read_surface(path)
        with h5py.File(path, "r") as f:
            if "lossviz_direction_vectors" not in f:
                return surf
            vecs = torch.from_numpy(np.asarray(f["lossviz_direction_vectors"][()]))
            info = read_json_attr(f, "lossviz_direction_set", str(path))
        missing = [k for k in DIRECTION_META_KEYS if k not in info]
        if missing or not isinstance(info.get("meta", {}), dict):
            raise ValueError(
                f"{str(path)!r}: attribute 'lossviz_direction_set' lacks {missing or ['a meta object']}; "
                "the stored surface is damaged: delete the file (or the result) and compute the "
                "surface again"
            )
        surf.directions = DirectionSet(
            list(vecs), kind=info["kind"], normalization=info["normalization"],
            ignore=info["ignore"], seed=info["seed"], method=info["method"], meta=info.get("meta", {}),
        )
        return surf

    def surfaces(self) -> list[dict]:
        """Stored surfaces: key, spec, meta (center, n_done, n_total), complete."""
        return self.store.results("surface")

    def load_surface(self, key: str) -> Any:
        found = self.store.find_result(key)
        if found is None or found["kind"] != "surface":
            raise KeyError(f"no stored surface {key!r}; list them with surfaces()")
        return self._read_surface(found["path"])
