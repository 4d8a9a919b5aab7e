"""A Hugging Face ``TrainerCallback`` that logs the run into a lossviz project every N steps or epochs.

::

    from lossviz.integrations.transformers import LossvizCallback

    callback = LossvizCallback("runs/hf", every_n_steps=500)
    trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[callback])
    trainer.train()

A checkpoint is logged at the end of every ``every_n_steps``-th optimizer step (and/or every
``every_n_epochs``-th epoch), after the Trainer has logged that step, so it stores the values logged
at it (``loss``, ``learning_rate``, ``eval_loss``, ...); its hparams are lossviz's names of the
training arguments (``learning_rate`` -> ``lr``, ...), the arguments themselves under ``"source"``.
Only the main process logs.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from typing import Any

from torch import nn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from lossviz.importing import HF_ARGS, RUN_STATISTICS, trainer_hparams
from lossviz.integrations import open_run, scalar_metrics
from lossviz.session import Session
from lossviz.validation import Interval, check

__all__ = ["LossvizCallback"]

_NOT_METRICS = ("epoch", "step", "total_flos")


class LossvizCallback(TrainerCallback):
    """Log a Hugging Face Trainer run into a lossviz project.

    Parameters
    ----------
    project
        A project folder (opened or created when training begins) or a :class:`~lossviz.session.Session`.
    every_n_steps, every_n_epochs
        Log every ``every_n_steps`` optimizer steps and/or every ``every_n_epochs`` epochs (at least one).
    data
        Evaluation data of the project when the callback creates it (``False``: none; the logged
        metrics are the Trainer's).
    log_start
        Log the weights before the first step too (epoch 0, step 0).
    session_kwargs
        More arguments of :class:`~lossviz.session.Session` (``loss``, ``device``, ...).
    """

    def __init__(self, project: str | os.PathLike | Session, *, every_n_steps: int | None = None,
                 every_n_epochs: int | None = None, data: Any = False, log_start: bool = True,
                 session_kwargs: Mapping[str, Any] | None = None):
        self.every_n_steps = check("every_n_steps", every_n_steps, Interval(int, 1, None), allow_none=True)
        self.every_n_epochs = check("every_n_epochs", every_n_epochs, Interval(int, 1, None), allow_none=True)
        if self.every_n_steps is None and self.every_n_epochs is None:
            raise ValueError("give every_n_steps or every_n_epochs (how often to log a checkpoint)")
        self.project, self.data, self.log_start = project, data, log_start
        self.session_kwargs = dict(session_kwargs or {})
        self.session: Session | None = None
        self.checkpoints: list = []
        self._owns = False
        self._due: int | None = None  # a step whose checkpoint waits for the Trainer's logs of that step
        self._logs: dict[str, float] = {}
        self._last_step: int | None = None

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       model: nn.Module | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or model is None:
            return
        self.session, self._owns = open_run(self.project, copy.deepcopy(model).cpu(), self.data, self.session_kwargs)
        if self.log_start and state.global_step == 0:
            self._log(args, state, model)

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                      model: nn.Module | None = None, **kwargs: Any) -> None:
        self._flush(args, state, model)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    model: nn.Module | None = None, **kwargs: Any) -> None:
        if self.every_n_steps is not None and state.global_step % self.every_n_steps == 0:
            self._due, self._logs = state.global_step, {}

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        if self._due == state.global_step and logs:
            values = {k: v for k, v in logs.items() if not str(k).endswith(RUN_STATISTICS)}
            self._logs.update(scalar_metrics(values, skip=_NOT_METRICS))

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                     model: nn.Module | None = None, **kwargs: Any) -> None:
        epoch = round(state.epoch or 0)
        if self.every_n_epochs is not None and epoch > 0 and epoch % self.every_n_epochs == 0:
            self._due = state.global_step

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                     model: nn.Module | None = None, **kwargs: Any) -> None:
        self._flush(args, state, model)
        if self._owns and self.session is not None:
            self.session.close()
        self.session, self._owns = None, False

    def _flush(self, args: TrainingArguments, state: TrainerState, model: nn.Module | None) -> None:
        """Log the checkpoint that is due (the weights have not changed since its step ended)."""
        if self._due is not None and model is not None:
            self._log(args, state, model, metrics=self._logs)
        self._due, self._logs = None, {}

    def _log(self, args: TrainingArguments, state: TrainerState, model: nn.Module,
             metrics: Mapping[str, float] | None = None) -> None:
        if self.session is None or state.global_step == self._last_step:
            return
        self._last_step = state.global_step
        given = {k: v for k, v in args.to_dict().items() if k in HF_ARGS}
        self.checkpoints.append(self.session.log(
            model, epoch=float(state.epoch or 0.0), step=state.global_step, metrics=dict(metrics or {}),
            hparams=trainer_hparams(given),
        ))
