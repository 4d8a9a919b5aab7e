"""lossviz.jsonable: plain values for stored descriptions, strict JSON for the browser, and the canonical
text a result's key is the hash of (unchanged from what the store has always written)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lossviz.jsonable import SMALL_ARRAY, dumps, json_safe, to_builtin


def test_json_safe_is_strict_json():
    value = {"a": float("nan"), "b": (1, np.float32(0.5), np.int64(3), np.bool_(True)), 2: [float("inf"), -1.5],
             "arr": np.arange(3.0), "none": None, "text": "x"}
    out = json_safe(value)
    assert out == {"a": None, "b": [1, 0.5, 3, True], "2": [None, -1.5], "arr": [0.0, 1.0, 2.0], "none": None,
                   "text": "x"}
    assert type(out["b"][2]) is int and type(out["b"][3]) is bool
    json.dumps(out, allow_nan=False)


def test_json_safe_turns_large_arrays_and_unknown_objects_into_text():
    assert isinstance(json_safe(np.zeros(SMALL_ARRAY + 1)), str)
    assert json_safe(np.zeros(0)) == []
    assert json_safe(np.float64("nan")) is None
    assert json_safe(object).startswith("<class")


def test_json_safe_of_a_tensor():
    torch = pytest.importorskip("torch")
    assert json_safe(torch.tensor([1.0, float("nan")])) == [1.0, None]
    assert isinstance(json_safe(torch.zeros(SMALL_ARRAY + 1)), str)


def test_to_builtin_keeps_non_finite_floats_and_keys():
    torch = pytest.importorskip("torch")
    out = to_builtin({1: np.array([1.0, np.nan]), "t": torch.tensor([2, 3]), "s": np.float32(0.25), "k": ("a", 1)})
    assert out[1][0] == 1.0 and math.isnan(out[1][1])
    assert out["t"] == [2, 3] and out["s"] == 0.25 and type(out["s"]) is float and out["k"] == ["a", 1]


def test_dumps_is_the_text_the_store_has_always_written():
    spec = {"type": "surface", "b": [1, 2.5, None], "a": {"z": float("nan"), "y": (1, 2)}}
    assert dumps(spec) == json.dumps(spec, sort_keys=True, allow_nan=True)
    assert dumps(dict(reversed(list(spec.items())))) == dumps(spec)
    assert dumps({"v": np.arange(2)}) == '{"v": [0, 1]}'
    with pytest.raises(ValueError, match="not JSON compliant"):
        dumps({"x": float("nan")}, allow_nan=False)
