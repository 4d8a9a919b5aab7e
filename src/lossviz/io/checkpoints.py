"""Checkpoints: load state dicts without unpickling code, save them as safetensors atomically.

``.pt`` / ``.pth`` / ``.t7`` / ``.ckpt`` / ``.bin`` files go through
``torch.load(path, map_location="cpu", weights_only=True)`` (tensors and plain containers only: a
pickle that would construct arbitrary objects is refused, not executed); ``.safetensors`` through
``safetensors``. Common wrappers are unwrapped (``{"state_dict": ...}`` as the reference's
``cifar10/main.py`` saves them, ``{"model": ...}``, ``{"net": ...}``, ``{"model_state_dict": ...}``)
and a ``module.`` prefix (``nn.DataParallel``) is stripped; :func:`strip_prefix` removes the attribute
prefix under which a wrapper (a LightningModule, a Hugging Face model) stored the model's entries,
:func:`fill_tied` restores tied entries a file left out, and :func:`check_fits` names the first tensor
that does not fit a model.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lossviz.files import read_safetensors, read_safetensors_metadata, write_safetensors

TORCH_SUFFIXES = (".pt", ".pth", ".t7", ".ckpt", ".bin", ".tar")
SAFETENSORS_SUFFIXES = (".safetensors",)
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")
ORDER_KEY = "lossviz.order"


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, name -> tensor on the CPU, in file order."""
    return normalize_state_dict(load_raw(path), source=str(path))


def load_raw(path: str | os.PathLike) -> Any:
    """What a checkpoint file holds, read without unpickling code: a safetensors file's tensors (in
    the order :func:`save_state_dict` recorded), or the tensors and plain containers ``torch.load(...,
    weights_only=True)`` gives (e.g. a Lightning ``.ckpt``'s ``{"state_dict", "epoch", "global_step",
    "hyper_parameters", ...}``). ``ValueError`` names a file that would need unpickling or is not readable."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"checkpoint {str(p)!r} does not exist")
    suffix = p.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        tensors, meta = read_safetensors(p)
        raw: Any = _in_saved_order(tensors, meta)
    elif suffix in TORCH_SUFFIXES:
        try:
            raw = torch.load(str(p), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(
                f"refusing to unpickle {str(p)!r}: it holds Python objects beyond tensors and plain "
                f"containers ({first}). Re-save only the weights, e.g. "
                "torch.save(model.state_dict(), path), or convert to .safetensors"
            ) from None
        except (RuntimeError, EOFError, OSError, ValueError) as exc:
            raise ValueError(f"{str(p)!r} is not a readable PyTorch checkpoint ({exc})") from None
    else:
        raise ValueError(
            f"unknown checkpoint format {suffix or '(no suffix)'!r} for {str(p)!r}: use one of "
            f"{', '.join(TORCH_SUFFIXES + SAFETENSORS_SUFFIXES)}"
        )
    return raw


def normalize_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Unwrap ``{"state_dict": ...}``-style wrappers, keep the tensors, strip ``module.``."""
    for _ in range(4):
        if not isinstance(obj, Mapping):
            break
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        inner = next(
            (obj[k] for k in WRAPPER_KEYS if k in obj and isinstance(obj[k], Mapping)), None
        )
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise ValueError(
            f"{source} holds a {type(obj).__name__}, not a state dict; save model.state_dict()"
        )
    sd = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise ValueError(
            f"{source} holds no tensors (top-level keys: {sorted(map(str, obj))[:8]}); expected a "
            "state dict or a {'state_dict': ...} wrapper"
        )
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def load_checkpoint_into(
    model: nn.Module,
    path_or_state_dict: str | os.PathLike | Mapping[str, torch.Tensor],
    *,
    strict: bool = True,
) -> nn.Module:
    """Load a checkpoint (path or mapping) into ``model`` after checking names and shapes.

    Raises ``ValueError`` naming the first tensor whose shape differs (both shapes), and, when
    ``strict``, the missing and unexpected names. ``num_batches_tracked`` may be absent (old
    checkpoints such as the reference's ``.t7`` files). Returns ``model``.
    """
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        sd = load_state_dict(path_or_state_dict)
        source = repr(os.fspath(path_or_state_dict))
    else:
        sd = normalize_state_dict(path_or_state_dict, source="the given state dict")
        source = "the given state dict"
    own = model.state_dict()
    check_fits(sd, {k: tuple(v.shape) for k, v in own.items()}, source, strict=strict)
    with torch.no_grad():
        model.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)
    return model


def check_fits(sd: Mapping[str, torch.Tensor], shapes: Mapping[str, Sequence[int]], source: str, *,
               strict: bool = True) -> None:
    """Raise ``ValueError`` when the state dict ``sd`` does not fit a model whose entries have
    ``shapes`` (name -> shape): the first tensor whose shape differs (both shapes), and, when
    ``strict``, the missing and unexpected names (``num_batches_tracked`` may be missing)."""
    for name, shape in shapes.items():
        if name in sd and tuple(sd[name].shape) != tuple(shape):
            raise ValueError(
                f"checkpoint {source} does not fit the model: {name!r} has shape "
                f"{list(sd[name].shape)} in the checkpoint but {list(shape)} in the model; "
                "build the model with the architecture the checkpoint was trained with"
            )
    missing = [k for k in shapes if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in shapes]
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first {unexpected[:3]})")
        raise ValueError(
            f"checkpoint {source} does not fit the model: tensors " + " and ".join(parts)
            + "; check the model name/factory, or pass strict=False to load the common tensors"
        )


def strip_prefix(sd: Mapping[str, torch.Tensor], names: Sequence[str]) -> dict[str, torch.Tensor]:
    """``sd`` with the attribute prefix removed under which a wrapper stored the model's entries
    ``names`` (a LightningModule's ``self.model`` -> ``"model."``, a Hugging Face ``"base_model."``):
    the entries under the first prefix ``p`` such that ``p + name`` is in ``sd`` for every required
    name (``num_batches_tracked`` may be missing). ``sd`` unchanged when it holds the names already or
    no prefix fits (the fit check then names the difference)."""
    required = [n for n in names if not n.endswith("num_batches_tracked")]
    if not required or all(n in sd for n in required):
        return dict(sd)
    first = required[0]
    for key in sd:
        if not key.endswith("." + first):
            continue
        prefix = key[: len(key) - len(first)]
        if all(prefix + n in sd for n in required):
            return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    return dict(sd)


def tied_names(model: nn.Module) -> list[list[str]]:
    """Groups of state-dict names that share one tensor in ``model``: tied weights, such as a language
    model's embedding and output layer."""
    groups: dict[tuple, list[str]] = {}
    for name, t in model.state_dict(keep_vars=True).items():
        if t.numel():
            groups.setdefault((t.data_ptr(), t.dtype, tuple(t.shape)), []).append(name)
    return [g for g in groups.values() if len(g) > 1]


def fill_tied(sd: Mapping[str, torch.Tensor], groups: Sequence[Sequence[str]]) -> dict[str, torch.Tensor]:
    """``sd`` with the entries a file left out because they are tied to one it holds (Hugging Face's
    ``save_pretrained`` drops ``lm_head.weight``, the embedding's twin) taken from that one."""
    out = dict(sd)
    for group in groups:
        held = next((name for name in group if name in out), None)
        if held is not None:
            for name in group:
                out.setdefault(name, out[held])
    return out


def save_state_dict(
    path: str | os.PathLike,
    state_dict: Mapping[str, torch.Tensor],
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Save tensors as safetensors, atomically (temp file in the same folder, fsync, ``os.replace``).

    ``metadata`` values that are not strings are stored as JSON.
    """
    for k, v in state_dict.items():
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"state dict entry {k!r} is a {type(v).__name__}, not a tensor")
    tensors = {str(k): v for k, v in state_dict.items()}
    meta = {ORDER_KEY: json.dumps(list(tensors))}  # safetensors sorts its entries; keep ours
    for k, v in (metadata or {}).items():
        if str(k) == ORDER_KEY:
            raise ValueError(f"metadata key {ORDER_KEY!r} is reserved")
        meta[str(k)] = v if isinstance(v, str) else json.dumps(v)
    write_safetensors(path, tensors, meta)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a safetensors file (``{}`` when there is none)."""
    meta = read_safetensors_metadata(path)
    meta.pop(ORDER_KEY, None)
    return meta


def _in_saved_order(tensors: dict[str, torch.Tensor], meta: Mapping[str, str]) -> dict[str, torch.Tensor]:
    """Restore the order :func:`save_state_dict` recorded in ``meta`` (state_dict order matters here)."""
    order = meta.get(ORDER_KEY)
    if not order:
        return tensors
    try:
        names = json.loads(order)
    except ValueError:
        return tensors
    if not isinstance(names, list) or sorted(names) != sorted(tensors):
        return tensors
    return {k: tensors[k] for k in names}
