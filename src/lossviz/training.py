"""A seeded, resumable, cancellable training loop for any model, dataset and loss.

Reproducibility: every epoch draws its randomness (the shuffling permutation, and any global-RNG use
inside the model or the dataset such as dropout or augmentation) from a seed derived from
``(seed, epoch)`` only. With the optimizer state restored, continuing from a checkpoint at epoch ``e``
therefore reproduces an uninterrupted run bit for bit (on the CPU).

Learning-rate schedules are functions of the absolute epoch (epochs completed since the root), applied
at the start of every epoch:

* ``"constant"``
* ``"step"`` / ``{"name": "step", "step_size": s, "gamma": g}``: ``lr · g^floor(e / s)``
* ``"multistep"`` / ``{"name": "multistep", "milestones": [...], "gamma": g}``:
  ``lr · g^#{m ≤ e}``; the preset ``"cifar"`` is milestones 150, 225, 275, gamma 0.1 (base lr 0.1)
* ``"cosine"`` / ``{"name": "cosine", "t_max": T, "eta_min": m}``: ``m + (lr - m)(1 + cos(π e / T)) / 2``

Strings ``"step:30:0.1"``, ``"multistep:150,225,275:0.1"`` and ``"cosine:200"`` are accepted too.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from lossviz.batches import Forward, call_model, take_samples, targets_of, to_device
from lossviz.data import EvalData, as_eval_data
from lossviz.losses import LossFn, MetricSpec, batch_totals, finish_totals, metric_table, resolve_loss, scalar_value
from lossviz.validation import Boolean, Constraint, Interval, Options, check

_prewarm_lock = threading.Lock()
_prewarm: threading.Thread | None = None


def prewarm_optimizers() -> threading.Thread:
    """Import ``torch._dynamo`` in a daemon thread, once per process, and return that thread.

    torch's optimizers import it at their first ``step()`` (several seconds), so the first training
    job of a fresh kernel would stall there; the Explorer starts this when it opens. A step that comes
    while the import runs waits for it (Python's import lock), never imports twice.
    """
    global _prewarm
    with _prewarm_lock:
        if _prewarm is None:
            def work() -> None:
                with contextlib.suppress(Exception):  # a failed warm-up: the first step imports it
                    import torch._dynamo  # noqa: F401

            _prewarm = threading.Thread(target=work, name="lossviz-prewarm-optimizers", daemon=True)
            _prewarm.start()
        return _prewarm

OPTIMIZERS = ("sgd", "adam", "adamw", "adagrad", "rmsprop")
HPARAM_NAMES = ("lr", "optimizer", "momentum", "nesterov", "weight_decay", "batch_size", "schedule", "seed")
DEFAULT_HPARAMS: dict[str, Any] = {
    "lr": 0.1,
    "optimizer": "sgd",
    "momentum": 0.9,
    "nesterov": False,
    "weight_decay": 0.0,
    "batch_size": 64,
    "schedule": {"name": "constant"},
    "seed": 0,
}
CIFAR_SCHEDULE: dict[str, Any] = {"name": "multistep", "milestones": [150, 225, 275], "gamma": 0.1}
CIFAR_LR = 0.1
HPARAM_CONSTRAINTS: dict[str, Constraint] = {
    "lr": Interval(float, 0, None, closed="neither"),
    "optimizer": Options(OPTIMIZERS),
    "momentum": Interval(float, 0, 1, closed="left"),
    "nesterov": Boolean(),
    "weight_decay": Interval(float, 0, None),
    "batch_size": Interval(int, 1, None),
    "seed": Interval(int, 0, None),
}
"""What each numeric or named hyperparameter accepts (the schedule is :func:`normalize_schedule`'s)."""
_HINTS = {"optimizer": "use one of these names"}


# ------------------------------------------------------------------------------ hyperparameters
def normalize_schedule(schedule: Any) -> dict:
    """A schedule as a json-able dict with ``name`` (see the module docstring). Raises ValueError."""
    if schedule is None:
        return {"name": "constant"}
    if isinstance(schedule, str):
        parts = schedule.strip().lower().split(":")
        name = parts[0]
        try:
            if name == "constant" and len(parts) == 1:
                return {"name": "constant"}
            if name == "cifar" and len(parts) == 1:
                return dict(CIFAR_SCHEDULE, milestones=list(CIFAR_SCHEDULE["milestones"]))
            if name == "step" and len(parts) <= 3:
                return normalize_schedule(
                    {
                        "name": "step",
                        "step_size": int(parts[1]) if len(parts) > 1 else 30,
                        "gamma": float(parts[2]) if len(parts) > 2 else 0.1,
                    }
                )
            if name == "multistep" and 2 <= len(parts) <= 3:
                return normalize_schedule(
                    {
                        "name": "multistep",
                        "milestones": [int(m) for m in parts[1].split(",") if m.strip()],
                        "gamma": float(parts[2]) if len(parts) > 2 else 0.1,
                    }
                )
            if name == "cosine" and len(parts) <= 3:
                return normalize_schedule(
                    {
                        "name": "cosine",
                        "t_max": int(parts[1]) if len(parts) > 1 and parts[1] else None,
                        "eta_min": float(parts[2]) if len(parts) > 2 else 0.0,
                    }
                )
        except ValueError:
            pass
        raise ValueError(
            f"schedule {schedule!r} is not understood: use 'constant', 'cifar', 'step:30:0.1', "
            "'multistep:150,225,275:0.1', 'cosine' or 'cosine:200' (or a dict with 'name')"
        )
    if isinstance(schedule, Mapping):
        s = dict(schedule)
        name = str(s.get("name", "")).lower()
        if name == "constant":
            return {"name": "constant"}
        if name == "cifar":
            return normalize_schedule("cifar")
        gamma = float(s.get("gamma", 0.1))
        if name in ("step", "multistep") and not (math.isfinite(gamma) and gamma > 0):
            raise ValueError(f"schedule gamma must be a positive number, got {gamma!r}")
        if name == "step":
            step_size = int(s.get("step_size", 30))
            if step_size < 1:
                raise ValueError(f"schedule step_size must be >= 1, got {step_size}")
            return {"name": "step", "step_size": step_size, "gamma": gamma}
        if name == "multistep":
            milestones = sorted(int(m) for m in s.get("milestones", ()))
            if any(m < 0 for m in milestones):
                raise ValueError(f"schedule milestones must be >= 0, got {milestones}")
            return {"name": "multistep", "milestones": milestones, "gamma": gamma}
        if name == "cosine":
            t_max = s.get("t_max")
            eta_min = float(s.get("eta_min", 0.0))
            if t_max is not None and int(t_max) < 1:
                raise ValueError(f"cosine schedule t_max must be >= 1 epoch, got {t_max}")
            if not (math.isfinite(eta_min) and eta_min >= 0):
                raise ValueError(f"cosine schedule eta_min must be >= 0, got {eta_min}")
            return {"name": "cosine", "t_max": None if t_max is None else int(t_max), "eta_min": eta_min}
        raise ValueError(
            f"schedule name {s.get('name')!r} is unknown: use constant, step, multistep, cifar or cosine"
        )
    raise TypeError(f"schedule must be a string or a dict, not {type(schedule).__name__}")


def lr_at(lr: float, schedule: Mapping[str, Any], epochs_done: float) -> float:
    """The learning rate for the epoch that starts after ``epochs_done`` completed epochs."""
    name = schedule["name"]
    e = float(epochs_done)
    if name == "constant":
        return float(lr)
    if name == "step":
        return float(lr) * schedule["gamma"] ** math.floor(e / schedule["step_size"])
    if name == "multistep":
        return float(lr) * schedule["gamma"] ** sum(1 for m in schedule["milestones"] if m <= e)
    if name == "cosine":
        t_max = schedule.get("t_max")
        if t_max is None:
            raise ValueError("cosine schedule needs t_max (the epoch at which lr reaches eta_min)")
        m = schedule.get("eta_min", 0.0)
        return m + (float(lr) - m) * (1 + math.cos(math.pi * min(e, t_max) / t_max)) / 2
    raise ValueError(f"unknown schedule {name!r}")


def validate_hparams(hparams: Mapping[str, Any]) -> dict:
    """Check and normalize hyperparameters against :data:`HPARAM_CONSTRAINTS`; a ValueError names
    the bad field and what it must be."""
    h = dict(hparams)
    missing = [k for k in HPARAM_NAMES if k not in h]
    if missing:
        raise ValueError(f"hyperparameters missing: {missing}")
    given = dict(h, optimizer=str(h["optimizer"]).lower())
    checked = {name: check(name, given[name], c, hint=_HINTS.get(name, "")) for name, c in HPARAM_CONSTRAINTS.items()}
    if checked["nesterov"] and (checked["optimizer"] != "sgd" or checked["momentum"] == 0):
        raise ValueError("nesterov=True needs optimizer='sgd' with momentum > 0")
    h.update(checked, schedule=normalize_schedule(h["schedule"]))
    return h


def make_optimizer(params, hparams: Mapping[str, Any]) -> torch.optim.Optimizer:
    """The torch optimizer named by ``hparams['optimizer']`` with its hyperparameters."""
    opt = hparams["optimizer"]
    lr, wd, mom = hparams["lr"], hparams["weight_decay"], hparams["momentum"]
    if opt == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=mom, nesterov=hparams["nesterov"], weight_decay=wd)
    if opt == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if opt == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if opt == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, weight_decay=wd)
    if opt == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=mom, weight_decay=wd)
    raise ValueError(f"optimizer {opt!r} is unknown: use one of {OPTIMIZERS}")


def _apply_hparams(optimizer: torch.optim.Optimizer, hparams: Mapping[str, Any]) -> None:
    """Override the hyperparameters of a restored optimizer state with the run's."""
    for group in optimizer.param_groups:
        group["weight_decay"] = hparams["weight_decay"]
        if "momentum" in group:
            group["momentum"] = hparams["momentum"]
        if "nesterov" in group:
            group["nesterov"] = hparams["nesterov"]


def epoch_seed(seed: int, epoch: float) -> int:
    """The RNG seed of the epoch that starts after ``epoch`` completed epochs (a hash of both)."""
    key = [int(seed), round(float(epoch) * 1000)]
    if key[1] < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    return int(np.random.SeedSequence(key).generate_state(1, np.uint64)[0] & ((1 << 63) - 1))


# ------------------------------------------------------------------------------ evaluation
@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    inputs: Any,
    targets: torch.Tensor | None = None,
    loss: str | LossFn = "cross_entropy",
    metrics: Mapping[str, LossFn] | Iterable[MetricSpec] | None = None,
    batch_size: int = 4096,
    device: torch.device | str | None = None,
    forward: Forward | None = None,
) -> dict[str, float]:
    """Mean loss (and accuracy in percent where one is defined, and ``metrics``: named ones such as
    ``"perplexity"``, ``(name, fn)`` pairs, or a ``{name: fn}`` mapping) of ``model`` in eval
    mode over ``(inputs, targets)``, or over ``inputs`` alone as data of any structure (an
    :class:`~lossviz.data.EvalData` or anything :func:`~lossviz.data.as_eval_data` takes, with
    ``targets=None``): ``Σ_b s_b / Σ_b c_b`` of each metric's batch sums and counts
    (:func:`lossviz.losses.metric_table`: samples, or counted tokens for a token loss). NaN and ±inf
    are kept."""
    data = as_eval_data(inputs if targets is None else (inputs, targets))
    resolved = resolve_loss(loss)
    was_training = model.training
    model.eval()
    device = torch.device(device) if device is not None else next(
        (p.device for p in model.parameters()), torch.device("cpu")
    )
    table = None
    totals: torch.Tensor | None = None
    try:
        for part in data.split(batch_size):
            part = to_device(part, device)
            out = call_model(model, part, forward)
            y = targets_of(part)
            if table is None:
                extra = metrics.items() if isinstance(metrics, Mapping) else (metrics or ())
                table = metric_table(("loss", "acc", *extra), resolved, out, y)
                scalar_value(resolved.mean(out, y))
                for m in table:
                    if m.fn is not None:
                        scalar_value(m.fn(out, y), f"metric {m.name!r}")
            parts = torch.stack([p.to(torch.float64) for p in batch_totals(table, out, y)])
            totals = parts if totals is None else totals + parts
    finally:
        model.train(was_training)
    if table is None or totals is None:
        return {}
    values = finish_totals(table, totals.cpu().numpy()[None])[0]
    return {m.name: float(v) for m, v in zip(table, values, strict=True)}  # NaN and ±inf stay as they are


# ------------------------------------------------------------------------------ the loop
@dataclass
class TrainOutcome:
    """How a run ended: ``status`` is "done", "cancelled" or "diverged" (with ``reason``)."""

    status: str
    reason: str | None
    epoch: float
    step: int


def _batches(dataset, perm: torch.Tensor, batch_size: int, held: EvalData | None = None):
    """Batches of the samples ``perm`` in order: rows of the data held in memory, or the
    dataset's samples collated (any structure)."""
    for start in range(0, len(perm), batch_size):
        idx = perm[start : start + batch_size]
        if held is not None:
            yield take_samples(held.batch, idx)
        else:
            yield torch.utils.data.default_collate([dataset[int(i)] for i in idx])


def _held_in_memory(train_data: Any) -> EvalData | None:
    """The training data as one batch in memory when it is given as tensors (a pair, a
    TensorDataset, a mapping of tensors, an EvalData), else None (a Dataset: read by sample)."""
    if isinstance(train_data, (EvalData, torch.utils.data.TensorDataset, Mapping)) or (
        isinstance(train_data, tuple) and len(train_data) == 2
    ):
        return as_eval_data(train_data)
    return None


def train(
    model: nn.Module,
    train_data: Any,
    *,
    hparams: Mapping[str, Any],
    epochs: int,
    start_epoch: float = 0.0,
    start_step: int = 0,
    every: int = 1,
    loss: str | LossFn = "cross_entropy",
    optim_state: Mapping[str, Any] | None = None,
    evaluate: Callable[[nn.Module], dict] | None = None,
    on_checkpoint: Callable[..., None] | None = None,
    cancel: threading.Event | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    device: torch.device | str | None = None,
    forward: Forward | None = None,
) -> TrainOutcome:
    """Train ``model`` in place for ``epochs`` epochs after ``start_epoch`` completed ones.

    Every ``every`` epochs (and after the last) ``on_checkpoint(model=, optimizer=, epoch=, step=,
    metrics=evaluate(model), status="ok", note="")`` is called. A non-finite loss stops the run: one
    checkpoint with ``status="diverged"`` (no optimizer) is reported and the outcome says why; no
    exception leaves the loop for it. ``cancel`` is checked before every step. Batches may have any
    structure (:mod:`lossviz.batches`): the model is called by its calling rule or ``forward``,
    the loss as ``loss(outputs, targets_of(batch))``.
    """
    h = validate_hparams(hparams)
    epochs = check("epochs", epochs, Interval(int, 1, None, whole_floats=True))
    every = check("every", every, Interval(int, 1, None, whole_floats=True))
    if h["schedule"]["name"] == "cosine" and h["schedule"]["t_max"] is None:
        h["schedule"] = dict(h["schedule"], t_max=math.ceil(start_epoch) + epochs)
    loss_fn = resolve_loss(loss).mean
    device = torch.device(device) if device is not None else next(
        (p.device for p in model.parameters()), torch.device("cpu")
    )
    model.to(device)
    optimizer = make_optimizer(model.parameters(), h)
    if optim_state is not None:
        optimizer.load_state_dict(dict(optim_state))
        _apply_hparams(optimizer, h)
    held = _held_in_memory(train_data)
    n = len(held) if held is not None else len(train_data)
    if n == 0:
        raise ValueError("the training data is empty")
    bs = h["batch_size"]
    n_batches = math.ceil(n / bs)
    total = epochs * n_batches
    step, done = int(start_step), 0
    cuda_devices = [device] if device.type == "cuda" else []
    emit = progress or (lambda *a: None)
    report = on_checkpoint or (lambda **kw: None)
    evaluate = evaluate or (lambda m: {})

    def checkpoint(epoch, status="ok", note="", with_optim=True):
        metrics = evaluate(model)
        report(
            model=model,
            optimizer=optimizer if with_optim else None,
            epoch=epoch,
            step=step,
            metrics=metrics,
            status=status,
            note=note,
            hparams=h,
        )
        return metrics

    for k in range(epochs):
        epoch0 = float(start_epoch) + k
        lr = lr_at(h["lr"], h["schedule"], epoch0)
        for group in optimizer.param_groups:
            group["lr"] = lr
        seed = epoch_seed(h["seed"], epoch0)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        model.train()
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(seed ^ 0x5DEECE66D)
            for b, batch in enumerate(_batches(train_data, perm, bs, held)):
                if cancel is not None and cancel.is_set():
                    return TrainOutcome("cancelled", "cancelled by the user", epoch0 + b / n_batches, step)
                batch = to_device(batch, device)
                optimizer.zero_grad(set_to_none=True)
                value = scalar_value(loss_fn(call_model(model, batch, forward), targets_of(batch)))
                lv = float(value.detach())
                if not math.isfinite(lv):
                    at = epoch0 + b / n_batches
                    reason = (
                        f"loss became {lv} at epoch {at:g} (step {step}, lr {lr:g}); "
                        "lower the learning rate"
                    )
                    checkpoint(at, status="diverged", note=reason, with_optim=False)
                    return TrainOutcome("diverged", reason, at, step)
                value.backward()
                optimizer.step()
                step += 1
                done += 1
                emit(done, total, f"epoch {epoch0 + 1:g} loss {lv:.4g}")
        epoch1 = epoch0 + 1
        last = k == epochs - 1
        if (k + 1) % every == 0 or last:
            finite = all(torch.isfinite(p).all() for p in model.parameters())
            if not finite:
                reason = f"weights became non-finite at epoch {epoch1:g} (lr {lr:g}); lower the learning rate"
                checkpoint(epoch1, status="diverged", note=reason, with_optim=False)
                return TrainOutcome("diverged", reason, epoch1, step)
            checkpoint(epoch1)
    return TrainOutcome("done", None, float(start_epoch) + epochs, step)
