"""Divergence (issue 7): NaN and ±inf losses during training and on surfaces are stored as such (NaN stays
NaN, inf stays inf, through SQLite and HDF5), drawn as gaps (the widget's float32 buffers carry NaN there;
plotly figures get null), and left out of colour scales (limits are the min/max of the finite values);
nothing crashes.

Ground truth is analytic: a bias-free linear model ``o = w·x`` on the unit vectors with target 0 and the
loss ``mean(o²) = |w|²/n``, mapped to NaN on one band of ``|w|`` and to +inf beyond it."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lossviz import figures
from lossviz.directions import DirectionSet
from lossviz.io.h5 import read_surface, write_surface
from lossviz.landscape import compute_surface
from lossviz.session import Session
from lossviz.store import Store
from lossviz.widget import Explorer, checkpoint_table, wire_array

ROOT = Path(__file__).resolve().parents[2]
NAN_BAND, INF_FROM = 0.6, 1.0  # loss in (0.6, 1.0] -> NaN, loss > 1.0 -> +inf


def banded_loss(outputs, targets):
    v = ((outputs - targets) ** 2).mean()
    nan_band = torch.where(v > NAN_BAND, torch.full_like(v, math.nan), v)
    return torch.where(v > INF_FROM, torch.full_like(v, math.inf), nan_band)


def truth(loss: np.ndarray) -> np.ndarray:
    return np.where(loss > INF_FROM, np.inf, np.where(loss > NAN_BAND, np.nan, loss))


def _linear_2d() -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.2, -0.1]]))
    x = torch.eye(2)
    return model, (x, torch.zeros(2, 1))


@pytest.fixture(scope="module")
def surface():
    model, data = _linear_2d()
    ds = DirectionSet([torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])], kind="weights",
                      normalization=None, ignore=None, method="custom")
    surf = compute_surface(model, data, ds, x="-1.5:1.5:13", y="-1.5:1.5:11", loss=banded_loss, metrics=("loss",),
                           progress=False, chunk_size=7)
    X, Y = np.meshgrid(surf.x, surf.y)
    exact = truth(((0.2 + X) ** 2 + (-0.1 + Y) ** 2) / 2)
    return surf, exact


def test_surface_values_are_stored_as_nan_and_inf(surface, tmp_path):
    surf, exact = surface
    z = surf.values["train_loss"]
    assert surf.done.all() and surf.complete
    assert np.isnan(exact).any() and np.isposinf(exact).any() and np.isfinite(exact).any()
    np.testing.assert_array_equal(np.isnan(z), np.isnan(exact))
    np.testing.assert_array_equal(np.isposinf(z), np.isposinf(exact))
    fin = np.isfinite(exact)
    np.testing.assert_allclose(z[fin], exact[fin], rtol=1e-6)
    write_surface(tmp_path / "s.h5", surf)
    back = read_surface(tmp_path / "s.h5")
    assert back.done.all()  # diverged points are computed points, not missing ones
    np.testing.assert_array_equal(back.values["train_loss"], z)  # NaN == NaN and inf == inf here


def test_the_widget_draws_them_as_gaps_and_the_figures_leave_them_out_of_colour_scales(surface, tmp_path):
    surf, exact = surface
    s = Session(tmp_path / "p", model=lambda: nn.Linear(2, 1, bias=False), data=(torch.eye(2), torch.zeros(2, 1)),
                loss="mse")
    w = Explorer(s, throttle=0, background=False, surface=surf)
    payload = w.surface
    assert payload["done"] == payload["total"] == exact.size
    buf = wire_array(payload["z"])
    assert buf["dtype"] == "float32" and buf["shape"] == list(exact.shape)
    z32 = np.frombuffer(bytes(buf["view"]), dtype=np.float32).reshape(exact.shape)
    np.testing.assert_array_equal(np.isnan(z32), ~np.isfinite(exact))  # NaN and inf: gaps
    np.testing.assert_allclose(z32[np.isfinite(exact)], exact[np.isfinite(exact)], rtol=1e-6)
    for p in payload["critical"]:  # computed on the finite part, without a crash
        assert math.isfinite(p["value"])
    w.close()
    s.close()
    lo, hi = float(np.min(exact[np.isfinite(exact)])), float(np.max(exact[np.isfinite(exact)]))
    for mode in ("filled", "lines", "heatmap"):
        fig = figures.contour_figure(surf, mode=mode)
        tr = fig.data[0]
        assert tr.zmin == pytest.approx(lo) and tr.zmax == pytest.approx(hi)
        zz = np.asarray(tr.z, dtype=float)
        np.testing.assert_array_equal(np.isnan(zz), ~np.isfinite(exact))  # NaN in the figure: a gap
        fig.to_json()  # serializes
    logged = figures.contour_figure(surf, log=True).data[0]
    assert logged.zmin == pytest.approx(math.log10(lo)) and logged.zmax == pytest.approx(math.log10(hi))
    fig3 = figures.surface3d_figure(surf).data[0]
    assert fig3.cmin == pytest.approx(lo) and fig3.cmax == pytest.approx(hi)
    np.testing.assert_array_equal(np.isnan(np.asarray(fig3.z, float)), ~np.isfinite(exact))


def test_the_front_end_colour_scale_and_fill_skip_non_finite_values():
    node = shutil.which("node")
    assert node is not None, "node is needed for the front-end check: install Node.js >= 20"
    script = (
        "import { colourLimits, finiteRange } from './js/grids.js';"
        "import { displayValues } from './js/contour.js';"
        "const z = new Float32Array([1, NaN, Infinity, 3, -Infinity, 2]);"
        "const done = displayValues({ z: { data: z, shape: [2, 3] }, done: 6, total: 6 }, false).data;"
        "console.log(JSON.stringify({ lim: colourLimits(z), log: colourLimits(z, { log: true }),"
        " range: finiteRange(z), gaps: Array.from(done, (v) => Number.isNaN(v)) }));"
    )
    r = subprocess.run([node, "--input-type=module", "-e", script], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["lim"] == [1, 3] and out["range"] == [1, 3]
    assert out["log"] == [0, pytest.approx(math.log10(3))]
    assert out["gaps"] == [False, True, False, False, False, False]  # a complete surface keeps its NaN gaps


def test_training_that_diverges_stores_nan_and_inf_and_nothing_crashes(tmp_path):
    scale = {"v": 1.0}

    def scaled(outputs, targets):
        return F.cross_entropy(outputs, targets) * scale["v"]

    x = torch.randn(40, 2, generator=torch.Generator().manual_seed(0))
    y = (x[:, 0] > 0).long()
    s = Session(tmp_path / "p", model=lambda: nn.Linear(2, 2), data=(x, y), loss=scaled,
                hparams={"lr": 0.1, "batch_size": 20})
    events = []
    s.subscribe(events.append)
    w = Explorer(s, throttle=0, background=False)
    ok = s.train(epochs=1)
    ok.wait(60)
    assert ok.state == "done"
    tip = ok.result[-1]
    made = {}
    for value in (math.inf, math.nan):
        scale["v"] = value
        job = s.train(from_=tip.id, epochs=2)
        job.wait(60)
        assert job.state == "failed" and ("inf" in job.error or "nan" in job.error)
        assert "lower the learning rate" in job.error
        made[value if math.isinf(value) else "nan"] = job.result[-1]
    scale["v"] = 1.0
    w.wait_idle()
    assert "lower the learning rate" in w.error and "nan" in w.error  # the last failure, in words
    assert any(e["type"] == "error" for e in events)
    s.close()
    # reopened from disk: the metrics are stored as such
    store = Store(tmp_path / "p")
    by_id = {c.id: c for c in store.checkpoints()}
    inf_c, nan_c = by_id[made[math.inf].id], by_id[made["nan"].id]
    assert inf_c.status == nan_c.status == "diverged"
    assert inf_c.metrics["train_loss"] == math.inf and math.isnan(nan_c.metrics["train_loss"])
    assert math.isfinite(by_id[tip.id].metrics["train_loss"])
    ckpts = store.checkpoints()
    store.close()
    # the widget's table: float32 buffers carrying inf/NaN (the front end's scales use finite values only)
    table = checkpoint_table(ckpts)
    col = np.frombuffer(bytes(wire_array(table["metrics"]["train_loss"])["view"]), dtype=np.float32)
    ids = [c.id for c in ckpts]
    assert np.isposinf(col[ids.index(inf_c.id)]) and np.isnan(col[ids.index(nan_c.id)])
    assert table["status"][ids.index(inf_c.id)] == "diverged"
    fig = figures.metrics_figure(ckpts)
    ys = [float(v) for tr in fig.data if "train_loss" in (tr.name or "") for v in tr.y]
    assert any(math.isinf(v) for v in ys) and any(math.isnan(v) for v in ys)
    fig.to_json()  # plotly.js draws non-numeric (NaN, inf) points as gaps
    w.close()
