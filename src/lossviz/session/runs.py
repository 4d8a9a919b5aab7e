"""Runs trained elsewhere: :meth:`RunsOps.log` records a checkpoint from any training loop (this
process or another one writing the same project), :meth:`RunsOps.import_checkpoints` reads a folder of
checkpoints (:mod:`lossviz.importing`) into the project in one transaction.

Every write is one short store transaction (no lock is held between two calls), so a training script
can log into a project while a notebook's Session (and its Explorer, :mod:`lossviz.widget.live`)
reads and writes it too. A session opened without data (``data=False``) stores what it is given;
one with data evaluates the metrics a checkpoint was not given.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from lossviz import importing
from lossviz.io.checkpoints import check_fits, fill_tied, normalize_state_dict, strip_prefix, tied_names
from lossviz.jsonable import json_safe
from lossviz.losses import scalar_value
from lossviz.session.core import SessionBase, id_of
from lossviz.store import Checkpoint
from lossviz.training import OPTIMIZERS
from lossviz.validation import Boolean, Interval, check

OPTIMIZER_FIELDS = ("lr", "momentum", "weight_decay", "nesterov")
"""Hyperparameters :meth:`RunsOps.log` reads from a torch optimizer's first parameter group."""


def optimizer_hparams(optimizer: torch.optim.Optimizer) -> dict:
    """``optimizer``, lr, momentum, weight decay and nesterov of a torch optimizer (its first
    parameter group), under lossviz's names, where lossviz's trainer knows the optimizer."""
    name = type(optimizer).__name__.lower()
    group = optimizer.param_groups[0] if optimizer.param_groups else {}
    out: dict[str, Any] = {"optimizer": name} if name in OPTIMIZERS else {}
    out.update({k: group[k] for k in OPTIMIZER_FIELDS if isinstance(group.get(k), (bool, int, float))})
    return out


def numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Metrics as floats (one-element tensors too); ``TypeError`` names one that is not a number."""
    out = {}
    for k, v in metrics.items():
        try:
            out[str(k)] = float(scalar_value(v)) if isinstance(v, torch.Tensor) else float(v)
        except (TypeError, ValueError):
            raise TypeError(f"metric {k!r} is {type(v).__name__} {v!r}, not a number") from None
    return out


class RunsOps(SessionBase):
    """Logging checkpoints from another training loop, and importing folders of checkpoints."""

    _last_logged: int | None = None  # the checkpoint this session's default run continues from

    # ------------------------------------------------------------------ the model's entries
    def _shapes(self) -> dict[str, tuple[int, ...]]:
        """name -> shape of the project's model's state dict (its stored architecture)."""
        return {str(k): tuple(int(d) for d in v) for k, v in self.spec["architecture"]}

    @functools.cached_property
    def _ties(self) -> list[list[str]]:
        """The project's model's tied state-dict entries (:func:`~lossviz.io.checkpoints.tied_names`)."""
        with torch.random.fork_rng(devices=[]):
            return tied_names(self._factory())

    def _fitted(self, state: nn.Module | Mapping[str, Any], source: str) -> dict[str, torch.Tensor]:
        """A module's or state dict's entries fitted to the project's model (a wrapper's attribute
        prefix removed, tied entries restored, in the model's order); ``ValueError`` naming the first
        tensor that does not fit."""
        raw = state.state_dict() if isinstance(state, nn.Module) else state
        shapes = self._shapes()
        sd = fill_tied(strip_prefix(normalize_state_dict(raw, source=source), list(shapes)), self._ties)
        check_fits(sd, shapes, source)
        return {k: sd[k].detach() for k in shapes if k in sd}

    def _evaluated(self, sd: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """The session's metrics of the model with state ``sd``; ``{}`` without data (never invented).
        The factory runs with the global RNG forked, so a training loop that logs keeps its random stream."""
        if not self.has_data:
            return {}
        with torch.random.fork_rng(devices=[]):
            model = self._factory()
        model.load_state_dict(dict(sd), strict=False)
        return self.evaluate(model.to(self.device))

    # ------------------------------------------------------------------ log
    def log(
        self,
        model_or_state_dict: nn.Module | Mapping[str, torch.Tensor],
        *,
        epoch: float | None = None,
        step: int | None = None,
        metrics: Mapping[str, Any] | None = None,
        hparams: Mapping[str, Any] | None = None,
        branch: int | str | None = None,
        parent: Any = None,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> Checkpoint:
        """Record a checkpoint of a run trained anywhere (a plain loop, Lightning, the HF Trainer, another
        process); returns it. Each call is one short store transaction.

        Parameters
        ----------
        model_or_state_dict
            The model (its ``state_dict()``) or a state dict; a wrapper's attribute prefix
            (``"model."``) is removed. It must fit the project's model (``ValueError`` names the first
            tensor that does not).
        epoch, step
            Where the run is. Neither: one epoch after the run's last checkpoint. ``step`` alone: the
            checkpoint's epoch is the step, so a run logged by steps is a path ordered by them.
        metrics
            Stored as given (numbers or one-element tensors). Metrics not given are evaluated when the
            session has data (:meth:`evaluate`), else left out.
        hparams
            Stored with the checkpoint, over the run's last ones and the ``optimizer``'s (lossviz's names,
            such as ``lr``, are what a branch trained from it inherits).
        branch, parent
            Where the checkpoint goes. Default: this session's run continues (its first call starts a
            new root branch). ``branch="name"``: the branch of that name continues (created when
            missing, so a restarted script resumes it); ``branch=<id>``: that branch continues.
            ``parent=<checkpoint>``: the checkpoint follows it (a new branch if it has a successor).
        optimizer
            A torch optimizer: its state is stored (a lossviz training from this checkpoint with the same
            optimizer resumes it) and its lr, momentum and weight decay fill hparams not given.
        """
        epoch = check("epoch", epoch, Interval(float, 0, None), allow_none=True)
        step = check("step", step, Interval(int, 0, None, whole_floats=True), allow_none=True)
        sd = self._fitted(model_or_state_dict, "the logged state dict")
        given = numbers(metrics or {})
        measured = self._evaluated(sd)
        where = self._log_target(branch, parent)
        before = self.store.checkpoint(where["parent"]) if where["parent"] is not None else None
        epoch, step = self._log_progress(epoch, step, before)
        hp = dict(before.hparams) if before is not None else {}
        hp.update(optimizer_hparams(optimizer) if optimizer is not None else {})
        hp.update(hparams or {})
        c = self.store.add_checkpoint(
            sd, parent=where["parent"], branch=where["branch"], kind="train", epoch=epoch, step=step,
            hparams=json_safe(hp), metrics={**{k: v for k, v in measured.items() if k not in given}, **given},
            note=f"logged by process {os.getpid()}", branch_note=where["note"],
            optim_state=None if optimizer is None else optimizer.state_dict(),
        )
        if branch is None and parent is None:
            self._last_logged = c.id
        self._emit({"type": "checkpoint", "checkpoint": c})
        return c

    def _log_target(self, branch: int | str | None, parent: Any) -> dict:
        """``{"parent", "branch", "note"}`` for :meth:`log` (see its ``branch, parent``)."""
        if parent is not None:
            return {"parent": id_of(parent), "branch": "auto", "note": branch if isinstance(branch, str) else ""}
        if isinstance(branch, bool) or (branch is not None and not isinstance(branch, (int, str))):
            raise TypeError(f"branch must be a branch id or a name, not {type(branch).__name__} {branch!r}")
        if isinstance(branch, int):
            known = {b["id"]: b for b in self.store.branches()}
            if branch not in known:
                raise ValueError(f"branch {branch} does not exist in {self.path}: its branches are {sorted(known)}")
            return {"parent": known[branch]["last"], "branch": branch, "note": ""}
        if isinstance(branch, str):
            named = [b for b in self.store.branches() if b["note"] == branch]
            if named:
                return {"parent": named[-1]["last"], "branch": named[-1]["id"], "note": branch}
            return {"parent": None, "branch": "new", "note": branch}
        if self._last_logged is not None:  # this run's branch continues, unless another writer continued it
            own = self.store.checkpoint(self._last_logged).branch
            last = next((b["last"] for b in self.store.branches() if b["id"] == own), None)
            return {"parent": self._last_logged, "branch": own if last == self._last_logged else "auto", "note": ""}
        return {"parent": None, "branch": "new", "note": ""}

    @staticmethod
    def _log_progress(epoch: float | None, step: int | None, before: Checkpoint | None) -> tuple[float, int]:
        """``(epoch, step)`` of a logged checkpoint (see :meth:`log`)."""
        if step is not None:
            step = int(step)
        if epoch is None:
            if step is not None:
                return float(step), step
            epoch = (before.epoch + 1) if before is not None else 0.0
        return float(epoch), step if step is not None else (before.step if before is not None else 0)

    # ------------------------------------------------------------------ import
    def import_checkpoints(
        self,
        folder_or_paths: str | os.PathLike | Iterable[str | os.PathLike],
        *,
        strict: bool = False,
        evaluate: bool = True,
    ) -> importing.ImportResult:
        """Import a folder of checkpoints (or a list of files) as branches of the project, in ONE
        store transaction: a refusal or a crash leaves the project as it was.

        Read without unpickling code: the reference's ``model_{e}.t7`` folders, ``.pt`` / ``.pth``
        state dicts, Lightning ``.ckpt`` files, Hugging Face Trainer ``checkpoint-N/`` folders and
        safetensors files; ordered by the epoch or step they hold (or their names give), each folder a
        branch (see :mod:`lossviz.importing`). Files that do not fit the model, cannot be read, claim
        a step another file of their folder claims, or cannot be ordered are refused by name with the
        reason; the others are imported (``strict=True``: none, a ``ValueError`` lists every refusal).
        Metrics a file holds are stored; with data (and ``evaluate``), the session's metrics too.
        Returns an :class:`~lossviz.importing.ImportResult` (its text: what was imported and refused).
        """
        strict = check("strict", strict, Boolean())
        evaluate = check("evaluate", evaluate, Boolean())
        found, ignored = importing.find_checkpoints(folder_or_paths)
        if not found:
            raise ValueError(importing.nothing_found(folder_or_paths, ignored))
        shapes = self._shapes()
        read: list[tuple[importing.Found, importing.Read]] = []
        refused: list[importing.Refused] = []
        for f in found:
            try:
                sd, r = importing.read_found(f, shapes, self._ties)
            except (ValueError, OSError) as exc:
                refused.append(importing.Refused(str(f.path), str(exc)))
                continue
            if evaluate:
                r.metrics = {**self._evaluated(sd), **r.metrics}
            read.append((f, r))
            del sd
        planned, unordered = importing.plan_import(read)
        refused += unordered
        if refused and (strict or not planned):
            raise ValueError(
                f"nothing was imported from {folder_or_paths}: {len(refused)} of {len(found)} checkpoint file(s) "
                + ("refused (strict=True)" if planned else "refused") + ":\n" + "\n".join(map(str, refused))
            )
        root = folder_or_paths if isinstance(folder_or_paths, (str, os.PathLike)) else None
        entries = [dict(
            state_dict=lambda f=p.found: importing.read_found(f, shapes, self._ties)[0],
            parent=None, parent_entry=p.parent_entry, branch="new" if p.new_branch else "auto",
            kind="import", epoch=p.epoch, step=p.step, hparams=p.hparams, metrics=p.metrics,
            note=f"imported from {p.found.path}",
            branch_note=p.found.branch or (os.path.basename(os.path.normpath(root)) if root is not None else "import"),
        ) for p in planned]
        made = self.store.add_checkpoints(entries)
        for c in made:
            self._emit({"type": "checkpoint", "checkpoint": c})
        return importing.ImportResult(made, refused, ignored)
