"""User data as evaluation data, and the one probe of a model against its data and loss.

Evaluation data is held as two tensors, :class:`EvalData` ``(inputs, targets)``, made once by
:func:`as_eval_data` from whatever the user gives: an ``(inputs, targets)`` pair of tensors or
arrays, a ``TensorDataset``, any map-style ``Dataset`` of ``(input, target)`` samples or a
``DataLoader``. :func:`probe_model_data` runs the model on two samples before any long work and
names what does not fit: the inputs, the number of classes, the loss or a metric.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from lossviz.losses import LossFn, is_class_labels, logits_of, resolve_loss, scalar_value, shape_hint
from lossviz.validation import Interval, check

__all__ = [
    "CLI_SPELLING",
    "DATA_FORMS",
    "PYTHON_SPELLING",
    "EvalData",
    "Spelling",
    "as_eval_data",
    "data_splits",
    "dataset_tensors",
    "describe",
    "eval_mode",
    "is_data_part",
    "probe_model_data",
]

DATA_FORMS = '(X, y) tensors, a torch.utils.data.Dataset, or {"train": ..., "test": ...} of those'


# ---------------------------------------------------------------------------------------- data
@dataclass
class EvalData:
    """Evaluation samples held as two tensors: ``inputs`` (N, ...) and ``targets`` (N, ...)."""

    inputs: torch.Tensor
    targets: torch.Tensor

    def __post_init__(self) -> None:
        if not isinstance(self.inputs, torch.Tensor) or not isinstance(self.targets, torch.Tensor):
            raise TypeError("EvalData needs two tensors: EvalData(inputs, targets)")
        if self.inputs.shape[0] != self.targets.shape[0]:
            raise ValueError(
                f"EvalData: {self.inputs.shape[0]} inputs but {self.targets.shape[0]} targets; "
                "give one target per input sample"
            )
        if self.inputs.shape[0] == 0:
            raise ValueError("EvalData: no samples; give at least one (input, target) pair")

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def is_classification(self) -> bool:
        """True when targets are integer class labels."""
        return is_class_labels(self.targets)

    def to(self, device: Any = None, dtype: torch.dtype | None = None) -> EvalData:
        """Move to ``device``; floating tensors are cast to ``dtype`` (labels stay integers)."""

        def cast(t: torch.Tensor) -> torch.Tensor:
            if dtype is not None and t.is_floating_point():
                return t.to(device=device, dtype=dtype)
            return t.to(device=device)

        return EvalData(cast(self.inputs), cast(self.targets))

    def head(self, n: int) -> EvalData:
        return EvalData(self.inputs[:n], self.targets[:n])


def _as_tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    try:
        return torch.as_tensor(np.asarray(value))
    except Exception as exc:
        raise TypeError(
            f"cannot turn the {what} ({type(value).__name__}) into a tensor: give tensors or numpy arrays"
        ) from exc


def _stack_items(items: Sequence[Any], what: str) -> torch.Tensor:
    return torch.stack([_as_tensor(v, what) for v in items])


def _looks_like_dataset(pair: Sequence[Any]) -> bool:
    """A 2-element list of (input, target) samples rather than an (inputs, targets) pair."""
    return all(isinstance(item, (tuple, list)) for item in pair)


def _from_loader(loader: torch.utils.data.DataLoader, max_samples: int | None) -> EvalData:
    xs, ys, n = [], [], 0
    for batch in loader:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise TypeError(f"the DataLoader must yield (inputs, targets) batches; got {type(batch).__name__}")
        xs.append(_as_tensor(batch[0], "inputs"))
        ys.append(_as_tensor(batch[1], "targets"))
        n += len(xs[-1])
        if max_samples is not None and n >= max_samples:
            break
    if not xs:
        raise ValueError("the DataLoader yielded no batches; give it some data")
    return EvalData(torch.cat(xs), torch.cat(ys))


def _from_samples(dataset: Any, max_samples: int | None) -> EvalData:
    n = len(dataset) if max_samples is None else min(len(dataset), max_samples)
    if n == 0:
        raise ValueError("the dataset is empty; give it some samples")
    items = [dataset[i] for i in range(n)]
    if not (isinstance(items[0], (tuple, list)) and len(items[0]) >= 2):
        raise TypeError("the dataset must return (input, target) pairs")
    return EvalData(_stack_items([it[0] for it in items], "inputs"), _stack_items([it[1] for it in items], "targets"))


def as_eval_data(data: Any, max_samples: int | None = None) -> EvalData:
    """Evaluation data as tensors, from an :class:`EvalData`, an ``(inputs, targets)`` pair of
    tensors/arrays, a ``torch.utils.data.DataLoader`` or a map-style ``Dataset`` yielding
    ``(input, target)`` pairs. ``max_samples`` keeps the first samples only.
    """
    max_samples = check("max_samples", max_samples, Interval(int, 1, None), allow_none=True)
    if isinstance(data, EvalData):
        out = data
    elif isinstance(data, torch.utils.data.DataLoader):
        out = _from_loader(data, max_samples)
    elif isinstance(data, torch.utils.data.TensorDataset):
        if len(data.tensors) < 2:
            raise TypeError("the TensorDataset needs (inputs, targets) tensors")
        out = EvalData(data.tensors[0].detach(), data.tensors[1].detach())
    elif isinstance(data, (tuple, list)) and len(data) == 2 and not _looks_like_dataset(data):
        out = EvalData(_as_tensor(data[0], "inputs"), _as_tensor(data[1], "targets"))
    elif hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        out = _from_samples(data, max_samples)
    else:
        raise TypeError(
            f"cannot use {type(data).__name__} as evaluation data: give (inputs, targets) tensors, "
            "a Dataset, a DataLoader or an EvalData"
        )
    if max_samples is not None and len(out) > max_samples:
        out = out.head(max_samples)
    return out


def dataset_tensors(data: Any, max_samples: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, targets)`` of anything :func:`as_eval_data` takes (the first ``max_samples``)."""
    d = as_eval_data(data, max_samples)
    return d.inputs, d.targets


# ---------------------------------------------------------------------------------------- forms
def is_data_part(value: Any) -> bool:
    """An (X, y) pair of tensors/arrays or a map-style torch Dataset."""
    if isinstance(value, torch.utils.data.Dataset):
        return True
    return (isinstance(value, (tuple, list)) and len(value) == 2
            and all(isinstance(v, (torch.Tensor, np.ndarray)) for v in value))


def describe(value: Any) -> str:
    """A few words on what ``value`` is, for messages (``a list of 3 (int, int, str)``)."""
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} ({', '.join(type(v).__name__ for v in value[:3])})"
    return f"an object of type {type(value).__name__!r}"


def data_splits(value: Any, source: str) -> dict[str, Any]:
    """``{"train": ..., "test": ...}`` (either may be absent) from what ``source`` returned: one
    part (the train split) or a dict of parts, each as :func:`is_data_part` accepts. A ValueError
    names ``source`` and what it returned."""
    if is_data_part(value):
        return {"train": value}
    if isinstance(value, dict):
        unknown = sorted(map(str, set(value) - {"train", "test"}))
        if unknown or not value:
            raise ValueError(f"{source} returned a dict with keys {sorted(map(str, value))}; "
                             'use the keys "train" and/or "test"')
        for key, part in value.items():
            if not is_data_part(part):
                raise ValueError(f"{source}: its {key!r} split is {describe(part)}; give {DATA_FORMS}")
        return dict(value)
    raise ValueError(f"{source} returned {describe(value)}; return {DATA_FORMS}")


# ---------------------------------------------------------------------------------------- probe
@dataclass(frozen=True)
class Spelling:
    """How a probe message writes the loss argument and the model's arguments."""

    loss: str = "loss="
    model_kwargs: str = "model_kwargs"


PYTHON_SPELLING = Spelling()
CLI_SPELLING = Spelling(loss="--loss ", model_kwargs="--model-kwargs")


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in ``eval()`` mode inside; every submodule's own mode restored on leaving."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _forward(model: nn.Module, x: torch.Tensor, model_name: str, data_name: str, spelling: Spelling):
    """The model's outputs on ``x`` (eval mode, no grad), or a ValueError naming the mismatch."""
    first = next(iter(model.parameters()), None)
    if x.is_floating_point() and first is not None:
        x = x.to(dtype=first.dtype, device=first.device)
    elif first is not None:
        x = x.to(device=first.device)
    try:
        with torch.no_grad(), eval_mode(model):
            return model(x)
    except Exception as e:  # noqa: BLE001 - any failure here is a model/data mismatch
        raise ValueError(
            f"{model_name} cannot take inputs of shape {list(x.shape[1:])} from {data_name} "
            f"({_first_line(e)}); pass {spelling.model_kwargs} to fit the data "
            "(e.g. in_channels, num_classes)"
        ) from None


def _check_classes(out: Any, targets: torch.Tensor, model_name: str, data_name: str,
                   spelling: Spelling) -> None:
    try:
        out = logits_of(out)  # a tensor, or a Hugging Face ModelOutput's .logits
    except TypeError:
        return  # outputs only the user's loss reads: it is probed on them next
    if is_class_labels(targets) and out.dim() == 2:
        n_classes = int(targets.max()) + 1
        if out.shape[1] < n_classes:
            raise ValueError(
                f"{model_name} has {out.shape[1]} outputs but {data_name} has labels up to "
                f"{n_classes - 1}; pass {spelling.model_kwargs} with num_classes/out_features={n_classes}"
            )


def _beside(out: Any, targets: torch.Tensor) -> torch.Tensor:
    """``targets`` on the device of the outputs (a tensor or a ModelOutput's logits), if known."""
    try:
        return targets.to(logits_of(out).device)
    except TypeError:  # outputs only the user's loss reads
        return targets


def _loss_value(loss: Any, out: torch.Tensor, targets: torch.Tensor, data_name: str, spelling: Spelling):
    """The loss on the probe's outputs, or a ValueError: it cannot compare them with the targets."""
    name = getattr(loss, "__name__", type(loss).__name__) if callable(loss) else loss
    labels = is_class_labels(targets)
    try:
        fn = resolve_loss(loss, targets).mean
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # e.g. "targets ... are broadcast"
            return fn(out, _beside(out, targets))
    except Exception as e:  # noqa: BLE001 - the loss does not fit these outputs and targets
        what = "class labels" if labels else f"targets of shape {list(targets.shape[1:])}"
        hint = (f"use {spelling.loss}cross_entropy or mse for class labels" if labels
                else f"use {spelling.loss}mse or l1 for float targets shaped like the outputs")
        tokens = shape_hint(str(name), out, targets)
        if tokens is not None:
            hint = tokens.replace("loss=", spelling.loss)
        try:
            shape: Any = list(logits_of(out).shape[1:])
        except TypeError:
            shape = type(out).__name__
        raise ValueError(
            f"{spelling.loss}{name} cannot compare outputs of shape {shape} per sample with the "
            f"{what} of {data_name} ({_first_line(e)}); {hint}"
        ) from None


def probe_model_data(
    model: nn.Module,
    data: Any,
    loss: str | LossFn | None,
    metrics: Mapping[str, Callable] | None = None,
    *,
    model_name: str | None = None,
    data_name: str | None = None,
    spelling: Spelling = PYTHON_SPELLING,
) -> None:
    """One forward pass on the first two samples of ``data``, so that a mismatch is named before
    any work.

    Raises a ValueError when the model cannot take the inputs, has fewer outputs than the labels of
    ``data`` have classes (all of its labels are looked at: give tensors, or a few samples of a
    large Dataset), the loss cannot compare the outputs with the targets, or the loss or a metric of
    ``metrics`` (``{name: fn(outputs, targets)}``) does not return one number; a metric that
    fails is left to its evaluation. ``model_name``/``data_name`` (e.g. ``'lenet'``,
    ``'spirals'``) and ``spelling`` (how the loss and the model's arguments are written,
    :data:`CLI_SPELLING` for the command line) shape the messages; ``loss=None`` checks the model
    and the data only. The model runs in eval mode and is left in the modes it was in.
    """
    evaluation = as_eval_data(data)
    model_label = "the model" if model_name is None else f"model {model_name!r}"
    data_label = "the data" if data_name is None else f"data set {data_name!r}"
    out = _forward(model, evaluation.inputs[:2], model_label, data_label, spelling)
    _check_classes(out, evaluation.targets, model_label, data_label, spelling)
    targets = evaluation.targets[:2]
    if loss is None:
        return
    scalar_value(_loss_value(loss, out, targets, data_label, spelling), "the loss")
    for name, fn in (metrics or {}).items():
        try:
            with torch.no_grad():
                value = fn(out, _beside(out, targets))
        except Exception:  # noqa: BLE001 - a failing metric is reported where it is evaluated
            continue
        scalar_value(value, f"metric {name!r}")
