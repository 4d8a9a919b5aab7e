"""Session: a project store + a model factory + data + training + surfaces; the programmatic object.

``Session("runs/spirals", model="mlp", data="spirals")`` creates or opens a project folder (see
:mod:`lossviz.store`). Training runs as :class:`~lossviz.jobs.Job` s on the session's worker
thread, one at a time; surfaces on a worker of their own, one at a time, so a surface is computed
while a training job runs (and a training job starts while a surface fills); the shorter long work
(``disturb``, ``interpolate``, ``project``, ``distances`` with ``wait=False``) on a *quick* worker,
so it never waits behind a training. ``subscribe(callback)`` receives events (dicts) from all:

* ``{"type": "checkpoint", "checkpoint": Checkpoint}`` when a checkpoint is stored,
* ``{"type": "job", "job": Job, "state", "progress", "message"}`` when a job's state or progress
  changes (``job`` is the live object; the other keys are a snapshot taken at the event),
* ``{"type": "surface", "job": Job, "surface": Surface}`` after every evaluated chunk of a surface
  (after every refinement round of an adaptive one),
* ``{"type": "error", "message": str}`` when a job fails (an exception, a diverged run),
* ``{"type": "deleted", "ids": [...]}`` when checkpoints are deleted (``Session.delete``).

A failing job ends ``"failed"`` with the reason in ``job.error``; what it did is stored; nothing is
raised into the caller's thread.

The parts: :mod:`~lossviz.session.project` (opening a project and checking its spec),
:mod:`~lossviz.session.checkpoints` (training, disturb, interpolate, distances),
:mod:`~lossviz.session.surfaces` (the surface service), :mod:`~lossviz.session.analysis`
(projections and Hessians), :mod:`~lossviz.session.connect` (curves between checkpoints),
:mod:`~lossviz.session.runs` (logging from any training loop, importing checkpoint folders).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from lossviz import store
from lossviz.jobs import Job, JobQueue
from lossviz.session.analysis import AnalysisOps, Projection
from lossviz.session.checkpoints import CheckpointOps
from lossviz.session.connect import ConnectOps
from lossviz.session.project import SPEC_VERSION, open_project
from lossviz.session.runs import RunsOps

__all__ = ["SPEC_VERSION", "Projection", "Session"]

_OPENINGS = JobQueue("lossviz-openings")  # Session.opening's worker (one opening at a time)


class Session(CheckpointOps, AnalysisOps, ConnectOps, RunsOps):
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
        created with a zoo name (or without data). ``False``: no data, for a run trained elsewhere
        (:meth:`log`, :meth:`import_checkpoints`): checkpoints are stored, shown and projected, but
        not evaluated, and surfaces and training need the project opened again with data.
    loss:
        A name of :data:`lossviz.losses.LOSS_NAMES` (``"cross_entropy"``, ``"mse"``, ``"nll"``,
        ``"token_cross_entropy"``, ``"causal_lm"``, ...) or ``fn(outputs, targets) -> mean``.
    metrics:
        Extra metrics beyond the loss and accuracy (always computed; for ``"causal_lm"`` the
        next-token accuracy): ``{name: fn(outputs, targets) -> mean}``, or a list of functions and
        names of :data:`lossviz.losses.METRIC_NAMES`, e.g. ``["perplexity"]``: ``exp`` of the whole
        split's mean token loss, from the summed losses and token counts of every batch (never a
        mean of per-batch perplexities). Checkpoints (training, branches, disturb, interpolate),
        surfaces and the Explorer get ``train_perplexity`` / ``test_perplexity`` next to the loss.
        The names (never the functions) are stored in the project's spec at its creation; a
        reopening that names none uses the stored ones.
    eval_samples:
        Evaluate checkpoints and surfaces on the first ``eval_samples`` samples of each split.
    hparams:
        Default hyperparameters of the project (see :data:`lossviz.training.DEFAULT_HPARAMS`).
    forward:
        How the model is called on a batch, ``forward(model, batch) -> outputs``, for training,
        evaluation, surfaces and the Hessian alike (default: the calling rule of
        :mod:`lossviz.batches`). A ``"package.module:function"`` string is imported and stored in the
        project's spec (a callable is not stored; a project stored with a path is reopened only with
        ``forward=`` given again: lossviz never imports code a project folder names).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        model: str | Callable[[], nn.Module] | nn.Module | None = None,
        data: Any = None,
        loss: str | Callable = "cross_entropy",
        metrics: Mapping[str, Callable] | Sequence[Callable | str] | str | None = None,
        *,
        model_kwargs: Mapping[str, Any] | None = None,
        data_kwargs: Mapping[str, Any] | None = None,
        device: str | torch.device | None = None,
        eval_samples: int | None = None,
        hparams: Mapping[str, Any] | None = None,
        forward: Callable[[nn.Module, Any], Any] | str | None = None,
    ):
        self._attach(open_project(
            path, model, data, loss, metrics, model_kwargs=model_kwargs, data_kwargs=data_kwargs,
            device=device, eval_samples=eval_samples, hparams=hparams, forward=forward,
        ))

    @classmethod
    def opening(cls, path: str | os.PathLike, *, on_event: Callable[[dict], None] | None = None,
                **kwargs: Any) -> Job:
        """Open (or create) the session ``cls(path, **kwargs)`` on a worker thread; returns the
        submitted job, whose ``result`` is the Session. A failed opening ends the job ``"failed"``
        with the reason in ``job.error`` (and, as any opening, leaves no new project behind).
        ``on_event`` receives the job's ``"job"`` events and, once opened, is subscribed to the
        session's events."""

        def changed(j: Job) -> None:
            if on_event is not None:
                on_event({"type": "job", "job": j, "state": j.state, "progress": j.progress, "message": j.message})

        def run(job: Job) -> Session:
            job.update(0, 1, f"opening {path}", force=True)
            session = cls(path, **kwargs)
            if on_event is not None:
                session.subscribe(on_event)
            job.update(1, 1, f"opened {path}")
            return session

        return _OPENINGS.submit(Job("open", run, description=f"open project {path}", on_change=changed))

    @staticmethod
    def list_projects(root: str | os.PathLike) -> list[dict]:
        """Projects (folders with an index) directly under ``root``: path, name, model, data,
        n_checkpoints, modified (unix time of the last checkpoint)."""
        return store.list_projects(root)
