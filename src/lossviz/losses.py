"""The one table of losses and metrics: names, batch-mean and per-sample forms, scalar checks.

A named loss has two forms over a batch of B samples with outputs ``z`` and targets ``y``:

* the batch mean ``ℓ(z, y)``, a 0-d tensor (what the engine, training and the Hessian use);
* the per-sample terms ``ℓ_i(z_i, y_i)``, shape (B,), each sample's mean over its output entries,
  so that ``ℓ = (1/B) Σ_i ℓ_i`` (what subsampling needs for its variances).

One rule picks the loss for class labels: ``"mse"`` on integer class labels is the reference's
(``tomgoldstein/loss-landscape``) softmax-MSE, ``mean_{i,c} (softmax(z_i)_c − onehot(y_i)_c)²``; on
float targets it is the plain mean of squares. Squares are written out (not ``F.mse_loss``): a
forward-over-reverse Hessian-vector product through ``F.mse_loss`` raises "ZeroTensors are immutable"
(torch 2.14).

:data:`LOSS_NAMES` is a plain tuple so that ``lossviz --help`` lists the names without importing torch;
torch is imported inside the functions.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = [
    "CLASSIFICATION_LOSSES",
    "LOSS_NAMES",
    "Loss",
    "is_class_labels",
    "mean_squared_error",
    "resolve_loss",
    "resolve_metrics",
    "scalar_value",
    "softmax_mse",
    "wants_accuracy",
]

LossFn = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]
MetricSpec = Any  # "loss" | "acc" | callable | (name, callable)

LOSS_NAMES = ("cross_entropy", "ce", "nll", "mse", "l1")
"""The loss names every part of lossviz accepts (engine, training, Hessian, subsampling, CLI)."""
CLASSIFICATION_LOSSES = ("cross_entropy", "ce", "nll")
"""The names that need integer class labels as targets."""


# ------------------------------------------------------------------------------------ forms
def is_class_labels(targets: torch.Tensor) -> bool:
    """True when ``targets`` are integer class labels (not float, complex or boolean)."""
    import torch

    return not targets.is_floating_point() and not targets.is_complex() and targets.dtype != torch.bool


def _warn_if_broadcast(outputs: torch.Tensor, targets: torch.Tensor, name: str) -> None:
    if outputs.shape != targets.shape:  # as torch's mse_loss / l1_loss do
        warnings.warn(
            f"{name}: targets of shape {list(targets.shape)} are broadcast against outputs of shape "
            f"{list(outputs.shape)}; give targets shaped like the outputs",
            UserWarning,
            stacklevel=3,
        )


def mean_squared_error(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``mean((z − y)²)`` over every entry: ``F.mse_loss``'s value, written out."""
    _warn_if_broadcast(outputs, targets, "mse")
    return (outputs - targets).pow(2).mean()


def _onehot(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    import torch.nn.functional as F

    return F.one_hot(targets.long(), outputs.shape[-1]).to(outputs.dtype)


def softmax_mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The reference's ``--loss_name mse``: mean squared error of ``softmax(outputs)`` against one-hot
    labels, ``mean((softmax(z) - onehot(y))^2)`` over samples and classes."""
    return (outputs.softmax(dim=-1) - _onehot(outputs, targets)).pow(2).mean()


def _per_sample(terms: torch.Tensor) -> torch.Tensor:
    """(B, ...) elementwise terms -> (B,) each sample's mean."""
    return terms.reshape(terms.shape[0], -1).mean(1)


def _cross_entropy_terms(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    import torch.nn.functional as F

    return _per_sample(F.cross_entropy(outputs, targets, reduction="none"))


def _nll_terms(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    import torch.nn.functional as F

    return _per_sample(F.nll_loss(outputs, targets, reduction="none"))


def _squared_error_terms(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    _warn_if_broadcast(outputs, targets, "mse")
    return _per_sample((outputs - targets).pow(2))


def _absolute_error_terms(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    _warn_if_broadcast(outputs, targets, "l1")
    return _per_sample((outputs - targets).abs())


def _softmax_mse_terms(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (outputs.softmax(dim=-1) - _onehot(outputs, targets)).pow(2).mean(-1)


@dataclass(frozen=True)
class Loss:
    """A resolved loss: ``name`` (stored with results), ``mean(outputs, targets)`` (the batch mean)
    and ``per_sample(outputs, targets)`` ((B,) terms whose mean is ``mean``; None for a user's
    callable, which gives the batch mean only)."""

    name: str
    mean: LossFn
    per_sample: LossFn | None


def _mse_by_targets(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``"mse"`` resolved without targets: :func:`softmax_mse` on class labels, else the plain mean."""
    return (softmax_mse if is_class_labels(targets) else mean_squared_error)(outputs, targets)


def _mse_terms_by_targets(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (_softmax_mse_terms if is_class_labels(targets) else _squared_error_terms)(outputs, targets)


def _named(name: str, class_labels: bool | None) -> Loss:
    """The forms of a name of :data:`LOSS_NAMES`; ``class_labels`` None: targets not known yet."""
    import torch.nn.functional as F

    if name in ("cross_entropy", "ce"):
        return Loss("cross_entropy", F.cross_entropy, _cross_entropy_terms)
    if name == "nll":
        return Loss("nll", F.nll_loss, _nll_terms)
    if name == "l1":
        return Loss("l1", F.l1_loss, _absolute_error_terms)
    if class_labels is None:
        return Loss("mse", _mse_by_targets, _mse_terms_by_targets)
    if class_labels:
        return Loss("softmax_mse", softmax_mse, _softmax_mse_terms)
    return Loss("mse", mean_squared_error, _squared_error_terms)


def resolve_loss(loss: str | LossFn | Loss, targets: torch.Tensor | None = None) -> Loss:
    """A :class:`Loss` from a name of :data:`LOSS_NAMES` or a callable ``loss(outputs, targets)``
    returning the batch mean.

    ``targets`` (optional) are the data's targets: on integer class labels ``"mse"`` is
    :func:`softmax_mse`, and the names of :data:`CLASSIFICATION_LOSSES` are refused for other
    targets. Without targets, ``"mse"`` applies the same rule at every call.
    """
    if isinstance(loss, Loss):
        return loss
    if callable(loss):
        return Loss(getattr(loss, "__name__", type(loss).__name__), loss, None)
    if not isinstance(loss, str) or loss not in LOSS_NAMES:
        raise ValueError(
            f"unknown loss {loss!r}: use one of {sorted(LOSS_NAMES)} or a callable "
            "loss(outputs, targets) returning the batch mean"
        )
    if targets is None:
        return _named(loss, None)
    labels = is_class_labels(targets)
    if loss in CLASSIFICATION_LOSSES and not labels:
        raise ValueError(
            f"loss={loss!r} needs integer class labels as targets; give a loss callable "
            "(or loss='mse') for other targets"
        )
    return _named(loss, labels)


# ------------------------------------------------------------------------------------ metrics
def resolve_metrics(
    metrics: Iterable[MetricSpec] | Mapping[str, LossFn] | str, classification: bool
) -> tuple[list[str], list[tuple[str, LossFn]]]:
    """-> (metric names in output order, the user's ``(name, fn)`` callables).

    ``metrics``: ``"loss"``, ``"acc"`` (kept only when ``classification``: class labels and
    (batch, classes) outputs), callables ``fn(outputs, targets) -> batch mean``, ``(name, fn)``
    pairs, or a ``{name: fn}`` mapping. ``"loss"`` always comes first.
    """
    if isinstance(metrics, str):
        metrics = (metrics,)
    items = list(metrics.items()) if isinstance(metrics, Mapping) else list(metrics)
    extra: list[tuple[str, LossFn]] = []
    for item in items:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            name, fn = item
            if not callable(fn):
                raise TypeError(f"metric {name!r} is not callable: give (name, fn(outputs, targets)) pairs")
            extra.append((name, fn))
        elif callable(item):
            extra.append((getattr(item, "__name__", type(item).__name__), item))
        elif item not in ("loss", "acc"):
            raise ValueError(
                f"unknown metric {item!r}: use 'loss', 'acc', a callable fn(outputs, targets) "
                "returning the batch mean, or a (name, fn) pair"
            )
    names = ["loss"]
    if "acc" in [m for m in items if isinstance(m, str)] and classification:
        names.append("acc")
    for name, _ in extra:
        if name in names:
            raise ValueError(f"metric name {name!r} is used twice: give the callables distinct names")
        names.append(name)
    return names, extra


def wants_accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> bool:
    """Accuracy is defined: integer class labels and (batch, classes) outputs."""
    return is_class_labels(targets) and outputs.dim() == 2


def scalar_value(value: Any, what: str = "the loss") -> torch.Tensor:
    """``value`` as a 0-d tensor; a ValueError naming its shape when it is not one number."""
    import torch

    if not isinstance(value, torch.Tensor):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return torch.tensor(float(value))
        raise ValueError(
            f"{what} returned {type(value).__name__}, not a tensor: return a scalar tensor such as "
            "the batch mean"
        )
    if value.numel() != 1:
        shape = list(value.shape)
        raise ValueError(
            f"{what} returned {shape}, not a scalar: {what} returned a tensor of shape {shape} where one "
            "number is needed; return the batch mean (e.g. reduction='mean' or .mean())"
        )
    return value.reshape(())
