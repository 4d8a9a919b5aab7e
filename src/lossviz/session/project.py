"""Opening a project: the model, data, loss, metrics, device and defaults a session works with,
resolved from the arguments and the project's stored spec, checked, and the spec stored.

Each ``resolve_*`` function turns one argument (``None``: the stored one) into what the session keeps,
or raises an error that says what to pass; :func:`open_project` runs them in order and stores the
spec (the first opening writes it; later ones check the architecture against it).
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lossviz import training as T
from lossviz.batches import Forward
from lossviz.data import as_eval_data, probe_model_data
from lossviz.losses import METRIC_NAMES
from lossviz.losses import resolve_loss as resolve_named_loss
from lossviz.losses import resolve_metrics as resolve_metric_names
from lossviz.store import Store
from lossviz.validation import Interval, check

SPEC_VERSION = 1
PROBE_SAMPLES = 512
"""Training samples the model is tried on at opening (their labels are checked against its outputs)."""


@dataclass
class ModelSource:
    """How the session builds models: ``factory()`` gives a fresh module; ``name`` is the zoo name
    (stored in the spec) or ``None``; ``template`` the module given (its weights: the init checkpoint)."""

    factory: Callable[[], nn.Module]
    name: str | None
    template: nn.Module | None = None


@dataclass
class DataSource:
    """The training and (optional) test datasets; ``name`` is the zoo name (stored) or ``None``."""

    train: Any
    test: Any
    name: str | None


@dataclass
class Project:
    """Everything :class:`~lossviz.session.Session` keeps from an opening."""

    store: Store
    model: ModelSource
    data: DataSource
    loss: str | Callable
    metrics: dict[str, Callable]
    device: torch.device
    eval_samples: int | None
    defaults: dict
    spec: dict
    forward: Forward | None = None
    #: the named metrics beyond loss and accuracy (``("perplexity",)``), stored in the spec
    metric_names: tuple[str, ...] = ()


def callable_name(fn: Any) -> str:
    """The name a callable (loss, metric) is known by in stored keys."""
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__


def _stored_name(name: Any, what: str, path: Path) -> str:
    """A zoo name read from a project's index, refused when it names code to import
    (``package.module:factory``): a project folder may come from someone else, and its index must not
    choose what runs. ``torchvision:<name>`` builders are zoo names."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{path}: the index names the {what} {name!r}, which is no zoo name: pass {what}= yourself")
    if ":" in name and not name.startswith("torchvision:"):
        raise ValueError(
            f"{path}: the index names the {what} factory {name!r}; lossviz never imports code a project "
            f"folder names (the folder may come from someone else): if you trust it, pass {what}={name!r} yourself"
        )
    return name


def _stored_data_kwargs(stored: Mapping[str, Any], path: Path) -> dict:
    """The data set's keyword arguments read from a project's index; ``verify=False`` is refused: it
    would let torchvision unpickle CIFAR-10 batch files that are not the official ones."""
    kwargs = stored.get("data_kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise ValueError(f"{path}: the index's data_kwargs are not a mapping: pass data= and data_kwargs= yourself")
    if kwargs.get("verify") is False:
        raise ValueError(
            f"{path}: the index asks to read the data set with verify=False (files that are not the official "
            "ones, which torchvision unpickles); if you trust them, pass data_kwargs yourself"
        )
    return dict(kwargs)


def resolve_model(model: Any, model_kwargs: Mapping[str, Any], stored: Mapping[str, Any], path: Path) -> ModelSource:
    """``model`` (a zoo name, a factory or a module; ``None``: the stored zoo name) as a :class:`ModelSource`."""
    if model is None:
        if not stored.get("model"):
            raise ValueError(
                f"{path}: pass model= (a zoo name such as 'mlp' or a factory); "
                + ("this project was created with a model factory, pass it again" if stored else "the project is new")
            )
        model = _stored_name(stored["model"], "model", path)
    if isinstance(model, str):
        from lossviz.zoo import get_model

        name, kwargs = model, dict(model_kwargs)
        return ModelSource(lambda: get_model(name, **kwargs), name)
    if isinstance(model, nn.Module):
        template = copy.deepcopy(model).cpu()
        return ModelSource(lambda: copy.deepcopy(template), None, template)
    if callable(model):
        return ModelSource(model, None)
    raise TypeError(
        f"model must be a zoo name, a factory returning an nn.Module, or a module; got {type(model).__name__}"
    )


def resolve_data(data: Any, data_kwargs: Mapping[str, Any], stored: Mapping[str, Any], path: Path) -> DataSource:
    """``data`` (a zoo name, a Dataset, a ``(train, test)`` pair or ``(inputs, targets)`` tensors;
    ``None``: the stored zoo name) as a :class:`DataSource` with a non-empty training set; ``False``
    (or ``None`` on a project created so): no data, for checkpoints logged or imported from another trainer."""
    if data is False or (data is None and stored.get("without_data")):
        return DataSource(None, None, None)
    if data is None:
        if not stored.get("data"):
            raise ValueError(
                f"{path}: pass data= (a zoo name such as 'spirals', a Dataset, or a (train, test) pair)"
                + ("; this project was created with a dataset, pass it again" if stored else
                   ", or data=False for a project of checkpoints logged or imported from another trainer")
            )
        data = _stored_name(stored["data"], "data", path)
    if isinstance(data, str):
        from lossviz.zoo import get_data

        train, test = get_data(data, **data_kwargs)
        source = DataSource(train, test, data)
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        if all(isinstance(t, (torch.Tensor, np.ndarray)) for t in data):
            x, y = (torch.as_tensor(t) for t in data)
            source = DataSource(torch.utils.data.TensorDataset(x, y), None, None)
        else:
            source = DataSource(data[0], data[1], None)
    elif hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        source = DataSource(data, None, None)
    else:
        raise TypeError(
            f"data must be a zoo name, a Dataset, a (train, test) pair or (inputs, targets); got {type(data).__name__}"
        )
    if source.train is None or len(source.train) == 0:
        raise ValueError("the training data is empty: give a dataset with samples")
    return source


def resolve_loss(loss: str | Callable, stored: Mapping[str, Any]) -> str | Callable:
    """``loss``, or the stored loss name when ``loss`` is the default ``"cross_entropy"``; checked."""
    if isinstance(loss, str) and loss == "cross_entropy" and isinstance(stored.get("loss"), str):
        loss = stored["loss"]
    resolve_named_loss(loss)  # validates
    return loss


MetricsArg = Mapping[str, Callable] | Sequence[Callable | str] | str | None


def _stored_metric_names(stored: Mapping[str, Any], path: Path) -> list[str]:
    """The named metrics a project's index holds (names only: the index never names code to run)."""
    names = stored.get("metrics") or []
    if not isinstance(names, list) or not all(isinstance(n, str) and n in METRIC_NAMES for n in names):
        raise ValueError(
            f"{path}: the index's metrics {names!r} are not names of {list(METRIC_NAMES)}: pass metrics= yourself"
        )
    return names


def resolve_metrics(metrics: MetricsArg, loss: str | Callable = "cross_entropy",
                    stored: Mapping[str, Any] | None = None,
                    path: Path | None = None) -> tuple[dict[str, Callable], tuple[str, ...]]:
    """-> (the extra metrics as callables ``{name: fn(outputs, targets)}``, the named metrics beyond
    loss and accuracy, e.g. ``("perplexity",)``).

    ``metrics``: a ``{name: fn}`` mapping, or a list of callables (named by the functions' names)
    and names of :data:`lossviz.losses.METRIC_NAMES` (``"loss"`` and ``"acc"`` are always
    computed). The names are checked by :func:`lossviz.losses.resolve_metrics` (an unknown name, or
    ``"perplexity"`` with a named loss that is no negative log-likelihood, is refused); when
    ``metrics`` names none, the names stored in the project's spec (``stored``) are used."""
    if isinstance(metrics, str):
        metrics = [metrics]
    items: list[Any] = list(metrics.items()) if isinstance(metrics, Mapping) else list(metrics or ())
    given = [m for m in items if isinstance(m, str)]
    names = given or _stored_metric_names(stored or {}, path or Path("."))
    resolved, _ = resolve_metric_names(names, True, loss if isinstance(loss, str) else None)
    named: dict[str, Callable] = {}
    for item in items:
        if isinstance(item, str):
            continue
        name, fn = item if isinstance(item, tuple) and len(item) == 2 else (callable_name(item), item)
        if not callable(fn) or name in METRIC_NAMES:
            raise ValueError(
                f"metric {name!r} must be a callable fn(outputs, targets) not named {'/'.join(METRIC_NAMES)} "
                "(those are the named metrics: pass the name itself, e.g. metrics=['perplexity'])"
            )
        named[name] = fn
    return named, tuple(n for n in resolved if n not in ("loss", "acc"))


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device``, or CUDA when available, else the CPU; a device this machine cannot use (``"cuda"``
    without CUDA, a GPU index beyond the GPUs) is refused here, before anything is stored."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device {device!r} is not a torch device ({exc}): pass e.g. 'cpu' or 'cuda'") from None
    try:
        torch.empty(0, device=target)  # torch's own check: compiled in, present, index in range
    except (RuntimeError, AssertionError) as exc:  # torch raises AssertionError when compiled without CUDA
        first = (str(exc).strip() or type(exc).__name__).splitlines()[0].split(". ")[0][:160]
        raise ValueError(
            f"device {str(target)!r} cannot be used on this machine ({first}): pass device='cpu' "
            f"(or leave device unset: CUDA when available, else the CPU)"
        ) from None
    return target


def resolve_eval_samples(eval_samples: int | None, stored: Mapping[str, Any]) -> int | None:
    """``eval_samples`` (``None``: the stored value) as a positive integer or ``None`` (all samples)."""
    if eval_samples is None:
        eval_samples = stored.get("eval_samples")
    return check("eval_samples", eval_samples, Interval(int, 1, None, whole_floats=True), allow_none=True)


def resolve_defaults(hparams: Mapping[str, Any] | None, stored: Mapping[str, Any]) -> dict:
    """The project's default hyperparameters: the library's, then the stored ones, then ``hparams``."""
    unknown = sorted(set(hparams or {}) - set(T.HPARAM_NAMES))
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {unknown}: use {list(T.HPARAM_NAMES)}")
    defaults = dict(T.DEFAULT_HPARAMS)
    defaults.update(stored.get("hparams") or {})
    defaults.update(hparams or {})
    return T.validate_hparams(defaults)


def probe_model(source: ModelSource) -> nn.Module:
    """A fresh model from the factory, checked to be a module."""
    probe = source.factory()
    if not isinstance(probe, nn.Module):
        raise TypeError(f"the model factory returned {type(probe).__name__}, not an nn.Module")
    return probe


def resolve_forward(forward: Any, stored: Mapping[str, Any], path: Path) -> tuple[Forward | None, str | None]:
    """``forward`` (a callable ``forward(model, batch)`` or an import path ``"package.module:function"``)
    as (the hook, the path stored in the spec: only a path given as a string, a callable is never
    stored). A project created with a path is not opened without ``forward=``: lossviz never
    imports code a project folder names."""
    if forward is None:
        if stored.get("forward"):
            raise ValueError(
                f"{path}: this project calls its model with forward={stored['forward']!r}; lossviz never imports "
                "code a project folder names: if you trust it, pass forward= yourself"
            )
        return None, None
    if isinstance(forward, str):
        from lossviz.zoo.factory import import_factory

        return import_factory(forward, "forward", "outputs"), forward
    if not callable(forward):
        raise TypeError(f"forward must be a callable forward(model, batch) or 'module:function', got {forward!r}")
    return forward, None


def check_model_takes_data(probe: nn.Module, train_set: Any, loss: str | Callable,
                           metrics: Mapping[str, Callable], forward: Forward | None = None) -> None:
    """The one probe, :func:`lossviz.data.probe_model_data`, on the first :data:`PROBE_SAMPLES`
    training samples: a model that cannot take them, labels beyond its outputs, or a loss or metric
    that does not return one number is named before anything is stored."""
    probe_model_data(probe, as_eval_data(train_set, PROBE_SAMPLES), loss, metrics, forward=forward)


def architecture(model: nn.Module) -> list[list]:
    """The state dict's ``[name, shape]`` entries: what a project's checkpoints must match."""
    return [[k, list(v.shape)] for k, v in model.state_dict().items()]


def first_difference(stored: Sequence, given: Sequence) -> str:
    """Words naming the first state-dict entry whose name or shape differs between two
    architectures (lists of ``[name, shape]``)."""
    theirs = {str(k): list(v) for k, v in stored}
    ours = {str(k): list(v) for k, v in given}
    for name, shape in ours.items():
        if name in theirs and theirs[name] != shape:
            return f"first difference: {name!r} has shape {theirs[name]} in the project but {shape} in the model"
    for name in theirs:
        if name not in ours:
            return f"first difference: the project has {name!r} {theirs[name]}, which the model lacks"
    for name in ours:
        if name not in theirs:
            return f"first difference: the model has {name!r} {ours[name]}, which the project lacks"
    return "the state dict order differs"


def project_spec(model: ModelSource, model_kwargs: Mapping[str, Any], data: DataSource,
                 data_kwargs: Mapping[str, Any], loss: str | Callable, eval_samples: int | None,
                 defaults: Mapping[str, Any], arch: list[list], metric_names: Sequence[str] = ()) -> dict:
    """The spec a new project stores (what reopening it without arguments needs)."""
    return {
        "version": SPEC_VERSION,
        "model": model.name,
        "model_kwargs": dict(model_kwargs) if model.name else None,
        "data": data.name,
        "data_kwargs": dict(data_kwargs) if data.name else None,
        "loss": loss if isinstance(loss, str) else None,
        "eval_samples": eval_samples,
        "metrics": list(metric_names),
        "without_data": data.train is None,
        "hparams": dict(defaults),
        "architecture": arch,
        "created": time.time(),
    }


def store_spec(store: Store, spec: dict) -> dict:
    """Store ``spec`` unless the project has one; the stored one must describe the same architecture."""
    existing = store.set_meta_if_absent("spec", spec)
    if existing is not spec and existing.get("architecture") != spec["architecture"]:
        raise ValueError(
            f"{store.path} holds checkpoints of another architecture than the given model "
            f"({first_difference(existing.get('architecture') or [], spec['architecture'])}): open it with "
            "the model it was created with, or choose another folder"
        )
    return existing


def _is_new_folder(path: Path) -> bool:
    """True when ``path`` is missing or an empty folder: opening it creates a project."""
    try:
        return not path.exists() or (path.is_dir() and next(path.iterdir(), None) is None)
    except OSError:  # unreadable: the Store says why
        return False


def open_project(
    path: str | os.PathLike,
    model: Any = None,
    data: Any = None,
    loss: str | Callable = "cross_entropy",
    metrics: MetricsArg = None,
    *,
    model_kwargs: Mapping[str, Any] | None = None,
    data_kwargs: Mapping[str, Any] | None = None,
    device: str | torch.device | None = None,
    eval_samples: int | None = None,
    hparams: Mapping[str, Any] | None = None,
    forward: Any = None,
) -> Project:
    """Open (or create) the project at ``path`` with these arguments (see :class:`~lossviz.session.Session`).

    A new project (``path`` missing or an empty folder) is created only once every argument is checked
    (model, data, loss, metrics, device and the probe of the model on the data): a refused creation
    leaves no folder behind. An existing folder's index is opened first (its spec fills the arguments
    not given, and an unusable folder is refused as such)."""
    folder = Path(path)
    store = None if _is_new_folder(folder) else Store(folder)
    try:
        stored = (store.get_meta("spec") or {}) if store is not None else {}
        model_kwargs = dict(model_kwargs if model_kwargs is not None else stored.get("model_kwargs") or {})
        data_kwargs = dict(data_kwargs if data_kwargs is not None else _stored_data_kwargs(stored, folder))
        model_source = resolve_model(model, model_kwargs, stored, folder)
        data_source = resolve_data(data, data_kwargs, stored, folder)
        loss = resolve_loss(loss, stored)
        metric_fns, metric_names = resolve_metrics(metrics, loss, stored, folder)
        target = resolve_device(device)
        samples = resolve_eval_samples(eval_samples, stored)
        defaults = resolve_defaults(hparams, stored)
        hook, hook_path = resolve_forward(forward, stored, folder)
        probe = probe_model(model_source)
        if data_source.train is not None:
            check_model_takes_data(probe, data_source.train, loss, metric_fns, hook)
        spec = project_spec(model_source, model_kwargs, data_source, data_kwargs, loss, samples, defaults,
                            architecture(probe), metric_names)
        if hook_path is not None:
            spec["forward"] = hook_path
        if store is None:
            store = Store(folder)
        spec = store_spec(store, spec)
    except BaseException:
        if store is not None:
            store.discard_if_created()  # a failed opening leaves no new project behind
        raise
    return Project(store, model_source, data_source, loss, metric_fns, target, samples, defaults, spec, hook,
                   metric_names)
