"""A Session on a Dataset of dicts: training, evaluation, surfaces and the Hessian through the one
calling rule or a forward= hook; bad input refused before anything is stored."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from lossviz import Session
from lossviz.training import evaluate_model


class DictSamples(Dataset):
    def __init__(self, n=32):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 4, generator=g)
        self.y = (self.x[:, 0] > 0).long()

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"features": self.x[i], "labels": self.y[i]}


class DictNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def forward(self, features, labels=None):
        return self.lin(features)


def dict_loss(out, batch):
    return F.cross_entropy(out, batch["labels"])


def test_session_trains_and_maps_a_dataset_of_dicts(tmp_path):
    ds = DictSamples()
    with Session(tmp_path / "p", model=DictNet, data=ds, loss=dict_loss, device="cpu",
                 hparams={"batch_size": 8, "lr": 0.5}) as s:
        init = s.init()
        job = s.train(from_=init.id, epochs=2)
        job.wait(60)
        assert job.state == "done", job.error
        last = job.result[-1]
        assert last.metrics["train_loss"] < init.metrics["train_loss"]
        model = s.model(last.id)
        with torch.no_grad():
            truth = float(F.cross_entropy(model(ds.x), ds.y))
        assert last.metrics["train_loss"] == pytest.approx(truth, rel=1e-5)
        surf = s.surface(last.id, x="-1:1:3", y="-1:1:3")
        assert np.isfinite(surf.values["train_loss"]).all()
        assert surf.values["train_loss"][1, 1] == pytest.approx(truth, rel=1e-5)
        eig = s.hessian(last.id, k=1)
        assert np.isfinite(eig["eigenvalues"]).all()


def test_a_forward_path_is_stored_and_never_imported_from_the_folder(tmp_path, monkeypatch):
    (tmp_path / "hooks_mod.py").write_text(textwrap.dedent("""
        def forward(model, batch):
            return model.lin(batch["features"])
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    ds = DictSamples()
    with Session(tmp_path / "p", model=DictNet, data=ds, loss=dict_loss, device="cpu",
                 forward="hooks_mod:forward") as s:
        assert s.spec["forward"] == "hooks_mod:forward"
        c = s.init()
        assert np.isfinite(c.metrics["train_loss"])
    sys.modules.pop("hooks_mod", None)
    with pytest.raises(ValueError, match=r"forward='hooks_mod:forward'.*pass forward= yourself"):
        Session(tmp_path / "p", model=DictNet, data=ds, loss=dict_loss, device="cpu")


def test_a_batch_the_model_cannot_take_leaves_nothing_behind(tmp_path):
    class Wrong(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 2)

        def forward(self, x):
            return self.lin(x)

    with pytest.raises(ValueError, match=r"cannot take a batch.*features.*forward="):
        Session(tmp_path / "p", model=Wrong, data=DictSamples(), loss=dict_loss, device="cpu")
    assert not (tmp_path / "p").exists()
    with pytest.raises(ValueError, match=r"reads 'label' from the batch"):
        Session(tmp_path / "q", model=DictNet, data=DictSamples(), device="cpu",
                loss=lambda out, b: F.cross_entropy(out, b["label"]))
    assert not (tmp_path / "q").exists()


def test_evaluate_model_takes_dict_data():
    ds = DictSamples()
    batch = torch.utils.data.default_collate([ds[i] for i in range(len(ds))])
    model = DictNet()
    res = evaluate_model(model, batch, None, dict_loss, batch_size=5)
    with torch.no_grad():
        assert res["loss"] == pytest.approx(float(F.cross_entropy(model(ds.x), ds.y)), rel=1e-6)


def test_training_on_dicts_with_a_forward_hook_equals_training_on_pairs():
    from lossviz.training import train

    ds = DictSamples()
    from lossviz.training import DEFAULT_HPARAMS

    h = {**DEFAULT_HPARAMS, "batch_size": 8, "lr": 0.3, "seed": 4}
    torch.manual_seed(0)
    a = DictNet()
    b = DictNet()
    b.load_state_dict(a.state_dict())
    start = a.lin.weight.detach().clone()
    train(a, ds, hparams=h, epochs=2, loss=dict_loss, forward=lambda m, batch: m.lin(batch["features"]))
    train(b, (ds.x, ds.y), hparams=h, epochs=2, loss="cross_entropy")
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-6, atol=1e-7)
    assert (a.lin.weight - start).abs().max() > 1e-3  # it trained


class BNNet(nn.Module):
    """Called only through a forward= hook (its forward takes a tensor, the batches are dicts)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 6)
        self.bn = nn.BatchNorm1d(6)
        self.out = nn.Linear(6, 2)

    def forward(self, x):
        return self.out(torch.relu(self.bn(self.lin(x))))


def features_forward(model, batch):
    return model(batch["features"])


def test_connect_and_its_plane_call_the_model_through_the_sessions_forward_hook(tmp_path):
    ds = DictSamples()
    with Session(tmp_path / "p", model=BNNet, data=ds, loss=dict_loss, device="cpu", forward=features_forward,
                 hparams={"batch_size": 8, "lr": 0.5}) as s:
        a = s.init()
        b = s.disturb(a.id, 0.5, seed=1)
        res = s.connect(a.id, b.id, "bezier", epochs=1, batch_size=8, n_points=3, update_bn=True)
        for end, ckpt in ((0, a), (-1, b)):  # the ends, BN statistics recomputed on all the data
            model = s.model(ckpt.id).train()
            with torch.no_grad():
                model.bn.reset_running_stats()
                model.bn.momentum = None  # cumulative: the mean over every sample
                model(ds.x)
                truth = float(F.cross_entropy(model.eval()(ds.x), ds.y))
            assert res["line"]["values"]["train_loss"][end] == pytest.approx(truth, rel=1e-5)
        plane = s.connect_plane(res, n=3)
        assert np.isfinite(plane.values["train_loss"]).all()


def test_a_surface_with_bn_recomputed_calls_the_model_through_the_forward_hook():
    from lossviz.landscape import compute_surface

    ds = DictSamples()
    batch = torch.utils.data.default_collate([ds[i] for i in range(len(ds))])
    torch.manual_seed(0)
    model = BNNet().eval()
    surf = compute_surface(model, batch, "random", x="0:0:1", y="0:0:1", loss=dict_loss, forward=features_forward,
                           update_bn=True, progress=False)
    work = BNNet()
    work.load_state_dict(model.state_dict())
    with torch.no_grad():
        work.train()
        work.bn.reset_running_stats()
        work.bn.momentum = None
        work(ds.x)
        truth = float(F.cross_entropy(work.eval()(ds.x), ds.y))
    assert float(surf.values["train_loss"].ravel()[0]) == pytest.approx(truth, rel=1e-5)
