"""Named metrics of a language model everywhere (issue 11): perplexity and the next-token accuracy of
the zoo's ``gpt`` on ``tinytext`` in a Session's checkpoints (training, a branch, interpolation) and
surfaces, stored in the project and found again, written by ``lossviz surface --metrics`` into the
HDF5 file, and offered by the Explorer's metric choice; bad names refused before any work.

Ground truth: a float64 plain loop over the sequences one at a time, ``Σ token cross-entropies /
Σ counted tokens`` of the whole split and its ``exp``, against which a mean of per-batch
perplexities is another number.
"""

from __future__ import annotations

import copy
import json
import math

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lossviz.cli import main
from lossviz.io.h5 import read_directions
from lossviz.params import ParamSpace
from lossviz.session import Session
from lossviz.zoo import get_data, get_model

SMALL = {"n_layer": 1, "d_model": 16, "n_head": 2, "block_size": 12, "dropout": 0.1}
TEXT = {"n_sentences": 20, "block_size": 11, "form": "dict"}  # 44 windows of 12 tokens to train on
BATCH = 7  # sequences per evaluated batch: 44 = 6 x 7 + 2, batches of unequal loss and size


def _windows(split: str = "train") -> torch.Tensor:
    train, test = get_data("tinytext", **TEXT)
    part = train if split == "train" else test
    return torch.stack([part[i]["input_ids"] for i in range(len(part))])


def _reference(model, windows: torch.Tensor) -> tuple[float, float, float]:
    """(mean next-token loss, next-token accuracy %, perplexity) over every window, float64, one
    sequence at a time: logits of ``w[:-1]`` against ``w[1:]``."""
    m = copy.deepcopy(model).double().eval()
    total = hits = count = 0.0
    with torch.no_grad():
        for w in windows:
            z, y = m(w[None])[0, :-1], w[1:]
            total += float(F.cross_entropy(z, y, reduction="sum"))
            hits += float((z.argmax(-1) == y).sum())
            count += y.numel()
    return total / count, 100.0 * hits / count, math.exp(total / count)


def _batch_mean_perplexity(model, windows: torch.Tensor) -> float:
    """The wrong number: the mean of each batch's perplexity."""
    m = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        ppl = [math.exp(float(F.cross_entropy(m(b)[:, :-1].flatten(0, 1), b[:, 1:].flatten())))
               for b in windows.split(BATCH)]
    return float(np.mean(ppl))


def _session(path, **kw) -> Session:
    return Session(path, model="gpt", model_kwargs=SMALL, data="tinytext", data_kwargs=TEXT, loss="causal_lm",
                   device="cpu", **kw)


def test_a_gpt_session_gives_the_whole_datas_perplexity_on_checkpoints_and_surfaces(tmp_path):
    windows = _windows()
    s = _session(tmp_path / "lm", metrics=["perplexity"], hparams={"lr": 0.01, "batch_size": 16,
                                                                     "optimizer": "adam"})
    try:
        init = s.init()
        model = s.model(init.id)
        loss, acc, ppl = _reference(model, windows)
        assert init.metrics["train_perplexity"] == pytest.approx(ppl, rel=1e-5)
        assert init.metrics["train_acc"] == pytest.approx(acc, abs=1e-3)  # the next-token accuracy
        assert init.metrics["test_perplexity"] == pytest.approx(_reference(model, _windows("test"))[2], rel=1e-5)
        surf = s.surface(init.id, x="-1:1:3", y="-1:1:3", batch_size=BATCH)
        assert {"train_perplexity", "test_perplexity", "train_acc"} <= set(surf.values)
        space = ParamSpace(model, surf.directions.kind)
        center, (d1, d2) = space.vector(model), surf.directions.vectors
        probe = copy.deepcopy(model)
        for i, j in [(1, 1), (0, 2)]:  # the centre, and the point x = 1, y = -1
            space.load_into(probe, center + float(surf.x[j]) * d1 + float(surf.y[i]) * d2)
            loss, acc, ppl = _reference(probe, windows)
            assert surf.values["train_perplexity"][i, j] == pytest.approx(ppl, rel=1e-5)
            assert surf.values["train_loss"][i, j] == pytest.approx(loss, rel=1e-5)
            assert surf.values["train_acc"][i, j] == pytest.approx(acc, abs=1e-3)
        assert abs(surf.values["train_perplexity"][0, 2] - surf.values["train_perplexity"][1, 1]) > 1e-3
        assert abs(_batch_mean_perplexity(probe, windows) / ppl - 1) > 1e-4  # the check above could fail
        # training and a branch: every checkpoint has it, exp of its own mean token loss
        run = s.train(epochs=1).wait(120)
        branch = s.train(from_=init.id, epochs=1, lr=0.001).wait(120)
        for c in (run[-1], branch[-1]):
            assert c.metrics["train_perplexity"] == pytest.approx(math.exp(c.metrics["train_loss"]), rel=1e-9)
        # an interpolated checkpoint against the loop on its own weights
        mid = s.interpolate(init.id, run[-1].id, 3)[1]
        assert mid.metrics["train_perplexity"] == pytest.approx(_reference(s.model(mid.id), windows)[2], rel=1e-5)
    finally:
        s.close()
    # the names are stored in the project (never code): reopened bare it computes them, the surface is found
    with Session(tmp_path / "lm", device="cpu") as again:
        assert again.metric_names == ("perplexity",) and again.spec["metrics"] == ["perplexity"]
        n_stored = len(again.surfaces())
        found = again.surface(init.id, x="-1:1:3", y="-1:1:3", batch_size=BATCH)
        assert len(again.surfaces()) == n_stored
        np.testing.assert_array_equal(found.values["train_perplexity"], surf.values["train_perplexity"])


def test_the_explorer_offers_perplexity_for_a_language_model_project(tmp_path):
    from lossviz.widget import Explorer

    s = _session(tmp_path / "lm", metrics=["perplexity"])
    w = Explorer(s, throttle=0, background=False)
    try:
        tip = s.init().id
        w.handle({"type": "surface", "center": tip, "directions": "random", "resolution": 3, "range": "-1:1"})
        assert w.error == "", w.error
        w._surface_job.wait(120)
        w._push_surface()
        assert "train_perplexity" in w.surface["metrics"]  # the dropdown's choices
        w.surface_metric = "train_perplexity"
        assert w.surface["metric"] == "train_perplexity"
        got = w._surface_job.result
        np.testing.assert_allclose(w.surface["z"], got.values["train_perplexity"])
        centre = _reference(s.model(tip), _windows())[2]
        assert got.values["train_perplexity"][1, 1] == pytest.approx(centre, rel=1e-5)
    finally:
        w.close()
        s.close()


def test_lossviz_surface_writes_perplexity_into_the_h5_file(tmp_path, capsys):
    torch.manual_seed(0)
    model = get_model("gpt", **SMALL)
    torch.save(model.state_dict(), tmp_path / "gpt.pt")
    out, dirs = tmp_path / "s.h5", tmp_path / "d.h5"
    code = main(["surface", "--model", "gpt", "--model-kwargs", json.dumps(SMALL),
                 "--model-file", str(tmp_path / "gpt.pt"), "--dataset", "tinytext",
                 "--data-kwargs", json.dumps(TEXT), "--loss", "causal_lm",
                 "--metrics", "loss,acc,perplexity", "--batch-size", str(BATCH), "--x=-1:1:3",
                 "--out", str(out), "--dir-out", str(dirs), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    with h5py.File(out, "r") as f:
        values = {k: f[k][()] for k in ("train_loss", "train_acc", "train_perplexity")}
    space = ParamSpace(model, "weights")
    d = read_directions(dirs, space).vectors[0]
    center, probe = space.vector(model), copy.deepcopy(model)
    for j in (1, 2):  # the centre and x = 1
        space.load_into(probe, center + float(np.linspace(-1, 1, 3)[j]) * d)
        loss, acc, ppl = _reference(probe, _windows())
        assert values["train_perplexity"][j] == pytest.approx(ppl, rel=1e-5)
        assert values["train_loss"][j] == pytest.approx(loss, rel=1e-5)
        assert values["train_acc"][j] == pytest.approx(acc, abs=1e-3)


@pytest.mark.parametrize("argv, words", [
    (["--metrics", "loss,ppl"], ["unknown metric 'ppl'", "loss, acc, perplexity"]),
    (["--metrics", "perplexity", "--loss", "mse"], ["--loss 'mse' is not one", "cross_entropy"]),
    (["--metrics", "perplexity", "--subsample"], ["--subsample estimates the loss and accuracy only"]),
])
def test_bad_metrics_on_the_command_line_are_refused_before_any_work(tmp_path, capsys, argv, words):
    out = tmp_path / "s.h5"
    code = main(["surface", "--model", "mlp", "--dataset", "spirals", "--data-kwargs", '{"n": 40, "n_test": 10}',
                 "--x=-1:1:3", "--out", str(out), "--no-progress", *argv])
    err = capsys.readouterr().err
    assert code == 2 and all(w in err for w in words), err
    assert not out.exists()


def test_bad_metrics_of_a_session_are_refused_before_a_project_is_made(tmp_path):
    with pytest.raises(ValueError, match=r"unknown metric 'perplexty': use 'loss', 'acc', 'perplexity'"):
        _session(tmp_path / "a", metrics=["perplexty"])
    with pytest.raises(ValueError, match=r"loss='mse' is not one"):
        Session(tmp_path / "b", model="mlp", data="spirals", data_kwargs={"n": 40}, loss="mse",
                metrics=["perplexity"], device="cpu")

    with pytest.raises(ValueError, match=r"metric 'perplexity' must be a callable .* pass the name itself"):
        _session(tmp_path / "c", metrics={"perplexity": lambda outputs, targets: outputs.sum()})
    assert not any((tmp_path / n).exists() for n in "abc")
    # a project's index naming something that is no metric name is refused (it never names code)
    with _session(tmp_path / "d", metrics=["perplexity"]) as s:
        s.store.set_meta("spec", {**s.spec, "metrics": ["mypkg.mod:fn"]})
    with pytest.raises(ValueError, match=r"index's metrics \['mypkg.mod:fn'\] are not names of"):
        Session(tmp_path / "d", device="cpu")


def test_a_connection_and_its_plane_carry_the_sessions_perplexity(tmp_path):
    windows = _windows()
    with _session(tmp_path / "lm", metrics=["perplexity"]) as s:
        a = s.init()
        b = s.disturb(a.id, 0.5, seed=1)
        res = s.connect(a.id, b.id, "bezier", epochs=1, batch_size=16, n_points=3)
        line = res["line"]["values"]
        assert line["train_perplexity"][0] == pytest.approx(_reference(s.model(a.id), windows)[2], rel=1e-5)
        assert line["train_perplexity"][-1] == pytest.approx(_reference(s.model(b.id), windows)[2], rel=1e-5)
        np.testing.assert_allclose(res["path"]["values"]["train_perplexity"],
                                   np.exp(res["path"]["values"]["train_loss"]), rtol=1e-9)
        plane = s.connect_plane(res, n=3)
        assert {"train_perplexity", "test_perplexity"} <= set(plane.values)
        np.testing.assert_allclose(plane.values["train_perplexity"], np.exp(plane.values["train_loss"]), rtol=1e-9)
