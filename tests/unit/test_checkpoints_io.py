"""lossviz.io.checkpoints' pieces for imports: load_raw, strip_prefix, check_fits."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

from lossviz.io.checkpoints import check_fits, fill_tied, load_raw, strip_prefix, tied_names


def shapes(m: nn.Module) -> dict:
    return {k: tuple(v.shape) for k, v in m.state_dict().items()}


def test_strip_prefix_finds_the_wrappers_attribute():
    m = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    sd = {f"model.{k}": v for k, v in m.state_dict().items() if "num_batches" not in k}
    sd["loss_fn.weight"] = torch.ones(2)
    out = strip_prefix(sd, list(shapes(m)))
    assert set(out) == set(shapes(m)) - {"1.num_batches_tracked"}
    assert strip_prefix(m.state_dict(), list(shapes(m))).keys() == m.state_dict().keys()
    other = {"x.weight": torch.ones(1)}
    assert strip_prefix(other, list(shapes(m))) == other  # nothing fits: unchanged, check_fits names it


def test_check_fits_names_the_first_tensor():
    m = nn.Linear(2, 3)
    check_fits(m.state_dict(), shapes(m), "a")
    with pytest.raises(ValueError, match=r"checkpoint a does not fit the model: 'weight' has shape \[4, 2\]"):
        check_fits(nn.Linear(2, 4).state_dict(), shapes(m), "a")
    with pytest.raises(ValueError, match=r"1 missing \(first \['bias'\]\)"):
        check_fits({"weight": torch.zeros(3, 2)}, shapes(m), "a")
    check_fits({"weight": torch.zeros(3, 2)}, shapes(m), "a", strict=False)


class _Evil:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_load_raw_keeps_plain_containers_and_refuses_objects(tmp_path):
    torch.save({"epoch": 3, "state_dict": {"w": torch.ones(1)}, "hyper_parameters": {"lr": 0.1}}, tmp_path / "a.ckpt")
    raw = load_raw(tmp_path / "a.ckpt")
    assert raw["epoch"] == 3 and raw["hyper_parameters"] == {"lr": 0.1}
    assert torch.equal(raw["state_dict"]["w"], torch.ones(1))
    (tmp_path / "b.pt").write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(ValueError, match="refusing to unpickle"):
        load_raw(tmp_path / "b.pt")


def test_tied_names_and_fill_tied():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(5, 3)
            self.head = nn.Linear(3, 5, bias=False)
            self.head.weight = self.embed.weight

    m = Tied()
    groups = tied_names(m)
    assert groups == [["embed.weight", "head.weight"]]
    filled = fill_tied({"embed.weight": torch.ones(5, 3)}, groups)
    assert torch.equal(filled["head.weight"], torch.ones(5, 3))
    assert fill_tied({}, groups) == {}
