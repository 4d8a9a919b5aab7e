"""A PyTorch Lightning callback that logs the run into a lossviz project every N epochs or steps.

::

    from lossviz.integrations.lightning import LossvizCallback

    trainer = pl.Trainer(max_epochs=20, callbacks=[LossvizCallback("runs/lit", every_n_epochs=1)])
    trainer.fit(lit_module, loader)
    Explorer(Session("runs/lit", model=lambda: LitNet(), data=False))  # or watch it live while it trains

The project's model is the LightningModule (or ``module=``: the attribute holding the network, or a
function of the LightningModule returning it). Each checkpoint stores the metrics Lightning logged
(``trainer.callback_metrics``), the LightningModule's ``hparams`` and the optimizer's lr, momentum and
weight decay. Only the global-zero process logs.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from typing import Any

import lightning.pytorch as pl
from torch import nn

from lossviz.importing import trainer_hparams
from lossviz.integrations import open_run, scalar_metrics
from lossviz.session import Session
from lossviz.session.runs import optimizer_hparams
from lossviz.validation import Interval, check

__all__ = ["LossvizCallback"]


class LossvizCallback(pl.Callback):
    """Log a Lightning run into a lossviz project.

    Parameters
    ----------
    project
        A project folder (opened or created when training starts) or a :class:`~lossviz.session.Session`.
    every_n_epochs, every_n_steps
        Log after every ``every_n_epochs`` training epochs (default 1) and/or every ``every_n_steps``
        optimizer steps (``None``: not by steps).
    module
        The network to log: ``None`` the LightningModule itself, an attribute name (``"model"``), or a
        function ``module(lightning_module) -> nn.Module``.
    data
        Evaluation data of the project when the callback creates it (``False``: none; the logged
        metrics are Lightning's).
    log_start
        Log the weights before the first step too (epoch 0, step 0).
    session_kwargs
        More arguments of :class:`~lossviz.session.Session` (``loss``, ``device``, ...).
    """

    def __init__(self, project: str | os.PathLike | Session, *, every_n_epochs: int | None = 1,
                 every_n_steps: int | None = None, module: str | Callable[[Any], nn.Module] | None = None,
                 data: Any = False, log_start: bool = True, session_kwargs: Mapping[str, Any] | None = None):
        self.every_n_epochs = check("every_n_epochs", every_n_epochs, Interval(int, 1, None), allow_none=True)
        self.every_n_steps = check("every_n_steps", every_n_steps, Interval(int, 1, None), allow_none=True)
        self.project, self.module, self.data, self.log_start = project, module, data, log_start
        self.session_kwargs = dict(session_kwargs or {})
        self.session: Session | None = None
        self.checkpoints: list = []
        self._owns = False
        self._last_step: int | None = None

    def _network(self, pl_module: pl.LightningModule) -> nn.Module:
        if self.module is None:
            return pl_module
        return getattr(pl_module, self.module) if isinstance(self.module, str) else self.module(pl_module)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        template = copy.deepcopy(self._network(pl_module)).cpu()
        self.session, self._owns = open_run(self.project, template, self.data, self.session_kwargs)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.log_start and trainer.global_step == 0:
            self._log(trainer, pl_module, epoch=0.0)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if self.every_n_steps is not None and step > 0 and step % self.every_n_steps == 0:
            n = trainer.num_training_batches
            fraction = (batch_idx + 1) / n if isinstance(n, int) and n > 0 else 0.0
            self._log(trainer, pl_module, epoch=trainer.current_epoch + fraction)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        done = trainer.current_epoch + 1
        if self.every_n_epochs is not None and done % self.every_n_epochs == 0:
            self._log(trainer, pl_module, epoch=float(done))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._owns and self.session is not None:
            self.session.close()
        self.session, self._owns = None, False

    def _log(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *, epoch: float) -> None:
        """One checkpoint (once per optimizer step: gradient accumulation calls the batch hook more often)."""
        if self.session is None or not trainer.is_global_zero or trainer.global_step == self._last_step:
            return
        self._last_step = trainer.global_step
        hparams = trainer_hparams(dict(pl_module.hparams)) if pl_module.hparams else {}
        if trainer.optimizers:
            hparams = {**optimizer_hparams(trainer.optimizers[0]), **hparams}
        self.checkpoints.append(self.session.log(
            self._network(pl_module), epoch=epoch, step=trainer.global_step,
            metrics=scalar_metrics(trainer.callback_metrics), hparams=hparams,
        ))
