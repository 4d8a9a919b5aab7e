"""The optimizer-state codec: tensors plus a JSON structure, no pickle."""

from __future__ import annotations

import pytest
import torch

from lossviz.optim_state import decode_optimizer_state, encode_optimizer_state


def test_optimizer_codec_rejects_unstorable_objects():
    with pytest.raises(TypeError, match="without pickle"):
        encode_optimizer_state({"state": {0: {"f": object()}}, "param_groups": []})
    t, s = encode_optimizer_state({"state": {3: {"b": (1, 2.5), "n": None}}, "param_groups": [{"params": [3]}]})
    assert decode_optimizer_state(t, s) == {"state": {3: {"b": (1, 2.5), "n": None}}, "param_groups": [{"params": [3]}]}


def test_tensors_and_integer_keys_round_trip():
    state = {"state": {0: {"momentum_buffer": torch.arange(3.0), "step": torch.tensor(2.0)}},
             "param_groups": [{"params": [0], "lr": 0.1, "betas": (0.9, 0.99)}]}
    tensors, structure = encode_optimizer_state(state)
    assert set(tensors) == {"t0", "t1"} and "__tensor__" in structure
    back = decode_optimizer_state(tensors, structure)
    assert list(back["state"]) == [0] and back["param_groups"] == state["param_groups"]
    assert torch.equal(back["state"][0]["momentum_buffer"], torch.arange(3.0))
