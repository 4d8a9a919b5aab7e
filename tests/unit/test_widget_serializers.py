"""lossviz.widget.serializers: arrays cross to the browser as binary buffers of the right dtype and shape."""

from __future__ import annotations

import numpy as np

from lossviz.widget.serializers import to_wire, wire_array, wire_mask


def test_wire_mask_is_uint8_and_float_arrays_stay_float32():
    w = wire_mask(np.array([[True, False, True]]))
    assert w["dtype"] == "uint8" and w["shape"] == [1, 3] and bytes(w["view"]) == b"\x01\x00\x01"
    assert to_wire(np.array([0, 1], np.uint8))["dtype"] == "uint8"
    assert to_wire(np.array([0.5, 1.0]))["dtype"] == "float32"


def test_wire_array_is_contiguous_float32():
    a = np.arange(12, dtype=np.float64).reshape(3, 4)[:, ::2]
    w = wire_array(a)
    assert w["dtype"] == "float32" and w["shape"] == [3, 2]
    assert isinstance(w["view"], memoryview) and w["view"].nbytes == 4 * 6
    np.testing.assert_array_equal(np.frombuffer(bytes(w["view"]), np.float32).reshape(3, 2), a)


def test_an_empty_array_is_an_empty_buffer():
    w = wire_array(np.zeros((0, 2)))
    assert w["shape"] == [0, 2] and w["view"].nbytes == 0


def test_to_wire_recurses_and_makes_the_rest_strict_json():
    out = to_wire({"a": [np.arange(3.0), (np.float32(np.nan), np.int64(2), np.bool_(False))], 1: {"x": float("inf")}})
    assert out["a"][0]["dtype"] == "float32" and out["a"][0]["shape"] == [3]
    assert out["a"][1] == [None, 2, False] and type(out["a"][1][1]) is int and type(out["a"][1][2]) is bool
    assert out["1"] == {"x": None}
    assert to_wire("text") == "text" and to_wire(None) is None
