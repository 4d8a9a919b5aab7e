"""User data as evaluation data, and the one probe of a model against its data and loss.

Evaluation data held in memory is one batch of all samples, :class:`EvalData`, of any structure
:mod:`lossviz.batches` takes (an ``(inputs, targets)`` pair, a dict, a Hugging Face
``BatchEncoding``, nested mixtures), made once by :func:`as_eval_data` from whatever the user
gives: tensors or arrays, a ``TensorDataset``, any map-style ``Dataset`` of samples (collated with
``torch.utils.data.default_collate``), a ``DataLoader`` or a list of batches.

Data that does not fit a memory budget (:data:`DATA_MEMORY` bytes, overridable) is not
materialized: :func:`eval_source` gives a :class:`BatchStream` instead, read batch by batch every
time it is iterated. A stream must yield the same batches in the same order at every pass (a
surface's points are all evaluated on the same samples): a shuffling ``DataLoader`` is refused
(:func:`check_fixed_order`). ``max_batches``/``max_samples`` keep a fixed first part.

:func:`probe_model_data` runs the model on two samples before any long work and names what does
not fit: the inputs, the number of classes, the loss or a metric.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from lossviz.batches import (
    Forward,
    batch_size,
    call_model,
    concat_batches,
    describe_batch,
    is_pair,
    map_tensors,
    model_inputs,
    slice_batch,
    targets_of,
    tensors_of,
    to_device,
)
from lossviz.losses import LossFn, is_class_labels, logits_of, resolve_loss, scalar_value, shape_hint
from lossviz.validation import Interval, check

__all__ = [
    "CLI_SPELLING",
    "DATA_FORMS",
    "DATA_MEMORY",
    "PYTHON_SPELLING",
    "BatchStream",
    "EvalData",
    "Spelling",
    "as_eval_data",
    "check_fixed_order",
    "data_splits",
    "dataset_tensors",
    "describe",
    "eval_mode",
    "eval_source",
    "is_data_part",
    "label_targets",
    "probe_model_data",
]

DATA_FORMS = '(X, y) tensors, a torch.utils.data.Dataset, or {"train": ..., "test": ...} of those'

DATA_MEMORY = 1 << 30
"""Bytes of evaluation data held in memory at most (default of ``data_memory=``): a DataLoader or
iterable of batches holding more is streamed (:class:`BatchStream`) instead of materialized."""


# ---------------------------------------------------------------------------------------- data
class EvalData:
    """Evaluation samples held in memory as one batch of all N samples (any structure of
    :mod:`lossviz.batches`).

    ``EvalData(inputs, targets)`` holds the pair ``(inputs, targets)``; ``EvalData.of(batch)``
    any batch. ``inputs``/``targets`` are what the calling rule gives the model and the loss
    (:func:`~lossviz.batches.model_inputs`, :func:`~lossviz.batches.targets_of`).
    """

    __slots__ = ("batch", "n")

    def __init__(self, inputs: Any, targets: Any):
        if not isinstance(inputs, torch.Tensor) or not isinstance(targets, torch.Tensor):
            raise TypeError("EvalData needs two tensors: EvalData(inputs, targets); EvalData.of(batch) for others")
        if inputs.shape[0] != targets.shape[0]:
            raise ValueError(
                f"EvalData: {inputs.shape[0]} inputs but {targets.shape[0]} targets; "
                "give one target per input sample"
            )
        self._set((inputs, targets))

    def _set(self, batch: Any) -> None:
        self.batch = batch
        self.n = batch_size(batch)
        if self.n == 0:
            raise ValueError("EvalData: no samples; give at least one (input, target) pair")

    @classmethod
    def of(cls, batch: Any) -> EvalData:
        """An EvalData holding ``batch`` (its tensors detached)."""
        out = cls.__new__(cls)
        out._set(map_tensors(lambda t: t.detach(), batch))
        return out

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[Any]:
        """``inputs, targets = data`` for an ``(inputs, targets, ...)`` batch (a TypeError for others)."""
        if not is_pair(self.batch):
            raise TypeError(f"EvalData of a {describe_batch(self.batch)} batch is no (inputs, targets) pair: "
                            "use its .batch")
        return iter(self.batch)

    def __getitem__(self, index: int) -> Any:
        """``data[0]`` / ``data[1]``: the inputs / targets of an ``(inputs, targets, ...)`` batch, as
        when unpacking (a TypeError for other batches)."""
        return tuple(self)[index]

    def __repr__(self) -> str:
        return f"EvalData({describe_batch(self.batch)})"

    @property
    def inputs(self) -> Any:
        return model_inputs(self.batch)

    @property
    def targets(self) -> Any:
        return targets_of(self.batch)

    @property
    def is_classification(self) -> bool:
        """True when the targets are one tensor of integer class labels."""
        return label_targets(self.batch) is not None

    def to(self, device: Any = None, dtype: torch.dtype | None = None) -> EvalData:
        """Move to ``device``; floating tensors are cast to ``dtype`` (labels stay integers)."""
        return EvalData.of(to_device(self.batch, device, dtype))

    def head(self, n: int) -> EvalData:
        return EvalData.of(slice_batch(self.batch, 0, n))

    def split(self, size: int) -> list[Any]:
        """The samples as batches of ``size`` (the last may be smaller), in order."""
        return [slice_batch(self.batch, i, i + size) for i in range(0, self.n, size)]


def label_targets(batch: Any) -> torch.Tensor | None:
    """The batch's targets when they are one tensor of integer class labels, else None."""
    y = targets_of(batch)
    return y if isinstance(y, torch.Tensor) and is_class_labels(y) else None


def _as_tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    try:
        return torch.as_tensor(np.asarray(value))
    except Exception as exc:
        raise TypeError(
            f"cannot turn the {what} ({type(value).__name__}) into a tensor: give tensors or numpy arrays"
        ) from exc


def _tensorized(batch: Any) -> Any:
    """``batch`` with numpy arrays turned into tensors (``default_collate``'s rule), tensors detached."""
    if isinstance(batch, np.ndarray):
        return torch.as_tensor(batch)
    if isinstance(batch, torch.Tensor):
        return batch.detach()
    if isinstance(batch, Mapping):
        return {k: _tensorized(v) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(_tensorized(v) for v in batch))
    if isinstance(batch, (tuple, list)):
        return type(batch)(_tensorized(v) for v in batch)
    return batch


def _is_structured(value: Any) -> bool:
    """A tuple, list or mapping whose entries are tensors or arrays (structured model inputs)."""
    if isinstance(value, Mapping):
        value = list(value.values())
    return (isinstance(value, (tuple, list)) and bool(value)
            and all(isinstance(v, (torch.Tensor, np.ndarray)) or _is_structured(v) for v in value))


def _looks_like_dataset(pair: Sequence[Any]) -> bool:
    """A 2-element list of (input, target) samples rather than an (inputs, targets) pair."""
    return all(isinstance(item, (tuple, list)) for item in pair)


def _is_batch_list(data: Any) -> bool:
    """A list/tuple of batches (not of samples): its items are mappings (dict batches; a list of
    dict samples is given as a Dataset), or ``(inputs, targets, ...)`` tuples whose first two
    entries hold tensors with a shared sample dimension (a sample's class label is 0-d)."""
    if not isinstance(data, (list, tuple)) or not data:
        return False
    if all(isinstance(b, Mapping) for b in data):
        return True

    def batch_like(b: Any) -> bool:
        if not (is_pair(b) and _is_structured(b)):
            return False
        found = tensors_of(_tensorized(list(b[:2])))
        return all(t.dim() >= 1 for t in found) and len({t.shape[0] for t in found}) == 1

    return all(batch_like(b) for b in data)


def check_fixed_order(data: Any) -> None:
    """Refuse a ``DataLoader`` that shuffles (a ``RandomSampler``, or a batch sampler over one):
    every point of a surface must see the same samples in the same order."""
    if not isinstance(data, torch.utils.data.DataLoader):
        return
    sampler = getattr(data, "batch_sampler", None)
    samplers = [data.sampler, getattr(sampler, "sampler", None)]
    if any(isinstance(s, (torch.utils.data.RandomSampler, torch.utils.data.SubsetRandomSampler))
           for s in samplers):
        raise ValueError(
            "the DataLoader shuffles its samples (a RandomSampler), but every point of a surface must be "
            "evaluated on the same samples in the same order: pass DataLoader(..., shuffle=False) "
            "(or the Dataset itself)"
        )


def _limited(batches: Iterable[Any], max_batches: int | None, max_samples: int | None) -> Iterator[Any]:
    """The first ``max_batches`` batches holding the first ``max_samples`` samples (tensorized)."""
    n = 0
    for i, batch in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            return
        batch = _tensorized(batch)
        size = batch_size(batch)
        if max_samples is not None and n + size >= max_samples:
            yield slice_batch(batch, 0, max_samples - n)
            return
        n += size
        yield batch


class BatchStream:
    """Evaluation data read batch by batch at every pass: a re-iterable ``source`` (a
    ``DataLoader`` or any iterable of batches that can be iterated again, in the same order), its
    first ``max_batches`` batches and ``max_samples`` samples. ``first`` is its first batch (for
    probing and planning); the sample count is known after a pass (:attr:`n_samples`)."""

    def __init__(self, source: Iterable[Any], max_batches: int | None = None, max_samples: int | None = None):
        if isinstance(source, Iterator):  # (a generator, iter(...)): one pass only
            raise TypeError(
                f"the data ({type(source).__name__}) can be read only once, but a surface reads it again for "
                "every chunk of points: give a DataLoader, a list of batches or another re-iterable"
            )
        check_fixed_order(source)
        self.source, self.max_batches, self.max_samples = source, max_batches, max_samples
        self.n_samples: int | None = None
        self.device: Any = None
        self.dtype: torch.dtype | None = None
        first = next(iter(self), None)
        if first is None:
            raise ValueError("the data yielded no batches; give it some data")
        self.first = first

    def __iter__(self) -> Iterator[Any]:
        for batch in _limited(self.source, self.max_batches, self.max_samples):
            yield batch if self.device is None and self.dtype is None else to_device(batch, self.device, self.dtype)

    def to(self, device: Any = None, dtype: torch.dtype | None = None) -> BatchStream:
        """This stream, its batches moved to ``device`` (floating tensors cast to ``dtype``) as read."""
        out = BatchStream.__new__(BatchStream)
        out.__dict__.update(self.__dict__)
        out.device, out.dtype = device, dtype
        out.first = to_device(self.first, device, dtype)
        return out

    def __repr__(self) -> str:
        return f"BatchStream({type(self.source).__name__}, first batch {describe_batch(self.first)})"


def _nbytes(batch: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tensors_of(batch))


def _from_batches(batches: Iterable[Any], max_batches: int | None, max_samples: int | None,
                  memory: int | None) -> EvalData | None:
    """The batches concatenated, or None once they hold more than ``memory`` bytes."""
    kept, held = [], 0
    for batch in _limited(batches, max_batches, max_samples):
        kept.append(batch)
        held += _nbytes(batch)
        if memory is not None and held > memory:
            return None
    if not kept:
        raise ValueError("the data yielded no batches; give it some data")
    return EvalData.of(concat_batches(kept) if len(kept) > 1 else kept[0])


def _from_samples(dataset: Any, max_samples: int | None) -> EvalData:
    n = len(dataset) if max_samples is None else min(len(dataset), max_samples)
    if n == 0:
        raise ValueError("the dataset is empty; give it some samples")
    items = [dataset[i] for i in range(n)]
    try:
        return EvalData.of(torch.utils.data.default_collate(items))
    except (TypeError, RuntimeError) as exc:
        raise TypeError(
            f"cannot collate the dataset's samples ({describe_batch(items[0])}) into one batch ({exc}): "
            "give samples of tensors, arrays or numbers of one shape"
        ) from None


def eval_source(
    data: Any,
    max_samples: int | None = None,
    *,
    max_batches: int | None = None,
    memory: int | None = DATA_MEMORY,
) -> EvalData | BatchStream:
    """Evaluation data in memory (:class:`EvalData`), or a :class:`BatchStream` for a DataLoader or
    a re-iterable of batches holding more than ``memory`` bytes (``None``: no limit). A shuffling
    DataLoader is refused (:func:`check_fixed_order`); ``max_batches``/``max_samples`` keep the first."""
    check("max_batches", max_batches, Interval(int, 1, None), allow_none=True)
    if isinstance(data, BatchStream):
        return data
    if _is_batch_source(data):
        check_fixed_order(data)
        found = _from_batches(data, max_batches, check_max(max_samples), memory)
        if found is not None:
            return found
        return BatchStream(data, max_batches, max_samples)
    if max_batches is not None:
        raise ValueError("max_batches needs data given as batches (a DataLoader or a list of batches): "
                         "use max_samples for other data")
    return as_eval_data(data, max_samples)


def check_max(max_samples: int | None) -> int | None:
    return check("max_samples", max_samples, Interval(int, 1, None), allow_none=True)


def _is_batch_source(data: Any) -> bool:
    """A DataLoader, a list of batches (:func:`_is_batch_list`), or an iterable that is no Dataset,
    tensor, array or mapping."""
    if isinstance(data, (EvalData, BatchStream)):
        return False
    if isinstance(data, torch.utils.data.DataLoader) or _is_batch_list(data):
        return True
    return (isinstance(data, Iterable) and not isinstance(data, (torch.Tensor, np.ndarray, Mapping, str, tuple, list))
            and not isinstance(data, torch.utils.data.Dataset) and not hasattr(data, "__getitem__"))


def as_eval_data(data: Any, max_samples: int | None = None) -> EvalData:
    """Evaluation data in memory, from an :class:`EvalData`, an ``(inputs, targets)`` pair of
    tensors/arrays, one batch as a mapping (``{"input_ids": ..., "labels": ...}``), a
    ``DataLoader`` or list of batches of any structure (concatenated), or a map-style ``Dataset``
    of samples of any structure (collated). ``max_samples`` keeps the first samples only.
    """
    max_samples = check_max(max_samples)
    if isinstance(data, EvalData):
        out = data
    elif isinstance(data, BatchStream):
        raise TypeError("this part of lossviz needs the data in memory: give it as tensors, a Dataset or "
                        "max_samples/max_batches that fit")
    elif _is_batch_source(data):
        found = _from_batches(data, None, max_samples, None)
        assert found is not None
        out = found
    elif isinstance(data, torch.utils.data.TensorDataset):
        if not data.tensors:
            raise TypeError("the TensorDataset holds no tensors")
        t = tuple(x.detach() for x in data.tensors)
        out = EvalData.of(t if len(t) > 1 else t[0])
    elif isinstance(data, Mapping) and data and all(isinstance(v, (torch.Tensor, np.ndarray)) for v in data.values()):
        out = EvalData.of(_tensorized(dict(data)))
    elif isinstance(data, (tuple, list)) and len(data) == 2 and _is_structured(data[0]):
        out = EvalData.of(_tensorized(tuple(data)))  # ((a, b), y), ({"x": ...}, y): structured inputs
    elif isinstance(data, (tuple, list)) and len(data) == 2 and not _looks_like_dataset(data):
        out = EvalData(_as_tensor(data[0], "inputs"), _as_tensor(data[1], "targets"))
    elif hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        out = _from_samples(data, max_samples)
    else:
        raise TypeError(
            f"cannot use {type(data).__name__} as evaluation data: give (inputs, targets) tensors, "
            "a Dataset, a DataLoader, a list of batches or an EvalData"
        )
    if max_samples is not None and len(out) > max_samples:
        out = out.head(max_samples)
    return out


def dataset_tensors(data: Any, max_samples: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, targets)`` of anything :func:`as_eval_data` takes (the first ``max_samples``);
    data of another structure raises a TypeError (use :func:`as_eval_data`)."""
    d = as_eval_data(data, max_samples)
    if not (isinstance(d.inputs, torch.Tensor) and isinstance(d.targets, torch.Tensor)):
        raise TypeError(f"expected (inputs, targets) tensors, got a batch of {describe_batch(d.batch)}")
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


def model_call_error(exc: BaseException, batch: Any, model_label: str = "the model",
                     data_label: str = "the data", spelling: Spelling | None = None) -> ValueError:
    """The error for a model that cannot take ``batch``: its structure, the calling rule used and
    the fixes (the model's arguments, or a ``forward=`` hook)."""
    x = model_inputs(batch)
    rule = ("model(**batch)" if isinstance(x, Mapping) else "model(*inputs)" if isinstance(x, (tuple, list))
            else "model(inputs)")
    kwargs = f"; or pass {spelling.model_kwargs} to fit the data (e.g. in_channels, num_classes)" if spelling else ""
    return ValueError(
        f"{model_label} cannot take a batch of {data_label}, {describe_batch(batch)}, called as {rule} "
        f"({_first_line(exc)}): pass forward=lambda model, batch: ... to say how to call it{kwargs}"
    )


def forward_checked(model: nn.Module, batch: Any, forward: Forward | None = None, **labels: Any) -> Any:
    """``call_model(model, batch, forward)``, its failure raised as :func:`model_call_error`."""
    try:
        return call_model(model, batch, forward)
    except Exception as exc:
        raise model_call_error(exc, batch, **labels) from exc


def loss_call_error(exc: BaseException, batch: Any, what: str = "the loss") -> ValueError | None:
    """A clear error for a loss or metric reading a key the batch does not have (None for others)."""
    if isinstance(exc, KeyError):
        y = targets_of(batch)
        keys = sorted(map(str, y)) if isinstance(y, Mapping) else describe_batch(y)
        return ValueError(
            f"{what} reads {exc} from the batch, which has no such entry (it has {keys}): give data whose "
            "batches hold it (e.g. labels), or a loss callable loss(outputs, batch) that reads what is there"
        )
    return None


def _forward(model: nn.Module, batch: Any, model_name: str, data_name: str, spelling: Spelling,
             forward: Forward | None = None):
    """The model's outputs on ``batch`` (eval mode, no grad), or a ValueError naming the mismatch."""
    first = next(iter(model.parameters()), None)
    if first is not None:
        batch = to_device(batch, first.device, first.dtype)
    x = model_inputs(batch)
    try:
        with torch.no_grad(), eval_mode(model):
            return call_model(model, batch, forward)
    except Exception as e:  # noqa: BLE001 - any failure here is a model/data mismatch
        if isinstance(x, torch.Tensor):
            raise ValueError(
                f"{model_name} cannot take inputs of shape {list(x.shape[1:])} from {data_name} "
                f"({_first_line(e)}); pass {spelling.model_kwargs} to fit the data "
                "(e.g. in_channels, num_classes)"
            ) from None
        raise model_call_error(e, batch, model_name, data_name, spelling) from None


def _check_classes(out: Any, targets: Any, model_name: str, data_name: str,
                   spelling: Spelling) -> None:
    try:
        out = logits_of(out)  # a tensor, or a Hugging Face ModelOutput's .logits
    except TypeError:
        return  # outputs only the user's loss reads: it is probed on them next
    if isinstance(targets, torch.Tensor) and is_class_labels(targets) and out.dim() == 2 and targets.numel():
        n_classes = int(targets.max()) + 1
        if out.shape[1] < n_classes:
            raise ValueError(
                f"{model_name} has {out.shape[1]} outputs but {data_name} has labels up to "
                f"{n_classes - 1}; pass {spelling.model_kwargs} with num_classes/out_features={n_classes}"
            )


def _shape_of(value: Any) -> str:
    return str(list(value.shape[1:])) if isinstance(value, torch.Tensor) else describe_batch(value)


def _loss_value(loss: Any, out: Any, batch: Any, data_name: str, spelling: Spelling):
    """The loss on the probe's outputs, or a ValueError: it cannot compare them with the targets."""
    name = getattr(loss, "__name__", type(loss).__name__) if callable(loss) else loss
    targets = targets_of(batch)
    tensor_targets = isinstance(targets, torch.Tensor)
    labels = tensor_targets and is_class_labels(targets)
    try:
        fn = resolve_loss(loss, targets if tensor_targets else None).mean
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # e.g. "targets ... are broadcast"
            return fn(out, targets)
    except Exception as e:  # noqa: BLE001 - the loss does not fit these outputs and targets
        clear = loss_call_error(e, batch, f"{spelling.loss}{name}")
        if clear is not None:
            raise clear from None
        if not tensor_targets:
            raise ValueError(
                f"{spelling.loss}{name} cannot take the outputs ({_shape_of(out)}) and the batch "
                f"{describe_batch(targets)} ({_first_line(e)}): give a loss callable loss(outputs, batch) "
                "returning the batch mean (it may read batch['labels'] or outputs.loss)"
            ) from None
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
    forward: Forward | None = None,
) -> None:
    """One forward pass on the first two samples of ``data``, so that a mismatch is named before
    any work.

    Raises a ValueError when the model cannot take the batch (its structure and the fix named:
    the model's arguments or a ``forward=`` hook), has fewer outputs than the labels of ``data``
    have classes (all of its labels are looked at: give tensors, or a few samples of a large
    Dataset), the loss cannot compare the outputs with the targets or reads a key the batch lacks,
    or the loss or a metric of ``metrics`` (``{name: fn(outputs, targets)}``) does not return one
    number; a metric that fails is left to its evaluation. ``model_name``/``data_name`` (e.g.
    ``'lenet'``, ``'spirals'``) and ``spelling`` (how the loss and the model's arguments are
    written, :data:`CLI_SPELLING` for the command line) shape the messages; ``loss=None`` checks
    the model and the data only. The model runs in eval mode and is left in the modes it was in.
    """
    source = eval_source(data)
    whole = source.batch if isinstance(source, EvalData) else source.first
    model_label = "the model" if model_name is None else f"model {model_name!r}"
    data_label = "the data" if data_name is None else f"data set {data_name!r}"
    batch = slice_batch(whole, 0, 2)
    out = _forward(model, batch, model_label, data_label, spelling, forward)
    batch = to_device(batch, _device_of(out))
    _check_classes(out, targets_of(whole), model_label, data_label, spelling)
    if loss is None:
        return
    scalar_value(_loss_value(loss, out, batch, data_label, spelling), "the loss")
    targets = targets_of(batch)
    for name, fn in (metrics or {}).items():
        try:
            with torch.no_grad():
                value = fn(out, targets)
        except Exception:  # noqa: BLE001 - a failing metric is reported where it is evaluated
            continue
        scalar_value(value, f"metric {name!r}")


def _device_of(out: Any) -> Any:
    found = tensors_of(out) if not isinstance(out, torch.Tensor) else [out]
    return found[0].device if found else None
