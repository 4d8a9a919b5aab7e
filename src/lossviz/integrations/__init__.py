"""Logging runs of other trainers into a lossviz project while they train.

* :mod:`lossviz.integrations.lightning`: :class:`~lossviz.integrations.lightning.LossvizCallback`, a
  PyTorch Lightning ``Callback`` (``pip install lossviz[lightning]``);
* :mod:`lossviz.integrations.transformers`: :class:`~lossviz.integrations.transformers.LossvizCallback`,
  a Hugging Face ``TrainerCallback`` (``pip install lossviz[hf]``).

Each imports its package only when it is imported itself; both write through
:meth:`lossviz.session.Session.log` (one short transaction per checkpoint), so a notebook's Explorer
on the same project shows the run as it trains.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from lossviz.session import Session

__all__ = ["open_run", "scalar_metrics"]


def open_run(project: str | os.PathLike | Session, model: nn.Module | Callable[[], nn.Module],
             data: Any, session_kwargs: Mapping[str, Any]) -> tuple[Session, bool]:
    """The session a callback logs into: ``project`` itself when it is a Session, else the project
    opened (or created) at that path with ``model`` and ``data`` (``False``: none); and whether the
    callback opened it (and so closes it at the end of training)."""
    if isinstance(project, Session):
        return project, False
    return Session(project, model=model, data=data, **dict(session_kwargs)), True


def scalar_metrics(values: Mapping[str, Any], skip: tuple[str, ...] = ()) -> dict[str, float]:
    """The one-number entries of a trainer's logged values (floats, ints, one-element tensors), as floats."""
    out = {}
    for k, v in values.items():
        if k in skip or isinstance(v, bool):
            continue
        if isinstance(v, (int, float)):
            out[str(k)] = float(v)
        elif getattr(v, "numel", None) is not None and v.numel() == 1:
            out[str(k)] = float(v.detach().cpu().reshape(()).item())
    return out
