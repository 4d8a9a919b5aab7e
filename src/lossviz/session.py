"""Session: a project store + a model factory + data + training + surfaces; the programmatic object.

``Session("runs/spirals", model="mlp", data="spirals")`` creates or opens a project folder (see
:mod:`lossviz.store`). Training, surfaces and other long work run as :class:`~lossviz.jobs.Job` s on
the session's worker thread, one at a time; ``subscribe(callback)`` receives events (dicts) from it:

* ``{"type": "checkpoint", "checkpoint": Checkpoint}`` when a checkpoint is stored,
* ``{"type": "job", "job": Job, "state", "progress", "message"}`` when a job's state or progress
  changes (``job`` is the live object; the other keys are a snapshot taken at the event),
* ``{"type": "surface", "job": Job, "surface": Surface}`` after every evaluated chunk of a surface
  (after every refinement round of an adaptive one),
* ``{"type": "error", "message": str}`` when a job fails (an exception, a diverged run).

A failing job ends ``"failed"`` with the reason in ``job.error``; what it did is stored; nothing is
raised into the caller's thread.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from lossviz.jobs import Job, JobQueue
from lossviz.params import ParamSpace
from lossviz import store
from lossviz.store import Checkpoint, Store, spec_key
from lossviz import training as T

SPEC_VERSION = 1


@dataclass
class Projection:
    """2D coordinates of checkpoints: ``coords[i]`` is checkpoint ``ids[i]``."""

    ids: list[int]
    coords: np.ndarray
    method: str
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"ids": list(self.ids), "coords": self.coords.tolist(), "method": self.method, "meta": self.meta}


def _id_of(c: Any) -> int:
    if isinstance(c, Checkpoint):
        return c.id
    if isinstance(c, Mapping) and "id" in c:
        return int(c["id"])
    if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
        return int(c)
    raise TypeError(f"expected a checkpoint or checkpoint id, got {type(c).__name__} {c!r}")


def _tensor_sha(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(str((tuple(t.shape), str(t.dtype))).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _first_difference(stored: Sequence, given: Sequence) -> str:
    """Words naming the first state-dict entry whose name or shape differs between two
    architectures (lists of ``[name, shape]``)."""
    theirs = {str(k): list(v) for k, v in stored}
    ours = {str(k): list(v) for k, v in given}
    for name, shape in ours.items():
        if name in theirs and theirs[name] != shape:
            return f"first difference: {name!r} has shape {theirs[name]} in the project but {shape} in the model"
    for name in theirs:
        if name not in ours:
            return f"first difference: the project has {name!r} {theirs[name]}, which the model lacks"
    for name in ours:
        if name not in theirs:
            return f"first difference: the model has {name!r} {ours[name]}, which the project lacks"
    return "the state dict order differs"


def _callable_name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__


# ---------------------------------------------------------------------------------------- surfaces
ADAPTIVE_OPTIONS = ("rtol", "budget", "coarse_step", "batch", "near_min", "spacing")


def _adaptive_options(adaptive: Any) -> dict | None:
    """``Session.surface``'s ``adaptive=`` as the full options of
    :func:`lossviz.refine.refine_surface` (its defaults filled in, so ``True`` and ``{}`` name the
    same result), or ``None`` for the full uniform surface. Bad options raise ValueError here,
    before any work."""
    if adaptive is None or adaptive is False:
        return None
    import inspect
    import math
    import numbers

    from lossviz.refine import check_refine_options, refine_surface

    params = inspect.signature(refine_surface).parameters
    options = {k: params[k].default for k in ADAPTIVE_OPTIONS}
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
        raise ValueError(
            f"unknown adaptive option(s) {unknown}: the allowed ones are {list(ADAPTIVE_OPTIONS)}"
        )
    options.update(given)

    def real(name: str) -> float:
        v = options[name]
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise ValueError(f"adaptive option {name!r} must be a finite number, got {v!r}")
        return float(v)

    def integer(name: str, least: int) -> int:
        v = options[name]
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < least:
            raise ValueError(f"adaptive option {name!r} must be an integer >= {least}, got {v!r}")
        return int(v)

    for name in ("rtol", "budget", "batch"):
        options[name] = real(name)
    try:
        check_refine_options(options["rtol"], options["budget"], options["batch"])
    except ValueError as e:
        raise ValueError(f"adaptive option {e}") from None
    options["coarse_step"] = None if options["coarse_step"] is None else integer("coarse_step", 1)
    options["near_min"] = integer("near_min", 0)
    options["spacing"] = integer("spacing", 0)
    return options


def _adaptive_cap(shape: tuple[int, ...], options: Mapping[str, Any]) -> int:
    """The most points :func:`~lossviz.refine.refine_surface` evaluates with ``options`` (its
    budget, or the coarse lattice when that is larger): the job's progress total."""
    import math

    from lossviz.refine import coarse_mask, first_lattice_step

    step = first_lattice_step(shape, options["coarse_step"])
    return max(int(options["budget"] * math.prod(shape)), int(coarse_mask(shape, step).sum()))


def _save_interval(save_every_s: Any) -> float:
    import math
    import numbers

    if isinstance(save_every_s, bool) or not isinstance(save_every_s, numbers.Real) or math.isnan(save_every_s) \
            or save_every_s < 0:
        raise ValueError(
            f"save_every_s must be a number of seconds >= 0 (0: save after every chunk), got {save_every_s!r}"
        )
    return float(save_every_s)


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


class Session:
    """A lossviz project: checkpoints, training branches and everything computed on them.

    Parameters
    ----------
    path:
        Project folder (created if missing).
    model:
        A zoo name (``"mlp"``, ``"resnet20"``, ``"module:factory"``), a factory returning a fresh
        ``nn.Module``, or a module (its weights become the ``init`` checkpoint). ``None`` when
        reopening a project created with a zoo name.
    data:
        A zoo name (``"spirals"``), a ``Dataset`` (train only), a ``(train, test)`` pair of
        datasets, or an ``(inputs, targets)`` pair of tensors. ``None`` when reopening a project
        created with a zoo name.
    loss:
        ``"cross_entropy"``, ``"mse"``, ``"nll"`` or ``fn(outputs, targets) -> mean``.
    metrics:
        Extra metrics: ``{name: fn(outputs, targets) -> mean}`` or a list of functions.
    eval_samples:
        Evaluate checkpoints and surfaces on the first ``eval_samples`` samples of each split.
    hparams:
        Default hyperparameters of the project (see :data:`lossviz.training.DEFAULT_HPARAMS`).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        model: str | Callable[[], nn.Module] | nn.Module | None = None,
        data: Any = None,
        loss: str | Callable = "cross_entropy",
        metrics: Mapping[str, Callable] | Sequence[Callable] | None = None,
        *,
        model_kwargs: Mapping[str, Any] | None = None,
        data_kwargs: Mapping[str, Any] | None = None,
        device: str | torch.device | None = None,
        eval_samples: int | None = None,
        hparams: Mapping[str, Any] | None = None,
    ):
        self.path = Path(path)
        self.store = Store(self.path)
        try:
            stored = self.store.get_meta("spec") or {}
            model_kwargs = dict(model_kwargs if model_kwargs is not None else stored.get("model_kwargs") or {})
            data_kwargs = dict(data_kwargs if data_kwargs is not None else stored.get("data_kwargs") or {})

            # ---- model
            self._template: nn.Module | None = None
            if model is None:
                if not stored.get("model"):
                    self.store.close()
                    raise ValueError(
                        f"{self.path}: pass model= (a zoo name such as 'mlp' or a factory); "
                        + ("this project was created with a model factory, pass it again"
                           if stored else "the project is new")
                    )
                model = stored["model"]
            if isinstance(model, str):
                from lossviz.zoo import get_model

                name = model
                self._factory = lambda: get_model(name, **model_kwargs)
                model_name = name
            elif isinstance(model, nn.Module):
                self._template = copy.deepcopy(model).cpu()
                self._factory = lambda: copy.deepcopy(self._template)
                model_name = None
            elif callable(model):
                self._factory = model
                model_name = None
            else:
                self.store.close()
                raise TypeError(
                    f"model must be a zoo name, a factory returning an nn.Module, or a module; got "
                    f"{type(model).__name__}"
                )

            # ---- data
            if data is None:
                if not stored.get("data"):
                    self.store.close()
                    raise ValueError(
                        f"{self.path}: pass data= (a zoo name such as 'spirals', a Dataset, or a "
                        "(train, test) pair)"
                        + ("; this project was created with a dataset, pass it again" if stored else "")
                    )
                data = stored["data"]
            data_name = None
            if isinstance(data, str):
                from lossviz.zoo import get_data

                data_name = data
                self._train_set, self._test_set = get_data(data, **data_kwargs)
            elif isinstance(data, (tuple, list)) and len(data) == 2:
                if all(isinstance(t, (torch.Tensor, np.ndarray)) for t in data):
                    x, y = (torch.as_tensor(t) for t in data)
                    self._train_set, self._test_set = torch.utils.data.TensorDataset(x, y), None
                else:
                    self._train_set, self._test_set = data
            elif hasattr(data, "__getitem__") and hasattr(data, "__len__"):
                self._train_set, self._test_set = data, None
            else:
                self.store.close()
                raise TypeError(
                    f"data must be a zoo name, a Dataset, a (train, test) pair or (inputs, targets); "
                    f"got {type(data).__name__}"
                )
            if self._train_set is None or len(self._train_set) == 0:
                self.store.close()
                raise ValueError("the training data is empty: give a dataset with samples")

            # ---- loss, metrics, device
            if isinstance(loss, str) and loss == "cross_entropy" and isinstance(stored.get("loss"), str):
                loss = stored["loss"]
            T.resolve_loss(loss)  # validates
            self.loss = loss
            if metrics is None:
                self._metrics: dict[str, Callable] = {}
            elif isinstance(metrics, Mapping):
                self._metrics = dict(metrics)
            else:
                self._metrics = {_callable_name(f): f for f in metrics}
            for name, fn in self._metrics.items():
                if not callable(fn) or name in ("loss", "acc"):
                    raise ValueError(f"metric {name!r} must be a callable fn(outputs, targets) not named loss/acc")
            if device is None:
                device = "cuda" if torch.cuda.is_available() else "cpu"
            self.device = torch.device(device)
            if eval_samples is None:
                eval_samples = stored.get("eval_samples")
            if eval_samples is not None and (int(eval_samples) != eval_samples or eval_samples < 1):
                raise ValueError(f"eval_samples must be a positive integer, got {eval_samples!r}")
            self.eval_samples = None if eval_samples is None else int(eval_samples)

            defaults = dict(T.DEFAULT_HPARAMS)
            defaults.update(stored.get("hparams") or {})
            unknown = sorted(set(hparams or {}) - set(T.HPARAM_NAMES))
            if unknown:
                raise ValueError(
                    f"unknown hyperparameter(s) {unknown}: use {list(T.HPARAM_NAMES)}"
                )
            defaults.update(hparams or {})
            self._defaults = T.validate_hparams(defaults)

            # ---- architecture check and spec
            probe = self._factory()
            if not isinstance(probe, nn.Module):
                raise TypeError(f"the model factory returned {type(probe).__name__}, not an nn.Module")
            arch = [[k, list(v.shape)] for k, v in probe.state_dict().items()]
            self._check_loss(probe)
            spec = {
                "version": SPEC_VERSION,
                "model": model_name,
                "model_kwargs": model_kwargs if model_name else None,
                "data": data_name,
                "data_kwargs": data_kwargs if data_name else None,
                "loss": loss if isinstance(loss, str) else None,
                "eval_samples": self.eval_samples,
                "hparams": {k: v for k, v in self._defaults.items()},
                "architecture": arch,
                "created": time.time(),
            }
            existing = self.store.set_meta_if_absent("spec", spec)
            if existing is not spec and existing.get("architecture") != arch:
                self.store.close()
                raise ValueError(
                    f"{self.path} holds checkpoints of another architecture than the given model "
                    f"({_first_difference(existing.get('architecture') or [], arch)}): open it with "
                    "the model it was created with, or choose another folder"
                )
            self.spec = existing
        except BaseException:
            self.store.discard_if_created()  # a failed opening leaves no new project behind
            raise

        self._queue = JobQueue(f"lossviz-jobs-{self.path.name}")
        self.jobs: list[Job] = []
        self._subscribers: list[Callable[[dict], None]] = []
        self._sub_lock = threading.Lock()
        self._eval_cache: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
        self._data_hash: str | None = None
        self._init_lock = threading.Lock()

    def _check_loss(self, probe: nn.Module) -> None:
        """A loss (or metric) returning more than one number is named at opening, before any work;
        other failures of the probe surface where they happen."""
        try:
            x, y = T.dataset_tensors(self._train_set, 2)
            with torch.no_grad():
                out = probe.eval()(x)
            loss_fn, _ = T.resolve_loss(self.loss)
            values = [("the loss", loss_fn(out, y))]
            values += [(f"metric {name!r}", fn(out, y)) for name, fn in self._metrics.items()]
        except Exception:  # noqa: BLE001 - not this check's business
            return
        for what, value in values:
            T.scalar_value(value, what)

    # ------------------------------------------------------------------ projects
    @staticmethod
    def list_projects(root: str | os.PathLike) -> list[dict]:
        """Projects (folders with an index) directly under ``root``: path, name, model, data,
        n_checkpoints, modified (unix time of the last checkpoint)."""
        return store.list_projects(root)

    def close(self) -> None:
        """Stop the worker after queued jobs and close the index."""
        self._queue.shutdown(wait=True, timeout=60)
        self.store.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Session({str(self.path)!r}, checkpoints={self.store.n_checkpoints()})"

    # ------------------------------------------------------------------ events
    def subscribe(self, callback: Callable[[dict], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for every event (from worker threads); returns ``unsubscribe``."""
        with self._sub_lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._sub_lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def _emit(self, event: dict) -> None:
        with self._sub_lock:
            subs = list(self._subscribers)
        for cb in subs:
            try:
                cb(event)
            except Exception:  # a subscriber's error must never reach the worker
                pass

    def _job(self, kind: str, fn: Callable[[Job], Any], description: str) -> Job:
        def changed(j: Job) -> None:  # the live job, and a snapshot of its state at the event
            self._emit({"type": "job", "job": j, "state": j.state, "progress": j.progress,
                        "message": j.message})

        job = Job(kind, fn, description=description, on_change=changed)
        self.jobs.append(job)
        return job

    def _submit(self, job: Job) -> Job:
        return self._queue.submit(job)

    # ------------------------------------------------------------------ checkpoints
    @property
    def defaults(self) -> dict:
        """The project's default hyperparameters (used by the ``init`` checkpoint)."""
        return copy.deepcopy(self._defaults)

    def checkpoints(self, branch: int | None = None) -> list[Checkpoint]:
        return self.store.checkpoints(branch)

    def checkpoint(self, id: Any) -> Checkpoint:
        return self.store.checkpoint(_id_of(id))

    def branches(self) -> list[dict]:
        return self.store.branches()

    def new_model(self) -> nn.Module:
        """A fresh model from the factory (random initial weights)."""
        return self._factory()

    def model(self, id: Any) -> nn.Module:
        """The model with checkpoint ``id``'s weights loaded (on the session's device)."""
        m = self._factory()
        m.load_state_dict(self.store.load_state_dict(_id_of(id)))
        return m.to(self.device)

    def vector(self, id: Any, kind: str = "weights") -> torch.Tensor:
        """Checkpoint ``id`` as a flat CPU vector of the ``kind`` space ("weights" or "states")."""
        m = self._factory()
        m.load_state_dict(self.store.load_state_dict(_id_of(id)))
        return ParamSpace(m, kind).vector(m).detach().cpu()

    def space(self, kind: str = "weights") -> ParamSpace:
        return ParamSpace(self._factory(), kind)

    # ------------------------------------------------------------------ evaluation
    def eval_data(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The evaluation tensors per split ("train", and "test" when there is test data)."""
        if self._eval_cache is None:
            out = {"train": T.dataset_tensors(self._train_set, self.eval_samples)}
            if self._test_set is not None:
                out["test"] = T.dataset_tensors(self._test_set, self.eval_samples)
            self._eval_cache = out
        return self._eval_cache

    def data_fingerprint(self) -> str:
        """sha256 of the evaluation tensors (part of every stored result's key)."""
        if self._data_hash is None:
            tensors = [t for pair in self.eval_data().values() for t in pair]
            self._data_hash = _tensor_sha(*tensors)
        return self._data_hash

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Metrics of ``model``: ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``, + user metrics."""
        out = {}
        for split, (x, y) in self.eval_data().items():
            res = T.evaluate_model(model, x, y, self.loss, self._metrics, device=self.device)
            out.update({f"{split}_{k}": v for k, v in res.items()})
        return out

    def _add(self, model: nn.Module, **kw) -> Checkpoint:
        c = self.store.add_checkpoint(model.state_dict(), **kw)
        self._emit({"type": "checkpoint", "checkpoint": c})
        return c

    def _ensure_init(self) -> Checkpoint:
        with self._init_lock:
            existing = self.store.checkpoints()
            if existing:
                return existing[0]
            if self._template is not None:
                model = self._factory()
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(self._defaults["seed"])
                    model = self._factory()
            model.to(self.device)
            return self._add(
                model, parent=None, branch="new", kind="init", epoch=0.0, step=0,
                hparams=self._defaults, metrics=self.evaluate(model), note="initial weights",
            )

    def init(self) -> Checkpoint:
        """The project's first checkpoint, created (seeded by the default seed) when missing."""
        return self._ensure_init()

    # ------------------------------------------------------------------ training
    def _resolve_hparams(self, start: Checkpoint, given: dict) -> dict:
        base = dict(self._defaults)
        base.update({k: v for k, v in start.hparams.items() if k in T.HPARAM_NAMES})
        given = {k: v for k, v in given.items() if v is not None}
        if "schedule" in given:
            sched = T.normalize_schedule(given["schedule"])
            if sched == T.normalize_schedule("cifar") and "lr" not in given:
                given["lr"] = T.CIFAR_LR
        base.update(given)
        return T.validate_hparams(base)

    def train(
        self,
        from_: Any = None,
        epochs: int = 1,
        lr: float | None = None,
        optimizer: str | None = None,
        momentum: float | None = None,
        nesterov: bool | None = None,
        weight_decay: float | None = None,
        batch_size: int | None = None,
        schedule: Any = None,
        seed: int | None = None,
        every: int = 1,
    ) -> Job:
        """Train ``epochs`` epochs from checkpoint ``from_`` in the background; returns the job.

        ``from_=None``: the latest healthy checkpoint (the ``init`` checkpoint, created first, on an
        empty project). Hyperparameters not given are inherited from ``from_``. From a checkpoint
        that already has a successor, a new branch starts; from the last one, the branch continues.
        Two trainings launched from one checkpoint at once (here, queued, or from another process)
        both run: the first to store a checkpoint continues the branch, the other starts a new one.
        A checkpoint is stored every ``every`` epochs and after the last; ``job.result`` is the
        list of new checkpoints. Bad hyperparameters raise ValueError here, before anything starts.
        """
        if isinstance(epochs, bool) or int(epochs) != epochs or epochs < 1:
            raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
        if isinstance(every, bool) or int(every) != every or every < 1:
            raise ValueError(f"every must be an integer >= 1, got {every!r}")
        if from_ is None:
            if self.store.n_checkpoints() == 0:
                start = self._ensure_init()
            else:
                ok = [c for c in self.store.checkpoints() if c.status == "ok"]
                if not ok:
                    raise ValueError("every checkpoint of the project diverged; pass from_= explicitly")
                start = ok[-1]
        else:
            start = self.checkpoint(from_)
        if start.status != "ok":
            raise ValueError(
                f"checkpoint {start.id} is {start.status!r} ({start.note}); train from an earlier one"
            )
        h = self._resolve_hparams(
            start,
            dict(lr=lr, optimizer=optimizer, momentum=momentum, nesterov=nesterov,
                 weight_decay=weight_decay, batch_size=batch_size, schedule=schedule, seed=seed),
        )
        epochs, every = int(epochs), int(every)

        def run(job: Job) -> list[Checkpoint]:
            model = self.model(start.id)
            optim_state = None
            if start.hparams.get("optimizer") == h["optimizer"]:
                optim_state = self.store.load_optim_state(start.id)
            created: list[Checkpoint] = []
            job.result = created
            where = {"parent": start.id, "branch": "auto"}

            def on_checkpoint(*, model, optimizer, epoch, step, metrics, status, note, hparams):
                c = self._add(
                    model, parent=where["parent"], branch=where["branch"], kind="train",
                    epoch=epoch, step=step, hparams=hparams, metrics=metrics, status=status,
                    note=note, optim_state=None if optimizer is None else optimizer.state_dict(),
                )
                where["parent"], where["branch"] = c.id, c.branch
                created.append(c)

            outcome = T.train(
                model, self._train_set, hparams=h, epochs=epochs, start_epoch=start.epoch,
                start_step=start.step, every=every, loss=self.loss, optim_state=optim_state,
                evaluate=self.evaluate, on_checkpoint=on_checkpoint, cancel=job.cancel_event,
                progress=lambda d, t, m: job.update(d, t, m), device=self.device,
            )
            if outcome.status == "diverged":
                self._emit({"type": "error", "message": f"training job {job.id}: {outcome.reason}"})
                job.fail(outcome.reason, result=created)
            elif outcome.status == "cancelled":
                job.end_cancelled(created, f"cancelled at epoch {outcome.epoch:g}")
            return created

        job = self._job("train", run, f"train {epochs} epoch(s) from checkpoint {start.id}")
        job.start_checkpoint = start.id
        job.hparams = h
        return self._submit(job)

    # ------------------------------------------------------------------ disturb, interpolate
    def disturb(self, checkpoint: Any, magnitude: float, seed: int | None = None) -> Checkpoint:
        """A new branch root at ``θ + magnitude · d``, ``d`` a filter-normalized random direction
        (weights; biases and BN parameters not moved), evaluated at once."""
        from lossviz.directions import random_direction

        magnitude = T._number("magnitude", magnitude)
        src = self.checkpoint(checkpoint)
        if seed is None:
            seed = int.from_bytes(os.urandom(4), "little")
        model = self.model(src.id)
        space = ParamSpace(model, "weights")
        center = space.vector(model)
        d = random_direction(space, center, seed=int(seed), normalization="filter", ignore="biasbn")
        space.load_into(model, center + magnitude * d)
        hp = dict(src.hparams)
        hp["disturb"] = {"source": src.id, "magnitude": magnitude, "seed": int(seed)}
        return self._add(
            model, parent=src.id, branch="new", kind="disturb", epoch=src.epoch, step=src.step,
            hparams=hp, metrics=self.evaluate(model),
            note=f"disturbed checkpoint {src.id} by {magnitude:g} along a filter-normalized random direction (seed {seed})",
        )

    def interpolate(self, a: Any, b: Any, n: int) -> list[Checkpoint]:
        """``n`` checkpoints at ``t = 0, 1/(n-1), ..., 1`` on the segment from ``a`` to ``b``: every
        floating state entry (weights and BN statistics) is ``lerp(a, b, t)``; integer buffers come
        from the nearer end. Stored as a new branch forked at ``a``, evaluated."""
        if isinstance(n, bool) or int(n) != n or n < 2:
            raise ValueError(f"n must be an integer >= 2 (the two ends included), got {n!r}")
        ca, cb = self.checkpoint(a), self.checkpoint(b)
        sa, sb = self.store.load_state_dict(ca.id), self.store.load_state_dict(cb.id)
        model = self._factory()
        model.to(self.device)
        created: list[Checkpoint] = []
        parent, branch = ca.id, "new"
        for t in np.linspace(0.0, 1.0, int(n)):
            t = float(t)
            sd = {
                k: torch.lerp(v, sb[k], t) if v.is_floating_point() else (v if t < 0.5 else sb[k]).clone()
                for k, v in sa.items()
            }
            model.load_state_dict(sd)
            hp = dict(ca.hparams)
            hp["interpolate"] = {"a": ca.id, "b": cb.id, "t": t}
            c = self._add(
                model, parent=parent, branch=branch, kind="interpolate",
                epoch=(1 - t) * ca.epoch + t * cb.epoch, step=int(round((1 - t) * ca.step + t * cb.step)),
                hparams=hp, metrics=self.evaluate(model),
                note=f"interpolation t={t:g} between checkpoints {ca.id} and {cb.id}",
            )
            parent, branch = c.id, c.branch
            created.append(c)
        return created

    # ------------------------------------------------------------------ distances
    def distance(self, a: Any, b: Any, kind: str = "weights") -> float:
        """Euclidean distance ``‖θ_a − θ_b‖`` (computed in float64)."""
        va, vb = self.vector(a, kind), self.vector(b, kind)
        return float(torch.linalg.norm(va.double() - vb.double()))

    def distances(self, ids: Iterable[Any], kind: str = "weights") -> np.ndarray:
        """Pairwise distances (n, n): symmetric, zero diagonal (float64)."""
        ids = [_id_of(i) for i in ids]
        vecs = torch.stack([self.vector(i, kind) for i in ids]).double()
        n = len(ids)
        out = np.zeros((n, n))
        for i in range(n):
            if i + 1 < n:
                out[i, i + 1 :] = torch.linalg.norm(vecs[i + 1 :] - vecs[i], dim=1).numpy()
        return out + out.T

    # ------------------------------------------------------------------ surfaces
    def _default_trajectory(self, center: Checkpoint) -> list[int]:
        """The center's branch and the branches it forked from, up to the center (ok checkpoints)."""
        ids, c = [], center
        while c is not None:
            ids.append(c.id)
            c = self.store.checkpoint(c.parent) if c.parent is not None else None
        return [i for i in reversed(ids) if self.store.checkpoint(i).status == "ok"]

    def _direction_desc(self, directions: Any, center: Checkpoint, kind: str) -> Any:
        """A json-able description of ``directions`` that defines them (for the result key)."""
        if isinstance(directions, str):
            if directions not in ("random", "pca", "hessian"):
                raise ValueError(
                    f"directions {directions!r} is unknown: use 'random', 'pca', 'hessian', a checkpoint "
                    "id, a vector or a pair of those"
                )
            return directions
        if isinstance(directions, (Checkpoint, int, np.integer)) and not isinstance(directions, bool):
            return {"target": _id_of(directions)}
        if isinstance(directions, torch.Tensor) and directions.dim() == 2:
            return [{"vector": _tensor_sha(v)} for v in directions]
        if isinstance(directions, torch.Tensor):
            return {"vector": _tensor_sha(directions)}
        if isinstance(directions, np.ndarray):
            return self._direction_desc(torch.from_numpy(directions), center, kind)
        if isinstance(directions, (tuple, list)) and 1 <= len(directions) <= 2:
            return [self._direction_desc(d, center, kind) for d in directions]
        if hasattr(directions, "vectors"):  # a DirectionSet
            return {"set": [_tensor_sha(v) for v in directions.vectors], "kind": directions.kind}
        raise TypeError(f"cannot use {type(directions).__name__} as surface directions")

    def _build_directions(
        self, directions: Any, center: Checkpoint, model: nn.Module, kind: str, ndim: int,
        ignore: str | None, seed: int, checkpoints: Sequence[Any] | None,
    ) -> tuple[Any, dict]:
        """-> (what compute_surface takes as directions, extra meta)."""
        from lossviz.directions import DirectionSet, pca_directions

        space = ParamSpace(model, kind)
        cvec = space.vector(model).detach().cpu()
        if isinstance(directions, str):
            if directions == "random":
                return "random", {}
            if directions == "pca":
                ids = [_id_of(i) for i in checkpoints] if checkpoints is not None else self._default_trajectory(center)
                if len(ids) < max(2, ndim):
                    raise ValueError(
                        f"PCA directions need at least {max(2, ndim)} checkpoints, got {len(ids)}: "
                        "train the branch longer or pass checkpoints=[...]"
                    )
                vecs = torch.stack([self.vector(i, kind) for i in ids])
                pca = pca_directions(
                    vecs, center=cvec, n_components=ndim,
                    ignore="biasbn" if ignore == "biasbn" else None, space=space,
                )
                ds = pca.to_direction_set(kind=kind, ignore=ignore)
                return ds, {"trajectory": {"ids": ids, "coords": np.asarray(pca.coords).tolist()},
                            "explained_variance_ratio": np.asarray(pca.explained_variance_ratio).tolist()}
            if directions == "hessian":
                try:
                    from lossviz import hessian as H
                except ImportError:
                    raise ValueError("directions='hessian' needs lossviz.hessian, which is not installed") from None
                if kind != "weights":
                    raise ValueError("Hessian directions live in the weights space: pass kind='weights'")
                vecs = H.eigenvector_directions(model, self.eval_data()["train"], ndim, self.loss, seed=seed)
                ds = DirectionSet([v.detach().cpu().float() for v in vecs], kind=kind,
                                  normalization=None, ignore=None, method="hessian")
                return ds, {}
        parts = list(directions) if isinstance(directions, (tuple, list)) else None
        if parts is None and isinstance(directions, torch.Tensor) and directions.dim() == 2:
            parts = list(directions)
        if parts is None:
            parts = [directions]
        vecs, targets = [], []
        for p in parts:
            if isinstance(p, (Checkpoint, int, np.integer)) and not isinstance(p, bool):
                tid = _id_of(p)
                vecs.append(self.vector(tid, kind) - cvec)
                targets.append(tid)
            elif hasattr(p, "vectors"):
                return p, {}
            else:
                vecs.append(torch.as_tensor(p).detach().cpu().reshape(-1).to(cvec.dtype))
                targets.append(None)
        if len(vecs) != ndim:
            raise ValueError(
                f"{len(vecs)} direction(s) given for a {ndim}D surface: "
                + ("pass y='min:max:num'" if len(vecs) == 2 else "give two directions for a 2D surface")
            )
        method = "target" if all(t is not None for t in targets) else "custom"
        ds = DirectionSet(vecs, kind=kind, normalization=None, ignore=None, method=method)
        return ds, ({"targets": targets} if any(t is not None for t in targets) else {})

    def surface(
        self,
        center: Any,
        directions: Any = "random",
        x: Any = "-1:1:21",
        y: Any = None,
        normalization: str | None = "filter",
        ignore: str | None = "biasbn",
        kind: str = "weights",
        seed: int = 0,
        checkpoints: Sequence[Any] | None = None,
        wait: bool = True,
        *,
        adaptive: bool | Mapping[str, Any] | None = None,
        save_every_s: float = 2.0,
        **engine: Any,
    ):
        """The loss surface around checkpoint ``center`` (stored in the project, found again).

        ``directions``: ``"random"`` (normalized by ``normalization``, ``ignore`` rules, ``seed``),
        ``"pca"`` (of ``checkpoints``, by default the center's lineage; the trajectory's coordinates
        in ``meta["trajectory"]``), ``"hessian"`` (top eigenvectors), a checkpoint id (the direction
        to it), a vector, or a pair of those. An interrupted surface resumes where it stopped.
        ``wait=False`` returns a job whose ``result`` is the Surface filling progressively.
        ``engine`` options (``chunk_size``, ``points_per_call``, ``strategy``, ``batch_size``,
        ``precision``, ``channels_last``, ``dtype``) go to
        :func:`lossviz.surface.compute_surface`; a non-float32 ``precision`` or ``dtype`` is part of
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

        ``save_every_s``: while computing, the partial surface is saved at most every
        ``save_every_s`` seconds (0: after every chunk), and always at the end, on cancel and on
        failure; a killed process resumes from the last partial saved.
        """
        from lossviz.grid import SurfaceGrid

        c = self.checkpoint(center)
        grid = SurfaceGrid.from_specs(x, y)
        if kind not in ("weights", "states"):
            raise ValueError(f"kind must be 'weights' or 'states', got {kind!r}")
        refine_options = _adaptive_options(adaptive)
        every_s = _save_interval(save_every_s)
        for bad in ("callback", "cancel", "resume", "progress", "only", "trajectory"):
            if bad in engine:
                raise TypeError(f"session.surface() takes no {bad!r}: the session sets it itself")
        desc = self._direction_desc(directions, c, kind)
        dname = directions if isinstance(directions, str) else None
        if dname == "pca":
            ids = [_id_of(i) for i in checkpoints] if checkpoints is not None else self._default_trajectory(c)
            desc = {"pca": ids, "ignore": ignore}
            if len(ids) < max(2, grid.ndim):
                raise ValueError(
                    f"PCA directions need at least {max(2, grid.ndim)} checkpoints, got {len(ids)}: "
                    "train the branch longer or pass checkpoints=[...]"
                )
        random_like = dname == "random"
        spec = {
            "type": "surface",
            "center": c.id,
            "directions": desc,
            "normalization": normalization if random_like else None,
            "ignore": ignore if dname in ("random", "pca") else None,
            "seed": int(seed) if dname in ("random", "hessian") else None,
            "kind": kind,
            "x": grid.x.spec,
            "y": grid.y.spec if grid.y is not None else None,
            "loss": self.loss if isinstance(self.loss, str) else _callable_name(self.loss),
            "metrics": sorted(self._metrics),
            "data": self.data_fingerprint(),
        }
        if engine.get("precision", "float32") != "float32":  # bf16/tf32 values are not float32's
            spec["precision"] = engine["precision"]
        if engine.get("dtype", torch.float32) != torch.float32:  # nor are float64's
            spec["dtype"] = str(engine["dtype"]).replace("torch.", "")
        if refine_options is not None:
            spec["adaptive"] = refine_options
        key = spec_key(spec)
        found = self.store.find_result(key)
        if found is not None and found["complete"] and found["path"] is not None:
            surf = self._read_surface(found["path"])
            if not wait:
                job = self._job("surface", lambda j: surf, f"surface around checkpoint {c.id} (stored)")
                job.result = surf
                job.total = job.done = surf.done.size
                job._finish("done")
                return job
            return surf
        resume = None
        if refine_options is None and found is not None and found["path"]:
            resume = self._read_surface(found["path"])
        ndim = grid.ndim
        train_xy = self.eval_data()["train"]
        test_xy = self.eval_data().get("test")
        metrics: list[Any] = ["loss", "acc"] + [(k, f) for k, f in self._metrics.items()]
        common = dict(kind=kind, normalization=normalization, ignore=ignore, seed=seed, metrics=metrics,
                      loss=self.loss, test_data=test_xy, device=self.device, **engine)

        def save(surf, complete: bool) -> None:
            meta = {"center": c.id, "n_done": int(surf.done.sum()), "n_total": int(surf.done.size)}
            if refine_options is not None and "adaptive" in surf.meta:
                meta["n_evaluated"] = int(surf.meta["adaptive"]["n_evaluated"])
            self.store.put_result(
                key, "surface", spec, write=lambda p: self._write_surface(p, surf),
                suffix=".h5", meta=meta, complete=complete,
            )

        def run_full(job: Job, model: nn.Module, dirs: Any, extra: dict, saver: _ThrottledSaver):
            from lossviz.surface import compute_surface

            job.update(0 if resume is None else int(resume.done.sum()), grid.size, "starting", force=True)

            def callback(surf, n_done, n_total):
                surf.meta.update(extra)
                job.result = surf
                saver.offer(surf, last=bool(surf.done.all()))  # a complete one: the final save follows
                job.update(n_done, n_total, f"{n_done}/{n_total} points", force=True)
                self._emit({"type": "surface", "job": job, "surface": surf})

            surf = compute_surface(
                model, train_xy, directions=dirs, x=grid.x, y=grid.y, progress=False, callback=callback,
                cancel=job.cancel_event, resume=resume, **common,
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

        def run_adaptive(job: Job, model: nn.Module, dirs: Any, extra: dict, saver: _ThrottledSaver):
            from lossviz.refine import refine_surface

            cap = _adaptive_cap(grid.shape, refine_options)
            trajectory = extra["trajectory"]["coords"] if "trajectory" in extra else None
            # refine_surface hands the event to compute_surface: a cancel stops at the next chunk
            # (within the first lattice the result is that partial lattice, later the picture
            # interpolated from the rounds done; meta["cancelled"] either way)
            job.update(0, cap, "starting (adaptive)", force=True)

            def callback(surf, n_evaluated, n_total):
                surf.meta.update(extra)
                job.result = surf
                saver.offer(surf)
                rounds = surf.meta.get("adaptive", {}).get("rounds")
                job.update(n_evaluated, max(cap, n_evaluated),
                           f"{n_evaluated}/{n_total} points evaluated (round {rounds})", force=True)
                self._emit({"type": "surface", "job": job, "surface": surf})

            surf = refine_surface(
                model, train_xy, dirs, x=grid.x, y=grid.y, trajectory=trajectory, callback=callback,
                cancel=job.cancel_event, **refine_options, **common,
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

        def run(job: Job):
            model = self.model(c.id)
            dirs, extra = self._build_directions(directions, c, model, kind, ndim, ignore, seed, checkpoints)
            extra = {"center": c.id, "key": key, **extra}
            saver = _ThrottledSaver(save, every_s)
            try:
                if refine_options is None:
                    return run_full(job, model, dirs, extra, saver)
                return run_adaptive(job, model, dirs, extra, saver)
            except BaseException:
                try:  # the work done so far is kept (a full surface resumes from it)
                    saver.flush_partial()
                except Exception:  # noqa: BLE001, S110 - the original failure is the one to report
                    pass
                raise

        what = "adaptive surface" if refine_options is not None else "surface"
        job = self._job("surface", run, f"{what} around checkpoint {c.id} ({grid.shape})")
        if not wait:
            return self._submit(job)
        if self._queue.in_worker():
            job._run()
        else:
            self._submit(job)
            try:
                job.wait()
            except KeyboardInterrupt:
                job.cancel()
                job.wait()
        if job.state == "failed" and job.result is None:
            raise RuntimeError(f"surface failed: {job.error}")
        return job.result

    @staticmethod
    def _write_surface(path: Path, surf) -> None:
        from lossviz.io.h5 import write_surface
        import h5py

        write_surface(path, surf)
        if surf.directions is not None:
            with h5py.File(path, "a") as f:
                f.create_dataset(
                    "lossviz_direction_vectors",
                    data=surf.directions.stacked().detach().cpu().float().numpy(),
                )
                f.attrs["lossviz_direction_set"] = json.dumps(
                    {k: surf.directions.describe().get(k) for k in ("kind", "normalization", "ignore", "seed", "method")}
                    | {"meta": {k: v for k, v in surf.directions.describe().items()
                                if k not in ("kind", "normalization", "ignore", "seed", "method", "ndim", "numel")}}
                )
                f.flush()

    @staticmethod
    def _read_surface(path: Path):
        from lossviz.directions import DirectionSet
        from lossviz.io.h5 import read_json_attr, read_surface
        import h5py

        surf = read_surface(path)
        with h5py.File(path, "r") as f:
            if "lossviz_direction_vectors" in f:
                vecs = torch.from_numpy(np.asarray(f["lossviz_direction_vectors"][()]))
                info = read_json_attr(f, "lossviz_direction_set", str(path))
                missing = [k for k in ("kind", "normalization", "ignore", "seed", "method") if k not in info]
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

    def load_surface(self, key: str):
        found = self.store.find_result(key)
        if found is None or found["kind"] != "surface":
            raise KeyError(f"no stored surface {key!r}; list them with surfaces()")
        return self._read_surface(found["path"])

    # ------------------------------------------------------------------ projections
    def project(self, ids: Iterable[Any] | None = None, method: str = "layout", surface: Any = None) -> Projection:
        """2D coordinates of checkpoints ``ids`` (all by default) by ``method``: "layout" (epoch ×
        branch lane), "pca" (exact, Gram matrix streamed from disk), "tsne", "surface" (least
        squares in ``surface``'s plane)."""
        from lossviz import projection as P

        ckpts = self.store.checkpoints() if ids is None else [self.checkpoint(i) for i in ids]
        id_list = [c.id for c in ckpts]
        if method == "layout":
            by_id = {c.id: c for c in self.store.checkpoints()}
            bp = {b["id"]: (by_id[b["parent"]].branch if b["parent"] in by_id else None) for b in self.store.branches()}
            coords = P.layout(ckpts, branch_parents=bp)
            return Projection(id_list, np.asarray(coords, dtype=np.float64), "layout", {})
        if not id_list:
            raise ValueError("no checkpoints to project; train first or pass ids=[...]")
        if method in ("pca", "tsne"):
            key = spec_key({"type": "projection", "method": method, "ids": id_list})
            found = self.store.find_result(key)
            if found is not None:
                return Projection(id_list, np.asarray(found["meta"]["coords"], dtype=np.float64),
                                  method, found["meta"].get("info", {}))

            def factory():
                return (self.vector(i).numpy() for i in id_list)

            if method == "pca":
                k = min(2, len(id_list))
                res = P.pca_gram(factory, n_components=k)
                coords = np.zeros((len(id_list), 2))
                coords[:, :k] = res.coords
                info = {"explained_variance_ratio": np.asarray(res.explained_variance_ratio).tolist(),
                        "explained_variance": np.asarray(res.explained_variance).tolist()}
            else:
                coords = np.asarray(P.tsne(factory), dtype=np.float64)
                info = {}
            self.store.put_result(key, "projection", {"method": method, "ids": id_list},
                                  meta={"coords": coords.tolist(), "info": info})
            return Projection(id_list, coords, method, info)
        if method == "surface":
            if surface is None:
                raise ValueError("method='surface' needs surface= (a Surface from session.surface)")
            if isinstance(surface, str):
                surface = self.load_surface(surface)
            if surface.directions is None or "center" not in surface.meta:
                raise ValueError("this surface has no stored directions or center; compute it through the session")
            kind = surface.directions.kind
            cvec = self.vector(surface.meta["center"], kind)
            vecs = torch.stack([self.vector(i, kind) for i in id_list])
            d = surface.directions.vectors
            coords = np.asarray(P.onto_plane(vecs, cvec, d[0], d[1] if len(d) > 1 else None))
            if coords.shape[1] == 1:
                coords = np.concatenate([coords, np.zeros_like(coords)], axis=1)
            return Projection(id_list, coords, "surface", {"surface": surface.meta.get("key")})
        raise ValueError(f"projection method {method!r} is unknown: use layout, pca, tsne or surface")

    # ------------------------------------------------------------------ hessian
    def hessian(self, checkpoint: Any, k: int = 2, trace: bool = True) -> dict:
        """Top-``k`` Hessian eigenpairs (and the trace) of the training loss at ``checkpoint``,
        through :mod:`lossviz.hessian`; stored and found again."""
        try:
            from lossviz import hessian as H
        except ImportError:
            raise ValueError("session.hessian needs lossviz.hessian, which is not installed") from None
        c = self.checkpoint(checkpoint)
        spec = {"type": "hessian", "center": c.id, "k": int(k), "trace": bool(trace),
                "loss": self.loss if isinstance(self.loss, str) else _callable_name(self.loss),
                "data": self.data_fingerprint()}
        key = spec_key(spec)
        found = self.store.find_result(key)
        if found is not None and found["path"] is not None:
            from lossviz.files import read_safetensors

            tensors, _ = read_safetensors(found["path"])
            out = dict(found["meta"])
            out["eigenvectors"] = [tensors[f"v{i}"] for i in range(len(out["eigenvalues"]))]
            return out
        model = self.model(c.id)
        data = self.eval_data()["train"]
        r = H.top_eigenpairs(model, data, int(k), self.loss)
        vectors = list(r.eigenvectors)
        out = {"checkpoint": c.id, "eigenvalues": [float(v) for v in r.eigenvalues],
               "residuals": [float(v) for v in r.residuals], "converged": bool(r.converged)}
        if trace:
            tr = H.trace(model, data, loss=self.loss)
            out["trace"], out["trace_stderr"] = float(tr.mean), float(tr.stderr)
        from lossviz.files import safetensors_bytes

        vecs = [torch.as_tensor(v).detach().cpu().reshape(-1) for v in vectors]
        self.store.put_result(
            key, "hessian", spec, suffix=".safetensors", meta=out,
            write=lambda p: Path(p).write_bytes(
                safetensors_bytes({f"v{i}": v for i, v in enumerate(vecs)})
            ),
        )
        out["eigenvectors"] = vecs
        return out
