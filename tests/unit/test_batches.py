"""The calling rule and the batch tree helpers of lossviz.batches."""

from __future__ import annotations

from collections import namedtuple

import pytest
import torch
from torch import nn

from lossviz.batches import (
    batch_size,
    call_model,
    concat_batches,
    map_tensors,
    slice_batch,
    targets_of,
    tensors_of,
    to_device,
)


class Recorder(nn.Module):
    def forward(self, *args, **kwargs):
        return args, kwargs


def test_calling_rule_per_batch_structure():
    x, y = torch.randn(4, 3), torch.arange(4)
    m = Recorder()
    args, kwargs = call_model(m, (x, y))
    assert args[0] is x and kwargs == {}
    args, kwargs = call_model(m, ((x, x + 1), y))
    assert len(args) == 2 and torch.equal(args[1], x + 1)
    args, kwargs = call_model(m, ({"input_ids": x}, y))
    assert args == () and kwargs["input_ids"] is x
    args, kwargs = call_model(m, {"input_ids": x, "labels": y})
    assert set(kwargs) == {"input_ids", "labels"}
    args, _ = call_model(m, x)
    assert args[0] is x
    assert call_model(m, (x, y), forward=lambda model, b: b[1].sum()) == y.sum()


def test_targets_are_the_pair_second_or_the_whole_batch():
    x, y = torch.randn(2, 3), torch.arange(2)
    assert targets_of((x, y)) is y
    batch = {"input_ids": x}
    assert targets_of(batch) is batch


def test_tree_helpers_keep_structure():
    Pair = namedtuple("Pair", "a b")
    batch = {"ids": torch.arange(6).view(3, 2), "nested": [Pair(torch.ones(3), torch.zeros(3, 4)), "text"]}
    assert len(tensors_of(batch)) == 3
    doubled = map_tensors(lambda t: t * 2, batch)
    assert isinstance(doubled["nested"][0], Pair) and doubled["nested"][1] == "text"
    assert batch_size(batch) == 3
    part = slice_batch(batch, 1, 3)
    assert batch_size(part) == 2 and torch.equal(part["ids"], batch["ids"][1:3])
    whole = concat_batches([slice_batch(batch, 0, 1), part])
    assert all(torch.equal(a, b) for a, b in zip(tensors_of(whole), tensors_of(batch), strict=True))
    moved = to_device(batch, "cpu", torch.float64)
    assert moved["ids"].dtype == torch.int64 and moved["nested"][0].a.dtype == torch.float64


def test_batch_size_names_disagreeing_shapes():
    with pytest.raises(ValueError, match="disagree on the number of samples"):
        batch_size((torch.zeros(3, 2), torch.zeros(4)))
    with pytest.raises(ValueError, match="no tensor"):
        batch_size({"a": "text"})
