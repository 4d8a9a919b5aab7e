"""The wire format of the Explorer's traits: numpy arrays cross to the browser as binary buffers.

An array travels as ``{"view": memoryview, "dtype": "float32", "shape": [...]}`` (a 0/1 mask as
``"dtype": "uint8"``, one byte a point), never as a JSON list; the front end reads it with
``new Float32Array(v.view.buffer, v.view.byteOffset, v.view.byteLength / 4)``. :func:`to_wire` is the
``to_json`` of every trait that holds arrays.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["to_wire", "wire_array", "wire_mask"]


def wire_array(values: Any) -> dict[str, Any]:
    """A float32 C-contiguous array as the wire dict ``{"view", "dtype", "shape"}`` (a binary buffer)."""
    arr = np.ascontiguousarray(np.asarray(values, dtype=np.float32))
    return {"view": arr.reshape(-1).data, "dtype": "float32", "shape": list(arr.shape)}


def wire_mask(values: Any) -> dict[str, Any]:
    """A 0/1 mask as the wire dict ``{"view", "dtype": "uint8", "shape"}`` (one byte a point)."""
    arr = np.ascontiguousarray(np.asarray(values, dtype=bool).astype(np.uint8))
    return {"view": arr.reshape(-1).data, "dtype": "uint8", "shape": list(arr.shape)}


def to_wire(value: Any, widget: Any = None) -> Any:
    """``value`` with numpy arrays replaced by wire dicts (uint8 arrays as :func:`wire_mask`, all others
    as float32 :func:`wire_array`), recursively; numpy scalars -> Python, non-finite floats -> None.

    The signature is traitlets' ``to_json(value, widget)``.
    """
    if isinstance(value, np.ndarray):
        return wire_mask(value) if value.dtype == np.uint8 else wire_array(value)
    if isinstance(value, Mapping):
        return {str(k): to_wire(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_wire(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    return value
