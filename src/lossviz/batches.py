"""Batches of any structure, and the one rule that calls a model on a batch.

A *batch* is what a ``DataLoader`` yields: a tensor, a tuple or list, a mapping (``dict``, Hugging Face
``BatchEncoding``) or any nesting of those, whose tensors share their first dimension (the samples).

**The calling rule** (:func:`call_model`), used by the engine, training, the Hessian and the probe alike:

================================  ======================  ===============================
batch                             model called as         the loss's second argument
================================  ======================  ===============================
``forward`` hook given            ``forward(model, b)``   ``targets_of(b)`` as below
a mapping ``{k: v}``              ``model(**b)``          the batch itself
``(x, y)`` (tuple/list of 2+)     ``model(x)`` /          ``y``
                                  ``model(*x)`` if ``x``
                                  is a tuple/list /
                                  ``model(**x)`` if ``x``
                                  is a mapping
a tensor ``x``                    ``model(x)``            the batch itself
================================  ======================  ===============================

So ``loss(outputs, targets)`` keeps working for ``(inputs, targets)`` data, and a loss for mapping
batches receives the whole batch (it can read ``batch["labels"]``, mask padding, or return
``outputs.loss``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "Forward",
    "batch_size",
    "call_model",
    "concat_batches",
    "describe_batch",
    "is_pair",
    "map_tensors",
    "model_inputs",
    "slice_batch",
    "take_samples",
    "targets_of",
    "tensors_of",
    "to_device",
]

Forward = Callable[["nn.Module", Any], Any]
"""A ``forward(model, batch) -> outputs`` hook that overrides the calling rule."""


def _is_tensor(value: Any) -> bool:
    import torch

    return isinstance(value, torch.Tensor)


def is_pair(batch: Any) -> bool:
    """True for an ``(inputs, targets, ...)`` tuple or list (not a mapping, not a bare tensor)."""
    return isinstance(batch, (tuple, list)) and len(batch) >= 2


def model_inputs(batch: Any) -> Any:
    """What the model is given: ``x`` of an ``(x, y)`` pair, else the whole batch."""
    return batch[0] if is_pair(batch) else batch


def targets_of(batch: Any) -> Any:
    """The loss's second argument: ``y`` of an ``(x, y)`` pair, else the whole batch."""
    return batch[1] if is_pair(batch) else batch


def call_model(model: nn.Module, batch: Any, forward: Forward | None = None) -> Any:
    """``model`` on ``batch`` by the module's calling rule, or ``forward(model, batch)`` when given."""
    if forward is not None:
        return forward(model, batch)
    x = model_inputs(batch)
    if isinstance(x, Mapping):
        return model(**x)
    if isinstance(x, (tuple, list)):
        return model(*x)
    return model(x)


def map_tensors(fn: Callable[[torch.Tensor], Any], batch: Any) -> Any:
    """``batch`` with ``fn`` applied to every tensor; mappings come back as ``dict``, sequences keep
    their type (named tuples included); other leaves (strings, numbers, ``None``) are kept."""
    if _is_tensor(batch):
        return fn(batch)
    if isinstance(batch, Mapping):
        return {k: map_tensors(fn, v) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(map_tensors(fn, v) for v in batch))
    if isinstance(batch, (tuple, list)):
        return type(batch)(map_tensors(fn, v) for v in batch)
    return batch


def tensors_of(batch: Any) -> list[torch.Tensor]:
    """Every tensor of ``batch``, in a fixed (depth-first, key-order) order."""
    found: list[torch.Tensor] = []
    map_tensors(found.append, batch)
    return found


def batch_size(batch: Any) -> int:
    """The number of samples: the first dimension its tensors share.

    Raises ``ValueError`` naming the shapes when the tensors disagree or there is none.
    """
    sizes = {int(t.shape[0]) for t in tensors_of(batch) if t.dim() > 0}
    if len(sizes) != 1:
        shapes = [tuple(t.shape) for t in tensors_of(batch)]
        if not sizes:
            raise ValueError(f"the batch holds no tensor with a sample dimension (tensor shapes: {shapes})")
        raise ValueError(
            f"the batch's tensors disagree on the number of samples (shapes {shapes}); "
            "give every tensor of a batch the samples as its first dimension"
        )
    return sizes.pop()


def to_device(batch: Any, device: Any = None, dtype: torch.dtype | None = None) -> Any:
    """``batch`` on ``device``; floating tensors cast to ``dtype`` (labels and token ids stay integers)."""

    def move(t: torch.Tensor) -> torch.Tensor:
        if dtype is not None and t.is_floating_point():
            return t.to(device=device, dtype=dtype)
        return t.to(device=device)

    return map_tensors(move, batch)


def slice_batch(batch: Any, start: int, stop: int) -> Any:
    """Samples ``start:stop`` of every tensor with a sample dimension (0-d tensors are kept)."""
    return map_tensors(lambda t: t[start:stop] if t.dim() > 0 else t, batch)


def take_samples(batch: Any, index: torch.Tensor) -> Any:
    """The samples ``index`` (an index tensor) of every tensor with a sample dimension."""
    return map_tensors(lambda t: t[index] if t.dim() > 0 else t, batch)


def concat_batches(batches: Sequence[Any]) -> Any:
    """One batch of the samples of ``batches`` (all of one structure), concatenated along dim 0."""
    import torch

    if not batches:
        raise ValueError("no batches to concatenate")
    columns = [tensors_of(b) for b in batches]
    if len({len(c) for c in columns}) != 1:
        raise ValueError("the batches differ in structure; every batch must hold the same tensors")
    merged = iter([torch.cat(list(parts)) for parts in zip(*columns, strict=True)])
    return map_tensors(lambda _t: next(merged), batches[0])


def describe_batch(batch: Any, depth: int = 0) -> str:
    """The structure of ``batch`` for messages: ``dict(input_ids: int64[2, 16], labels: int64[2])``."""
    if _is_tensor(batch):
        return f"{str(batch.dtype).replace('torch.', '')}{list(batch.shape)}"
    if depth > 3:
        return "..."
    if isinstance(batch, Mapping):
        inner = ", ".join(f"{k}: {describe_batch(v, depth + 1)}" for k, v in list(batch.items())[:8])
        return f"{type(batch).__name__}({inner})"
    if isinstance(batch, (tuple, list)):
        inner = ", ".join(describe_batch(v, depth + 1) for v in batch[:8])
        return f"{type(batch).__name__}({inner})"
    return type(batch).__name__
