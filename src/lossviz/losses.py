"""The one table of losses and metrics: names, batch-mean and per-sample forms, scalar checks.

A named loss has two forms over a batch of B samples with outputs ``z`` and targets ``y``:

* the batch mean ``ℓ(z, y)``, a 0-d tensor (what the engine, training and the Hessian use);
* the per-sample terms ``ℓ_i(z_i, y_i)``, shape (B,), each sample's mean over its output entries,
  so that ``ℓ = (1/B) Σ_i ℓ_i`` (what subsampling needs for its variances).

**Outputs and targets of any form.** Every named loss reads the logits with :func:`logits_of`
(a tensor, or ``.logits`` of a Hugging Face ``ModelOutput``) and the labels with :func:`labels_of`
(the targets of an ``(x, y)`` pair, or ``batch["labels"]`` of a mapping batch, see
:mod:`lossviz.batches`), so the same name serves ``loss(outputs, y)`` and ``loss(outputs, batch)``.

**Token losses** (``"token_cross_entropy"``, ``"causal_lm"``) are means over the counted tokens
(labels ``!= -100``), not over samples; so that a mean over many batches is exact,
:meth:`Loss.sum_and_count` gives each batch's ``(Σ terms, number of terms)`` and the engine sums
both: ``mean = Σ_b s_b / Σ_b c_b``. Metrics (:class:`Metric`, :func:`metric_table`) accumulate the
same way, and a :attr:`Metric.finish` turns the mean into the value (``"exp"``: perplexity
``exp(mean token loss)`` of the whole data, never a mean of per-batch perplexities).

One rule picks the loss for class labels: ``"mse"`` on integer class labels is the reference's
(``tomgoldstein/loss-landscape``) softmax-MSE, ``mean_{i,c} (softmax(z_i)_c − onehot(y_i)_c)²``; on
float targets it is the plain mean of squares. Squares are written out (not ``F.mse_loss``): a
forward-over-reverse Hessian-vector product through ``F.mse_loss`` raises "ZeroTensors are immutable"
(torch 2.14).

:data:`LOSS_NAMES` is a plain tuple so that ``lossviz --help`` lists the names without importing torch;
torch is imported inside the functions.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = [
    "CLASSIFICATION_LOSSES",
    "IGNORE_INDEX",
    "LOSS_NAMES",
    "METRIC_NAMES",
    "Loss",
    "Metric",
    "accuracy_kind",
    "batch_totals",
    "bce_with_logits",
    "causal_lm_loss",
    "finish_totals",
    "huber",
    "is_class_labels",
    "labels_of",
    "logits_of",
    "mean_squared_error",
    "metric_table",
    "resolve_loss",
    "resolve_metrics",
    "scalar_value",
    "shape_hint",
    "softmax_mse",
    "token_cross_entropy",
    "wants_accuracy",
]

LossFn = Callable[[Any, Any], "torch.Tensor"]
TotalFn = Callable[[Any, Any], tuple["torch.Tensor", "torch.Tensor"]]
MetricSpec = Any  # "loss" | "acc" | "perplexity" | callable | (name, callable)

LOSS_NAMES = ("cross_entropy", "ce", "nll", "mse", "l1", "huber", "bce", "token_cross_entropy", "causal_lm")
"""The loss names every part of lossviz accepts (engine, training, Hessian, subsampling, CLI)."""
CLASSIFICATION_LOSSES = ("cross_entropy", "ce", "nll", "token_cross_entropy", "causal_lm")
"""The names that need integer class labels as targets."""
TOKEN_LOSSES = ("token_cross_entropy", "causal_lm")
"""The names whose mean is over counted tokens (labels ``!= IGNORE_INDEX``), not samples."""
NLL_LOSSES = ("cross_entropy", "ce", "nll", "token_cross_entropy", "causal_lm")
"""The names that are a negative log-likelihood: ``exp`` of their mean is a perplexity."""
METRIC_NAMES = ("loss", "acc", "perplexity")
"""The metric names: ``"acc"`` is whatever accuracy the task has (:func:`accuracy_kind`)."""
IGNORE_INDEX = -100
"""Label of a token that no loss or accuracy counts (padding, a prompt): torch's and Hugging Face's."""
HUBER_DELTA = 1.0


# ------------------------------------------------------------------------------------ forms
def is_class_labels(targets: torch.Tensor) -> bool:
    """True when ``targets`` are integer class labels (not float, complex or boolean)."""
    import torch

    return not targets.is_floating_point() and not targets.is_complex() and targets.dtype != torch.bool


def logits_of(outputs: Any) -> torch.Tensor:
    """The model's outputs as one tensor: the tensor itself, ``outputs.logits`` (a Hugging Face
    ``ModelOutput``) or ``outputs["logits"]``; a TypeError naming the type otherwise."""
    import torch

    if isinstance(outputs, torch.Tensor):
        return outputs
    logits = getattr(outputs, "logits", None)
    if logits is None and isinstance(outputs, Mapping):
        logits = outputs.get("logits")
    if not isinstance(logits, torch.Tensor):
        raise TypeError(
            f"the model returned {type(outputs).__name__}, which is neither a tensor nor has .logits: "
            "return a tensor, or give a loss callable loss(outputs, targets) that reads your outputs"
        )
    return logits


def _labels_or_none(targets: Any, fallback: str | None = None) -> torch.Tensor | None:
    """The labels in ``targets``: a tensor itself; of a mapping batch ``batch["labels"]`` (else
    ``batch[fallback]``); None where there are none."""
    import torch

    if isinstance(targets, torch.Tensor):
        return targets
    if isinstance(targets, Mapping):
        for key in ("labels", fallback):
            value = targets.get(key) if key is not None else None
            if isinstance(value, torch.Tensor):
                return value
    return None


def _missing_labels(name: str, targets: Any, fallback: str | None) -> ValueError:
    keys = sorted(map(str, targets)) if isinstance(targets, Mapping) else None
    where = f"the batch has keys {keys}" if keys is not None else f"the targets are {type(targets).__name__}"
    wanted = "'labels'" + (f" or {fallback!r}" if fallback else "")
    return ValueError(
        f"loss {name!r} needs labels but {where}, with no {wanted}: add batch['labels'] (class or token "
        f"ids, {IGNORE_INDEX} where not counted), give (inputs, labels) pairs, or pass a loss callable "
        "such as loss=lambda outputs, batch: outputs.loss to use the model's own loss"
    )


def labels_of(targets: Any, name: str = "the loss", fallback: str | None = None) -> torch.Tensor:
    """The labels a loss compares the outputs with: the targets of an ``(x, y)`` pair, or
    ``batch["labels"]`` (else ``batch[fallback]``) of a mapping batch; a ValueError naming the
    batch's keys and the fix when there are none."""
    labels = _labels_or_none(targets, fallback)
    if labels is None:
        raise _missing_labels(name, targets, fallback)
    return labels


def _warn_if_broadcast(outputs: torch.Tensor, targets: torch.Tensor, name: str) -> None:
    if outputs.shape != targets.shape:  # as torch's mse_loss / l1_loss do
        warnings.warn(
            f"{name}: targets of shape {list(targets.shape)} are broadcast against outputs of shape "
            f"{list(outputs.shape)}; give targets shaped like the outputs",
            UserWarning,
            stacklevel=3,
        )


def mean_squared_error(outputs: Any, targets: Any) -> torch.Tensor:
    """``mean((z − y)²)`` over every entry: ``F.mse_loss``'s value, written out."""
    z, y = logits_of(outputs), labels_of(targets, "mse")
    _warn_if_broadcast(z, y, "mse")
    return (z - y).pow(2).mean()


def _onehot(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    import torch.nn.functional as F

    return F.one_hot(targets.long(), outputs.shape[-1]).to(outputs.dtype)


def softmax_mse(outputs: Any, targets: Any) -> torch.Tensor:
    """The reference's ``--loss_name mse``: mean squared error of ``softmax(outputs)`` against one-hot
    labels, ``mean((softmax(z) - onehot(y))^2)`` over samples and classes."""
    z, y = logits_of(outputs), labels_of(targets, "mse")
    return (z.softmax(dim=-1) - _onehot(z, y)).pow(2).mean()


def _huber_terms(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``½ d²`` where ``|d| < δ``, else ``δ (|d| − ½ δ)``, ``d = z − y`` (``F.huber_loss``, written out
    so that forward-over-reverse Hessian products run through it)."""
    import torch

    d = z - y
    a = d.abs()
    return torch.where(a < HUBER_DELTA, 0.5 * d * d, HUBER_DELTA * (a - 0.5 * HUBER_DELTA))


def huber(outputs: Any, targets: Any) -> torch.Tensor:
    """Huber loss with δ = 1, the mean over every entry: ``F.huber_loss(z, y)``."""
    z, y = logits_of(outputs), labels_of(targets, "huber")
    _warn_if_broadcast(z, y, "huber")
    return _huber_terms(z, y).mean()


def _bce_terms(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``max(z, 0) − z y + log(1 + e^{−|z|})`` = ``−y log sigmoid(z) − (1 − y) log(1 − sigmoid(z))``, stably."""
    import torch

    y = y.to(z.dtype)
    return z.clamp(min=0) - z * y + torch.log1p(torch.exp(-z.abs()))


def bce_with_logits(outputs: Any, targets: Any) -> torch.Tensor:
    """Binary cross-entropy on logits for multi-label targets in [0, 1] shaped like the outputs, the
    mean over every entry: ``F.binary_cross_entropy_with_logits(z, y)``."""
    z, y = logits_of(outputs), labels_of(targets, "bce")
    _warn_if_broadcast(z, y, "bce")
    return _bce_terms(z, y).mean()


def _cross_entropy(outputs: Any, targets: Any) -> torch.Tensor:
    import torch.nn.functional as F

    return F.cross_entropy(logits_of(outputs), labels_of(targets, "cross_entropy"))


def _nll(outputs: Any, targets: Any) -> torch.Tensor:
    import torch.nn.functional as F

    return F.nll_loss(logits_of(outputs), labels_of(targets, "nll"))


def _l1(outputs: Any, targets: Any) -> torch.Tensor:
    import torch.nn.functional as F

    z, y = logits_of(outputs), labels_of(targets, "l1")
    _warn_if_broadcast(z, y, "l1")
    return F.l1_loss(z, y)


# -------------------------------------------------------------------------------- tokens
def _token_terms(z: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (cross-entropy per token, 0 where ignored; the mask of counted tokens), both shaped like
    ``labels``; ``z`` is (..., V) with the vocabulary last."""
    import torch.nn.functional as F

    if z.shape[:-1] != labels.shape:
        raise ValueError(
            f"token outputs of shape {list(z.shape)} do not fit labels of shape {list(labels.shape)}: "
            "give logits (batch, tokens, vocabulary) and labels (batch, tokens)"
        )
    mask = labels != IGNORE_INDEX
    terms = F.cross_entropy(z.flatten(0, -2), labels.flatten(), reduction="none", ignore_index=IGNORE_INDEX)
    return terms.reshape(labels.shape), mask


def _shifted(outputs: Any, targets: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token pairs: ``(logits[:, :-1], labels[:, 1:])``, Hugging Face GPT-2's shift."""
    labels = labels_of(targets, "causal_lm", fallback="input_ids")
    return logits_of(outputs)[..., :-1, :], labels[..., 1:]


def _token_totals(z: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    terms, mask = _token_terms(z, labels)
    return terms.sum(), mask.sum().to(terms.dtype)


def _token_mean(z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    total, count = _token_totals(z, labels)
    return total / count  # 0/0 = NaN where no token counts, as F.cross_entropy gives


def _token_per_sample(z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    terms, mask = _token_terms(z, labels)
    return terms.reshape(terms.shape[0], -1).sum(1) / mask.reshape(mask.shape[0], -1).sum(1).to(terms.dtype)


def token_cross_entropy(outputs: Any, targets: Any) -> torch.Tensor:
    """Per-token cross-entropy: logits (B, T, V), labels (B, T), the mean over tokens whose label is
    not :data:`IGNORE_INDEX`, ``F.cross_entropy(z.flatten(0, 1), y.flatten(), ignore_index=-100)``."""
    return _token_mean(logits_of(outputs), labels_of(targets, "token_cross_entropy"))


def _token_ce_totals(outputs: Any, targets: Any) -> tuple[torch.Tensor, torch.Tensor]:
    return _token_totals(logits_of(outputs), labels_of(targets, "token_cross_entropy"))


def _token_ce_per_sample(outputs: Any, targets: Any) -> torch.Tensor:
    return _token_per_sample(logits_of(outputs), labels_of(targets, "token_cross_entropy"))


def causal_lm_loss(outputs: Any, targets: Any) -> torch.Tensor:
    """Next-token cross-entropy as Hugging Face GPT-2 computes it: logits ``z[:, :-1]`` against
    labels ``y[:, 1:]``, the mean over counted tokens (labels ``!= -100``).

    Labels: the targets of an ``(x, y)`` pair, or ``batch["labels"]``, else ``batch["input_ids"]``
    of a mapping batch. With no labels at all (``targets`` None) the outputs' own ``.loss`` is used.
    """
    if targets is None and getattr(outputs, "loss", None) is not None:
        return outputs.loss
    return _token_mean(*_shifted(outputs, targets))


def _causal_totals(outputs: Any, targets: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if targets is None and getattr(outputs, "loss", None) is not None:
        import torch

        return outputs.loss, torch.ones((), dtype=outputs.loss.dtype, device=outputs.loss.device)
    return _token_totals(*_shifted(outputs, targets))


def _causal_per_sample(outputs: Any, targets: Any) -> torch.Tensor:
    return _token_per_sample(*_shifted(outputs, targets))


# -------------------------------------------------------------------------------- per sample
def _per_sample(terms: torch.Tensor) -> torch.Tensor:
    """(B, ...) elementwise terms -> (B,) each sample's mean."""
    return terms.reshape(terms.shape[0], -1).mean(1)


def _cross_entropy_terms(outputs: Any, targets: Any) -> torch.Tensor:
    import torch.nn.functional as F

    return _per_sample(F.cross_entropy(logits_of(outputs), labels_of(targets, "cross_entropy"), reduction="none"))


def _nll_terms(outputs: Any, targets: Any) -> torch.Tensor:
    import torch.nn.functional as F

    return _per_sample(F.nll_loss(logits_of(outputs), labels_of(targets, "nll"), reduction="none"))


def _squared_error_terms(outputs: Any, targets: Any) -> torch.Tensor:
    z, y = logits_of(outputs), labels_of(targets, "mse")
    _warn_if_broadcast(z, y, "mse")
    return _per_sample((z - y).pow(2))


def _absolute_error_terms(outputs: Any, targets: Any) -> torch.Tensor:
    z, y = logits_of(outputs), labels_of(targets, "l1")
    _warn_if_broadcast(z, y, "l1")
    return _per_sample((z - y).abs())


def _huber_per_sample(outputs: Any, targets: Any) -> torch.Tensor:
    z, y = logits_of(outputs), labels_of(targets, "huber")
    _warn_if_broadcast(z, y, "huber")
    return _per_sample(_huber_terms(z, y))


def _bce_per_sample(outputs: Any, targets: Any) -> torch.Tensor:
    z, y = logits_of(outputs), labels_of(targets, "bce")
    _warn_if_broadcast(z, y, "bce")
    return _per_sample(_bce_terms(z, y))


def _softmax_mse_terms(outputs: Any, targets: Any) -> torch.Tensor:
    z, y = logits_of(outputs), labels_of(targets, "mse")
    return (z.softmax(dim=-1) - _onehot(z, y)).pow(2).mean(-1)


def _count_of(outputs: Any, targets: Any) -> torch.Tensor:
    """The number of samples, as a tensor on the outputs' device."""
    import torch

    from lossviz.batches import batch_size

    z = logits_of(outputs)
    n = batch_size(targets) if targets is not None else z.shape[0]
    return torch.tensor(float(n), dtype=z.dtype if z.is_floating_point() else torch.float64, device=z.device)


@dataclass(frozen=True)
class Loss:
    """A resolved loss: ``name`` (stored with results), ``mean(outputs, targets)`` (the batch mean),
    ``per_sample(outputs, targets)`` ((B,) terms whose mean is ``mean``; None for a user's callable,
    which gives the batch mean only; for token losses each sequence's mean over its counted tokens,
    whose mean is ``mean`` when every sequence counts as many tokens) and ``total`` (the batch's
    ``(Σ terms, number of terms)``; None: ``(B · mean, B)``, or the per-sample sum)."""

    name: str
    mean: LossFn
    per_sample: LossFn | None
    total: TotalFn | None = None

    @property
    def counts_tokens(self) -> bool:
        """True when the mean is over counted tokens (:data:`TOKEN_LOSSES`), not samples."""
        return self.name in TOKEN_LOSSES

    def count(self, targets: Any) -> int:
        """The number of terms the batch mean is over: counted tokens (labels ``!= -100``, shifted for
        ``"causal_lm"``) for token losses, else samples; the weight of a batch in a mean over many."""
        from lossviz.batches import batch_size

        if self.name == "causal_lm":
            return int(labels_of(targets, self.name, "input_ids")[..., 1:].ne(IGNORE_INDEX).sum())
        if self.name == "token_cross_entropy":
            return int(labels_of(targets, self.name).ne(IGNORE_INDEX).sum())
        return batch_size(targets)

    def sum_and_count(self, outputs: Any, targets: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Σ terms, number of terms)`` over the batch: ``Σ_b s_b / Σ_b c_b`` is the mean over many
        batches (tokens for token losses, samples otherwise)."""
        if self.total is not None:
            return self.total(outputs, targets)
        count = _count_of(outputs, targets)
        if self.per_sample is not None:
            return self.per_sample(outputs, targets).sum(), count
        return self.mean(outputs, targets) * count, count


def _mse_by_targets(outputs: Any, targets: Any) -> torch.Tensor:
    """``"mse"`` resolved without targets: :func:`softmax_mse` on class labels, else the plain mean."""
    labels = labels_of(targets, "mse")
    return (softmax_mse if is_class_labels(labels) else mean_squared_error)(outputs, targets)


def _mse_terms_by_targets(outputs: Any, targets: Any) -> torch.Tensor:
    labels = labels_of(targets, "mse")
    return (_softmax_mse_terms if is_class_labels(labels) else _squared_error_terms)(outputs, targets)


_FIXED = {
    "cross_entropy": Loss("cross_entropy", _cross_entropy, _cross_entropy_terms),
    "nll": Loss("nll", _nll, _nll_terms),
    "l1": Loss("l1", _l1, _absolute_error_terms),
    "huber": Loss("huber", huber, _huber_per_sample),
    "bce": Loss("bce", bce_with_logits, _bce_per_sample),
    "token_cross_entropy": Loss("token_cross_entropy", token_cross_entropy, _token_ce_per_sample, _token_ce_totals),
    "causal_lm": Loss("causal_lm", causal_lm_loss, _causal_per_sample, _causal_totals),
}


def _named(name: str, class_labels: bool | None) -> Loss:
    """The forms of a name of :data:`LOSS_NAMES`; ``class_labels`` None: targets not known yet."""
    if name == "ce":
        name = "cross_entropy"
    if name in _FIXED:
        return _FIXED[name]
    if class_labels is None:
        return Loss("mse", _mse_by_targets, _mse_terms_by_targets)
    if class_labels:
        return Loss("softmax_mse", softmax_mse, _softmax_mse_terms)
    return Loss("mse", mean_squared_error, _squared_error_terms)


def resolve_loss(loss: str | LossFn | Loss, targets: Any = None) -> Loss:
    """A :class:`Loss` from a name of :data:`LOSS_NAMES` or a callable ``loss(outputs, targets)``
    returning the batch mean.

    ``targets`` (optional) are the data's targets, or a mapping batch (its ``"labels"``): on
    integer class labels ``"mse"`` is :func:`softmax_mse`, the names of
    :data:`CLASSIFICATION_LOSSES` are refused for other targets, and a mapping batch without the
    labels a name needs is refused (``"causal_lm"`` also takes ``"input_ids"``). Without targets,
    ``"mse"`` applies the same rule at every call.
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
    fallback = "input_ids" if loss == "causal_lm" else None
    labels = _labels_or_none(targets, fallback)
    if labels is None:
        raise _missing_labels(loss, targets, fallback)
    class_labels = is_class_labels(labels)
    if loss in CLASSIFICATION_LOSSES and not class_labels:
        raise ValueError(
            f"loss={loss!r} needs integer class labels as targets; give a loss callable "
            "(or loss='mse') for other targets"
        )
    if loss in TOKEN_LOSSES and labels.dim() < 2:
        raise ValueError(
            f"loss={loss!r} needs token labels of shape (batch, tokens), got shape {list(labels.shape)}: "
            "use loss='cross_entropy' for one label per sample"
        )
    return _named(loss, class_labels)


def shape_hint(loss_name: str, outputs: Any, targets: Any) -> str | None:
    """The fix for a named loss that does not fit the outputs' and labels' shapes, where one is
    known: per-token logits (B, T, V) with (B, T) labels need a token loss."""
    try:
        z = logits_of(outputs)
    except TypeError:
        return None
    labels = _labels_or_none(targets)
    if (loss_name not in TOKEN_LOSSES and labels is not None and is_class_labels(labels) and labels.dim() == 2
            and z.dim() == 3):
        return ("for per-token logits (batch, tokens, vocabulary) use loss=token_cross_entropy, "
                "or loss=causal_lm to predict the next token")
    return None


# ------------------------------------------------------------------------------------ metrics
def resolve_metrics(
    metrics: Iterable[MetricSpec] | Mapping[str, LossFn] | str, classification: bool, loss_name: str | None = None
) -> tuple[list[str], list[tuple[str, LossFn]]]:
    """-> (metric names in output order, the user's ``(name, fn)`` callables).

    ``metrics``: ``"loss"``, ``"acc"`` (kept only when ``classification``: an accuracy is defined,
    :func:`accuracy_kind`), ``"perplexity"`` (``exp`` of the mean loss; refused for a named loss
    ``loss_name`` that is not a negative log-likelihood), callables ``fn(outputs, targets) -> batch
    mean``, ``(name, fn)`` pairs, or a ``{name: fn}`` mapping. ``"loss"`` always comes first.
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
        elif item not in METRIC_NAMES:
            raise ValueError(
                f"unknown metric {item!r}: use 'loss', 'acc', 'perplexity', a callable fn(outputs, targets) "
                "returning the batch mean, or a (name, fn) pair"
            )
    named = [m for m in items if isinstance(m, str)]
    names = ["loss"]
    if "acc" in named and classification:
        names.append("acc")
    if "perplexity" in named:
        if loss_name is not None and loss_name in LOSS_NAMES and loss_name not in NLL_LOSSES:
            raise ValueError(
                f"metric 'perplexity' is exp of a mean negative log-likelihood, but loss={loss_name!r} is not "
                f"one: use one of {list(NLL_LOSSES)} with it, or drop 'perplexity'"
            )
        names.append("perplexity")
    for name, _ in extra:
        if name in names:
            raise ValueError(f"metric name {name!r} is used twice: give the callables distinct names")
        names.append(name)
    return names, extra


def accuracy_kind(loss: Loss, outputs: Any, targets: Any) -> str | None:
    """Which accuracy ``"acc"`` is for this loss, outputs and targets, or None where it means nothing:

    * ``"next_token"`` (``"causal_lm"``): ``argmax z[:, t] = y[:, t+1]`` over counted tokens;
    * ``"multilabel"`` (``"bce"``): ``[z > 0] = [y > ½]`` over every entry;
    * ``"label"``: integer labels, outputs with one more (last) dimension of classes: one label per
      sample (B, C) or per token (B, T, V), ``-100`` labels not counted;
    * None: float targets (regression) or outputs that are not per-label scores.
    """
    try:
        z = logits_of(outputs)
    except TypeError:
        return None
    labels = _labels_or_none(targets, "input_ids" if loss.name == "causal_lm" else None)
    if labels is None:
        return None
    if loss.name == "bce":
        return "multilabel" if z.shape == labels.shape else None
    if not is_class_labels(labels):
        return None
    if loss.name == "causal_lm":
        return "next_token" if labels.dim() >= 2 and z.shape[:-1] == labels.shape else None
    if z.dim() == labels.dim() + 1 and z.shape[:-1] == labels.shape:
        return "label"
    return None


def wants_accuracy(outputs: Any, targets: Any) -> bool:
    """Accuracy is defined: integer class labels and (batch, classes) outputs."""
    labels = _labels_or_none(targets)
    return labels is not None and is_class_labels(labels) and logits_of(outputs).dim() == 2


def _label_hits(z: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mask = labels != IGNORE_INDEX
    hits = (z.argmax(-1) == labels) & mask
    return hits.sum().to(z.dtype), mask.sum().to(z.dtype)


def _accuracy_totals(kind: str, outputs: Any, targets: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(correct, counted)`` of the batch for an :func:`accuracy_kind`."""
    import torch

    if kind == "next_token":
        return _label_hits(*_shifted(outputs, targets))
    z = logits_of(outputs)
    if kind == "multilabel":
        y = labels_of(targets, "bce")
        hits = (z > 0) == (y > 0.5)
        return hits.sum().to(z.dtype), torch.tensor(float(hits.numel()), dtype=z.dtype, device=z.device)
    return _label_hits(z, labels_of(targets, "acc"))


def _mean_totals(fn: LossFn, outputs: Any, targets: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch-mean callable as ``(B · mean, B)``: its mean over many batches is sample-weighted."""
    count = _count_of(outputs, targets)
    return fn(outputs, targets) * count, count


@dataclass(frozen=True)
class Metric:
    """A metric over many batches: ``total(outputs, targets) -> (sum, count)`` per batch, and
    ``finish`` turning ``mean = Σ sum / Σ count`` into the value: ``"mean"`` (itself),
    ``"percent"`` (100 · mean) or ``"exp"`` (perplexity: exp of the mean loss); ``fn``: the user's
    callable ``fn(outputs, targets) -> batch mean`` it was made from, if any."""

    name: str
    total: TotalFn
    finish: str = "mean"
    fn: LossFn | None = None


def metric_table(
    metrics: Iterable[MetricSpec] | Mapping[str, LossFn] | str, loss: Loss, outputs: Any, targets: Any
) -> list[Metric]:
    """The :class:`Metric` of each name of :func:`resolve_metrics`, "loss" first, for ``loss`` and
    a probe's ``outputs`` and ``targets`` (which decide :func:`accuracy_kind`)."""
    kind = accuracy_kind(loss, outputs, targets)
    names, extra = resolve_metrics(metrics, kind is not None, loss.name)
    fns = dict(extra)
    loss_total = loss.sum_and_count  # one object: perplexity reuses the loss's totals (batch_totals)
    table = [Metric("loss", loss_total)]
    for name in names[1:]:
        if name == "acc" and name not in fns:
            assert kind is not None
            table.append(Metric("acc", functools.partial(_accuracy_totals, kind), "percent"))
        elif name == "perplexity" and name not in fns:
            table.append(Metric("perplexity", loss_total, "exp"))
        else:
            table.append(Metric(name, functools.partial(_mean_totals, fns[name]), fn=fns[name]))
    return table


def batch_totals(table: list[Metric], outputs: Any, targets: Any) -> list[torch.Tensor]:
    """``[s_0, c_0, s_1, c_1, ...]`` (0-d tensors) of one batch for the metrics of ``table``; a total
    function shared by several metrics (the loss and perplexity) runs once."""
    seen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    parts: list[torch.Tensor] = []
    for metric in table:
        key = id(metric.total)
        if key not in seen:
            seen[key] = metric.total(outputs, targets)
        s, c = seen[key]
        parts += [s.reshape(()), c.reshape(())]
    return parts


def finish_totals(table: list[Metric], totals: np.ndarray) -> np.ndarray:
    """(K, 2M) sums and counts accumulated over the data -> (K, M) metric values."""
    import numpy as np

    totals = np.asarray(totals, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        means = totals[:, 0::2] / totals[:, 1::2]
    for i, metric in enumerate(table):
        if metric.finish == "percent":
            means[:, i] *= 100.0
        elif metric.finish == "exp":
            with np.errstate(over="ignore"):
                means[:, i] = np.exp(means[:, i])
    return means


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

