"""An optimizer's ``state_dict()`` as safetensors-storable tensors plus a JSON structure: no pickle.

:func:`encode_optimizer_state` flattens the state (tensors out, everything else as JSON);
:func:`decode_optimizer_state` is its inverse. The project store keeps the tensors in
``optim/<id>.safetensors`` and the structure in that file's metadata.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import torch

from lossviz.jsonable import dumps

__all__ = ["decode_optimizer_state", "encode_optimizer_state"]


def encode_optimizer_state(state: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], str]:
    """Flatten an optimizer ``state_dict()`` into tensors + a JSON structure (no pickle).

    Tensors are replaced by ``{"__tensor__": key}``; dicts become ``{"__dict__": [[k, v], ...]}`` (so
    integer parameter ids survive), tuples ``{"__tuple__": [...]}``.
    """
    tensors: dict[str, torch.Tensor] = {}

    def enc(obj: Any, path: str) -> Any:
        if isinstance(obj, torch.Tensor):
            key = f"t{len(tensors)}"
            tensors[key] = obj
            return {"__tensor__": key}
        if isinstance(obj, Mapping):
            return {"__dict__": [[enc(k, path), enc(v, f"{path}.{k}")] for k, v in obj.items()]}
        if isinstance(obj, tuple):
            return {"__tuple__": [enc(v, path) for v in obj]}
        if isinstance(obj, list):
            return [enc(v, path) for v in obj]
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        raise TypeError(
            f"optimizer state entry {path!r} has type {type(obj).__name__}, which lossviz cannot "
            "store without pickle; use one of the built-in torch optimizers"
        )

    structure = enc(dict(state), "state")
    return tensors, dumps(structure)


def decode_optimizer_state(tensors: Mapping[str, torch.Tensor], structure: str) -> dict:
    """Inverse of :func:`encode_optimizer_state`."""

    def dec(obj: Any) -> Any:
        if isinstance(obj, dict):
            if "__tensor__" in obj:
                return tensors[obj["__tensor__"]]
            if "__dict__" in obj:
                return {dec(k): dec(v) for k, v in obj["__dict__"]}
            if "__tuple__" in obj:
                return tuple(dec(v) for v in obj["__tuple__"])
            return {k: dec(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [dec(v) for v in obj]
        return obj

    return dec(json.loads(structure))
