"""Checkpoint operations: training branches, disturbing and interpolating checkpoints, distances.

Training runs on the session's job queue; disturb, interpolate and distances are blocking calls
that, with ``wait=False``, run as jobs on the session's quick queue (progress per step, a cancel
honoured between steps).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from lossviz import training as T
from lossviz.jobs import Job
from lossviz.params import ParamSpace, SpaceKind
from lossviz.session.core import SessionBase, id_of, step
from lossviz.store import Checkpoint
from lossviz.validation import Interval, check

ALL_NUMBERS = Interval(float, None, None)


def lerp_state(sa: dict[str, torch.Tensor], sb: dict[str, torch.Tensor], t: float) -> dict[str, torch.Tensor]:
    """The state ``lerp(a, b, t)`` of every floating entry; integer buffers from the nearer end."""
    return {
        k: torch.lerp(v, sb[k], t) if v.is_floating_point() else (v if t < 0.5 else sb[k]).clone()
        for k, v in sa.items()
    }


def pairwise_row(vecs: torch.Tensor, i: int) -> np.ndarray:
    """``‖v_j - v_i‖`` for ``j > i`` (float64)."""
    return torch.linalg.norm(vecs[i + 1 :] - vecs[i], dim=1).numpy()


class CheckpointOps(SessionBase):
    """Training, disturb, interpolate and distances of a session."""

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

    def _training_start(self, from_: Any) -> Checkpoint:
        """The checkpoint a training starts from: ``from_``, or the latest healthy one (the ``init``
        checkpoint, created first, on an empty project)."""
        if from_ is not None:
            start = self.checkpoint(from_)
        elif self.store.n_checkpoints() == 0:
            start = self._ensure_init()
        else:
            ok = [c for c in self.store.checkpoints() if c.status == "ok"]
            if not ok:
                raise ValueError("every checkpoint of the project diverged; pass from_= explicitly")
            start = ok[-1]
        if start.status != "ok":
            raise ValueError(f"checkpoint {start.id} is {start.status!r} ({start.note}); train from an earlier one")
        return start

    def delete(self, ids: Iterable[Any], *, confirm: bool = False) -> list[int]:
        """Delete checkpoints ``ids`` and the files lossviz wrote for them (:meth:`Store.delete_checkpoints`:
        a checkpoint whose children are not deleted with it is refused, and so is a file lossviz did not
        write). ``confirm=True`` is required (it cannot be undone); refused while a training job is queued
        or running. Emits ``{"type": "deleted", "ids": [...]}``; returns the ids deleted."""
        if confirm is not True:
            raise ValueError("deleting checkpoints cannot be undone: pass confirm=True")
        id_list = sorted({id_of(i) for i in ids})
        if any(j.kind == "train" and j.state in ("queued", "running") for j in self.jobs):
            raise ValueError("a training job is queued or running: wait for it or cancel it, then delete")
        self.store.delete_checkpoints(id_list)
        for i in id_list:
            self._weight_norms.pop(i, None)
        self._emit({"type": "deleted", "ids": id_list})
        return id_list

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
        self.require_data("training with lossviz's trainer")
        epochs = check("epochs", epochs, Interval(int, 1, None, whole_floats=True))
        every = check("every", every, Interval(int, 1, None, whole_floats=True))
        start = self._training_start(from_)
        h = self._resolve_hparams(
            start,
            dict(lr=lr, optimizer=optimizer, momentum=momentum, nesterov=nesterov,
                 weight_decay=weight_decay, batch_size=batch_size, schedule=schedule, seed=seed),
        )
        job = self._job("train", lambda job: self._run_training(job, start, h, epochs, every),
                        f"train {epochs} epoch(s) from checkpoint {start.id}")
        job.start_checkpoint = start.id
        job.hparams = h
        return self._submit(job)

    def _run_training(self, job: Job, start: Checkpoint, h: dict, epochs: int, every: int) -> list[Checkpoint]:
        model = self.model(start.id)
        same_optimizer = start.hparams.get("optimizer") == h["optimizer"]
        optim_state = self.store.load_optim_state(start.id) if same_optimizer else None
        created: list[Checkpoint] = []
        job.result = created
        where: dict[str, Any] = {"parent": start.id, "branch": "auto"}

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
            progress=lambda d, t, m: job.update(d, t, m), device=self.device, forward=self.forward,
        )
        if outcome.status == "diverged":
            self._emit({"type": "error", "message": f"training job {job.id}: {outcome.reason}"})
            job.fail(outcome.reason or "diverged", result=created)
        elif outcome.status == "cancelled":
            job.end_cancelled(created, f"cancelled at epoch {outcome.epoch:g}")
        return created

    # ------------------------------------------------------------------ disturb, interpolate
    def disturb(self, checkpoint: Any, magnitude: float, seed: int | None = None, *,
                wait: bool = True) -> Checkpoint | Job:
        """A new branch root at ``θ + magnitude · d``, ``d`` a filter-normalized random direction
        (weights; biases and BN parameters not moved), evaluated at once; returns its
        :class:`~lossviz.store.Checkpoint` (``wait=False``: a job on the quick queue whose result it is)."""
        magnitude = check("magnitude", magnitude, ALL_NUMBERS)
        if magnitude == 0:
            raise ValueError("magnitude must not be 0: disturbing by 0 would store a copy of the checkpoint; "
                             "give a non-zero magnitude (e.g. 0.1)")
        src = self.checkpoint(checkpoint)
        seed = int.from_bytes(os.urandom(4), "little") if seed is None else int(seed)
        return self._quick_work("disturb", f"disturb checkpoint {src.id} by {magnitude:g}",
                                lambda job: self._disturbed(src, magnitude, seed), wait)

    def _disturbed(self, src: Checkpoint, magnitude: float, seed: int) -> Checkpoint:
        from lossviz.directions import random_direction

        model = self.model(src.id)
        space = ParamSpace(model, "weights")
        center = space.vector(model)
        d = random_direction(space, center, seed=seed, normalization="filter", ignore="biasbn")
        space.load_into(model, center + magnitude * d)
        hp = dict(src.hparams)
        hp["disturb"] = {"source": src.id, "magnitude": magnitude, "seed": seed}
        return self._add(
            model, parent=src.id, branch="new", kind="disturb", epoch=src.epoch, step=src.step,
            hparams=hp, metrics=self.evaluate(model),
            note=f"disturbed checkpoint {src.id} by {magnitude:g} along a filter-normalized random direction "
                 f"(seed {seed})",
        )

    def interpolate(self, a: Any, b: Any, n: int, *, wait: bool = True) -> list[Checkpoint] | Job:
        """``n`` checkpoints at ``t = 0, 1/(n-1), ..., 1`` on the segment from ``a`` to ``b``: every
        floating state entry (weights and BN statistics) is ``lerp(a, b, t)``; integer buffers come
        from the nearer end. Stored as a new branch forked at ``a``, evaluated; returns the list of
        checkpoints (``wait=False``: a job on the quick queue, progress per point; a cancel keeps
        the points stored so far, ``job.result``)."""
        n = check("n", n, Interval(int, 2, None, whole_floats=True), hint="the two ends included")
        ca, cb = self.checkpoint(a), self.checkpoint(b)
        if ca.id == cb.id:
            raise ValueError(f"interpolating checkpoint {ca.id} with itself would store {n} copies of it: "
                             "give two different checkpoints")
        return self._quick_work("interpolate", f"interpolate {n} points from checkpoint {ca.id} to {cb.id}",
                                lambda job: self._interpolated(ca, cb, n, job), wait)

    def _interpolated(self, ca: Checkpoint, cb: Checkpoint, n: int, job: Job | None) -> list[Checkpoint]:
        sa, sb = self.store.load_state_dict(ca.id), self.store.load_state_dict(cb.id)
        model = self._factory()
        model.to(self.device)
        created: list[Checkpoint] = []
        if job is not None:
            job.result = created  # a cancelled job keeps the points stored before it stopped
        parent: int = ca.id
        branch: int | str = "new"
        for i, t in enumerate(np.linspace(0.0, 1.0, n).tolist()):
            step(job, i, n, "points")
            model.load_state_dict(lerp_state(sa, sb, t))
            hp = dict(ca.hparams)
            hp["interpolate"] = {"a": ca.id, "b": cb.id, "t": t}
            c = self._add(
                model, parent=parent, branch=branch, kind="interpolate",
                epoch=(1 - t) * ca.epoch + t * cb.epoch, step=round((1 - t) * ca.step + t * cb.step),
                hparams=hp, metrics=self.evaluate(model),
                note=f"interpolation t={t:g} between checkpoints {ca.id} and {cb.id}",
            )
            parent, branch = c.id, c.branch
            created.append(c)
        step(job, n, n, "points")
        return created

    # ------------------------------------------------------------------ distances
    def distance(self, a: Any, b: Any, kind: SpaceKind = "weights") -> float:
        """Euclidean distance ``‖θ_a - θ_b‖`` (computed in float64)."""
        va, vb = self.vector(a, kind), self.vector(b, kind)
        return float(torch.linalg.norm(va.double() - vb.double()))

    def distances(self, ids: Iterable[Any], kind: SpaceKind = "weights", *, wait: bool = True) -> np.ndarray | Job:
        """Pairwise distances (n, n): symmetric, zero diagonal (float64) (``wait=False``: a job on
        the quick queue whose result it is, progress per row)."""
        id_list = [self.checkpoint(i).id for i in ids]
        return self._quick_work("distances", f"distances between {len(id_list)} checkpoints",
                                lambda job: self._distance_matrix(id_list, kind, job), wait)

    def _distance_matrix(self, ids: list[int], kind: SpaceKind, job: Job | None) -> np.ndarray:
        vecs = torch.stack([self.vector(i, kind) for i in ids]).double()
        n = len(ids)
        out = np.zeros((n, n))
        for i in range(n):
            step(job, i, n, "rows")
            if i + 1 < n:
                out[i, i + 1 :] = pairwise_row(vecs, i)
        step(job, n, n, "rows")
        return out + out.T
