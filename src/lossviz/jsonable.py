"""JSON conversions: plain Python values for stored descriptions, strict JSON for the browser, and the
one canonical text of a value (the text a result's key is the hash of).

- :func:`to_builtin` turns numpy and torch values (arrays, tensors, scalars) into Python lists and
  numbers, recursively; non-finite floats stay as they are (the store writes them as ``NaN``).
- :func:`json_safe` makes strict JSON for the widget's traits: ``NaN``/``inf`` -> ``None``, tuples ->
  lists, mapping keys -> text, anything else JSON cannot hold -> its text.
- :func:`dumps` is the canonical text: keys sorted, numpy/torch values as by :func:`to_builtin`.

Neither numpy nor torch is imported here: arrays, tensors and numpy scalars are recognised by their
``tolist`` method.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["dumps", "json_safe", "to_builtin"]

SMALL_ARRAY = 64
"""Arrays up to this many entries become JSON lists in :func:`json_safe`; larger ones their text."""


def _is_array_like(value: Any) -> bool:
    """numpy arrays and scalars, torch tensors: anything but plain Python values with ``tolist``."""
    return callable(getattr(value, "tolist", None)) and not isinstance(value, (list, tuple, str, bytes))


def _is_small_array(value: Any) -> bool:
    """A numpy array/scalar (``.size``) or torch tensor (``.numel()``) of at most :data:`SMALL_ARRAY` entries."""
    if not _is_array_like(value):
        return False
    size = getattr(value, "size", None)
    n = value.numel() if callable(size) else size
    return isinstance(n, int) and n <= SMALL_ARRAY


def to_builtin(value: Any) -> Any:
    """``value`` with numpy/torch arrays, tensors and scalars replaced by Python lists and numbers
    (recursively through mappings, lists and tuples; keys and non-finite floats kept)."""
    if isinstance(value, Mapping):
        return {k: to_builtin(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_builtin(v) for v in value]
    if _is_array_like(value):
        return to_builtin(value.tolist())
    return value


def json_safe(value: Any) -> Any:
    """A strict-JSON copy of ``value``: NaN/inf -> None, numpy scalars -> Python, tuples -> lists,
    keys -> text, arrays of up to :data:`SMALL_ARRAY` entries -> lists, anything else -> its text."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if _is_small_array(value):
        return json_safe(value.tolist())  # numpy scalars (size 1) and small arrays
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)


def dumps(value: Any, *, allow_nan: bool = True) -> str:
    """The canonical JSON text of ``value``: keys sorted, numpy/torch values as Python ones.

    The separators are :func:`json.dumps`'s defaults, as the store has always written them: the keys
    of results already stored are hashes of this exact text. ``allow_nan=False`` refuses NaN and
    infinities (``ValueError``) instead of writing them as ``NaN``/``Infinity``.
    """
    return json.dumps(to_builtin(value), sort_keys=True, allow_nan=allow_nan)
