"""What every part of a session shares: the project it opened, its two job queues, its events,
reading checkpoints as models and vectors, and evaluating models on the project's data."""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import nn

from lossviz import training as T
from lossviz.batches import tensors_of
from lossviz.data import EvalData, as_eval_data
from lossviz.jobs import Job, JobCancelled, JobQueue
from lossviz.params import ParamSpace, SpaceKind
from lossviz.session.project import Project
from lossviz.store import Checkpoint, Store, checkpoint_id, tensor_sha

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self needs Python 3.11

R = TypeVar("R")


def id_of(c: Any) -> int:
    """The checkpoint id of a :class:`~lossviz.store.Checkpoint`, a mapping with ``"id"`` or an integer."""
    cid = int(c["id"]) if isinstance(c, Mapping) and "id" in c else checkpoint_id(c)
    if cid is None:
        raise TypeError(f"expected a checkpoint or checkpoint id, got {type(c).__name__} {c!r}")
    return cid


def step(job: Job | None, done: int, total: int, what: str) -> None:
    """Progress of a quick job between two of its steps, ``"{done}/{total} {what}"``; stops it here
    (``JobCancelled``) when it was cancelled, unless all steps are done. ``job`` is ``None`` for a
    blocking call (no progress)."""
    if job is None:
        return
    if job.cancelled and done < total:
        raise JobCancelled(f"cancelled after {done}/{total} {what}")
    job.update(done, total, f"{done}/{total} {what}")


class SessionBase:
    """The state of an opened session and the operations every part of it uses."""

    path: Path
    store: Store
    loss: str | Callable
    device: torch.device
    eval_samples: int | None
    spec: dict
    jobs: list[Job]

    def _attach(self, project: Project) -> None:
        """Keep what :func:`~lossviz.session.project.open_project` resolved; start no thread yet."""
        self.path = project.store.path
        self.store = project.store
        self._factory = project.model.factory
        self._template = project.model.template
        self._train_set, self._test_set = project.data.train, project.data.test
        self.loss = project.loss
        self.forward = project.forward  # forward(model, batch) hook, or None: the calling rule
        self._metrics = project.metrics  # the user's callables {name: fn}
        self._metric_names = project.metric_names  # the named metrics beyond loss and acc ("perplexity")
        self.device = project.device
        self.eval_samples = project.eval_samples
        self._defaults = project.defaults
        self.spec = project.spec
        self._queue = JobQueue(f"lossviz-jobs-{self.path.name}")
        self._quick = JobQueue(f"lossviz-quick-{self.path.name}")
        self._surfaces = JobQueue(f"lossviz-surfaces-{self.path.name}")  # surfaces run next to training
        self.jobs = []
        self._subscribers: list[Callable[[dict], None]] = []
        self._sub_lock = threading.Lock()
        self._eval_cache: dict[str, EvalData] | None = None
        self._data_hash: str | None = None
        self._init_lock = threading.Lock()
        self._weight_norms: dict[int, float] = {}  # checkpoint id -> weight norm (AnalysisOps.weight_norm)

    def close(self) -> None:
        """Stop the workers after queued jobs and close the index."""
        self._quick.shutdown(wait=True, timeout=60)
        self._surfaces.shutdown(wait=True, timeout=60)
        self._queue.shutdown(wait=True, timeout=60)
        self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Session({str(self.path)!r}, checkpoints={self.store.n_checkpoints()})"

    # ------------------------------------------------------------------ events and jobs
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
            with contextlib.suppress(Exception):  # a subscriber's error must never reach the worker
                cb(event)

    def _job(self, kind: str, fn: Callable[[Job], Any], description: str) -> Job:
        def changed(j: Job) -> None:  # the live job, and a snapshot of its state at the event
            self._emit({"type": "job", "job": j, "state": j.state, "progress": j.progress, "message": j.message})

        job = Job(kind, fn, description=description, on_change=changed)
        self.jobs.append(job)
        return job

    def _submit(self, job: Job) -> Job:
        return self._queue.submit(job)

    def _quick_work(self, kind: str, description: str, work: Callable[[Job | None], R], wait: bool) -> R | Job:
        """``work(None)`` now (``wait``), or a job on the quick queue whose result is ``work(job)``'s."""
        if wait:
            return work(None)
        return self._quick.submit(self._job(kind, work, description))

    # ------------------------------------------------------------------ checkpoints
    @property
    def defaults(self) -> dict:
        """The project's default hyperparameters (used by the ``init`` checkpoint)."""
        return copy.deepcopy(self._defaults)

    def checkpoints(self, branch: int | None = None) -> list[Checkpoint]:
        return self.store.checkpoints(branch)

    def checkpoint(self, id: Any) -> Checkpoint:
        """Checkpoint ``id`` (an id, a mapping with ``"id"``, or a Checkpoint of this project: one of
        another project is refused)."""
        return self.store.checkpoint(id if isinstance(id, Checkpoint) else id_of(id))

    def branches(self) -> list[dict]:
        return self.store.branches()

    def new_model(self) -> nn.Module:
        """A fresh model from the factory (random initial weights)."""
        return self._factory()

    def model(self, id: Any) -> nn.Module:
        """The model with checkpoint ``id``'s weights loaded (on the session's device)."""
        m = self._factory()
        m.load_state_dict(self.store.load_state_dict(self.checkpoint(id).id))
        return m.to(self.device)

    def vector(self, id: Any, kind: SpaceKind = "weights") -> torch.Tensor:
        """Checkpoint ``id`` as a flat CPU vector of the ``kind`` space ("weights" or "states")."""
        m = self._factory()
        m.load_state_dict(self.store.load_state_dict(self.checkpoint(id).id))
        return ParamSpace(m, kind).vector(m).detach().cpu()

    def space(self, kind: SpaceKind = "weights") -> ParamSpace:
        return ParamSpace(self._factory(), kind)

    # ------------------------------------------------------------------ evaluation
    @property
    def has_data(self) -> bool:
        """False for a session opened without data (``data=False``): it stores, shows and projects
        checkpoints, but cannot evaluate them, compute surfaces or train."""
        return self._train_set is not None

    def require_data(self, what: str) -> None:
        """Raise ``ValueError`` saying that ``what`` needs the data this session was opened without."""
        if self._train_set is None:
            raise ValueError(
                f"{what} needs a model factory, data and a loss, and {self.path} was opened without data "
                "(its checkpoints were logged or imported from another trainer): open it again as "
                "Session(path, model=<factory>, data=<dataset or (train, test)>, loss=...) to do this"
            )

    def eval_data(self) -> dict[str, EvalData]:
        """The evaluation data per split ("train", and "test" when there is test data), in memory
        (batches of any structure, :mod:`lossviz.batches`)."""
        self.require_data("evaluating checkpoints")
        if self._eval_cache is None:
            out = {"train": as_eval_data(self._train_set, self.eval_samples)}
            if self._test_set is not None:
                out["test"] = as_eval_data(self._test_set, self.eval_samples)
            self._eval_cache = out
        return self._eval_cache

    def data_fingerprint(self) -> str:
        """sha256 of the evaluation tensors (part of every stored result's key)."""
        if self._data_hash is None:
            tensors = [t for part in self.eval_data().values() for t in tensors_of(part.batch)]
            self._data_hash = tensor_sha(*tensors)
        return self._data_hash

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The named metrics the session computes beyond loss and accuracy (``("perplexity",)``)."""
        return self._metric_names

    def _extra_metrics(self) -> list[Any]:
        """The metrics every evaluation of the session computes beyond loss and accuracy, in the form
        of :func:`lossviz.losses.metric_table`: the named ones, then the ``(name, fn)`` callables."""
        return [*self._metric_names, *self._metrics.items()]

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Metrics of ``model``: ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``, + the named
        metrics (``train_perplexity``, ...) and user metrics (none without data: a disturbed or
        interpolated checkpoint of such a project has no metrics)."""
        if not self.has_data:
            return {}
        out = {}
        for split, part in self.eval_data().items():
            res = T.evaluate_model(model, part, None, self.loss, self._extra_metrics(), device=self.device,
                                   forward=self.forward)
            out.update({f"{split}_{k}": v for k, v in res.items()})
        return out

    def _add(self, model: nn.Module, **kw: Any) -> Checkpoint:
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
