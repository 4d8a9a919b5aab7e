"""lossviz.widget.views: the view models the Explorer's traits hold, built from plain objects."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from lossviz.landscape import Surface
from lossviz.store import Checkpoint
from lossviz.widget import views
from lossviz.widget.options import FORM_EXTRAS, TRAIN_KEYS


def ckpt(i, **kw):
    base = {
        "id": i,
        "parent": None,
        "branch": 0,
        "kind": "train",
        "epoch": float(i),
        "step": i,
        "hparams": {},
        "metrics": {"train_loss": 1.0 / (1 + i)},
    }
    return Checkpoint(**{**base, **kw})


def test_schedule_text_round_trips_through_training_parser():
    from lossviz.training import normalize_schedule

    for s in (
        {"name": "constant"},
        {"name": "step", "step_size": 30, "gamma": 0.5},
        {"name": "multistep", "milestones": [150, 225], "gamma": 0.1},
        {"name": "cosine", "t_max": 200, "eta_min": 0.0},
    ):
        assert normalize_schedule(views.schedule_text(s)) == normalize_schedule(s)
    assert views.schedule_text(None) == "constant" and views.schedule_text("cifar") == "cifar"


def test_checkpoint_table_of_nothing():
    t = views.checkpoint_table([])
    assert t["n"] == 0 and t["ids"].shape == (0,) and t["metrics"] == {}


def test_checkpoint_table_columns_and_kinds():
    cks = [
        ckpt(0, kind="init"),
        ckpt(1, parent=0, metrics={"train_loss": 0.5, "zeta": "n/a"}),
        ckpt(2, parent=1, kind="custom", metrics={"test_acc": 90}),
    ]
    t = views.checkpoint_table(cks)
    assert t["kind_names"][-1] == "custom" and [t["kind_names"][int(k)] for k in t["kinds"]] == [
        "init",
        "train",
        "custom",
    ]
    assert np.isnan(t["parents"][0]) and t["parents"][1:].tolist() == [0, 1]
    assert list(t["metrics"]) == ["train_loss", "test_acc", "zeta"]  # the standard ones first, then the rest sorted
    assert np.isnan(t["metrics"]["zeta"][1]) and np.isnan(t["metrics"]["train_loss"][2])
    assert all(col.dtype == np.float32 for col in t["metrics"].values())


def test_form_values_take_the_checkpoints_hparams_then_the_defaults_and_keep_the_users_extras():
    defaults = dict.fromkeys(TRAIN_KEYS) | {"lr": 0.1, "optimizer": "sgd"}
    first = views.form_values(3, {"lr": 0.2, "schedule": {"name": "step", "step_size": 30, "gamma": 0.5}}, defaults, {})
    assert first["checkpoint"] == 3 and first["lr"] == 0.2 and first["optimizer"] == "sgd"
    assert first["schedule"] == "step:30:0.5" and {k: first[k] for k in FORM_EXTRAS} == FORM_EXTRAS
    again = views.form_values(4, {}, defaults, {**first, "epochs": 7, "range": "-2:2"})
    assert again["epochs"] == 7 and again["range"] == "-2:2" and again["lr"] == 0.1 and again["schedule"] == "constant"


def test_jobs_shown_keep_every_running_job_and_the_last_finished_ones():
    jobs = [SimpleNamespace(id=i, state="running" if i in (1, 5) else "done") for i in range(1, 31)]
    shown = views.jobs_shown(reversed(jobs), 3)
    assert [j.id for j in shown] == [1, 5, 28, 29, 30]
    hidden = views.jobs_shown(jobs, 3, hidden=lambda j: j.id % 2 == 0)  # running ones are never hidden
    assert [j.id for j in hidden] == [1, 5, 25, 27, 29]
    info = views.job_info(
        SimpleNamespace(
            id=1,
            kind="project",
            state="failed",
            progress=float("nan"),
            done=0,
            total=0,
            message=None,
            error="boom",
            description="the pca projection",
        )
    )
    assert info["progress"] is None and info["message"] == "" and info["error"] == "boom"


def test_interpolation_curve_reads_t_from_the_checkpoints():
    made = [
        ckpt(i, hparams={"interpolate": {"t": t}}, metrics={"train_loss": 1 + t}) for i, t in enumerate((0, 0.25, 1))
    ]
    curve = views.interpolation_curve(3, 4, made)
    assert curve["name"] == "3 → 4" and curve["x"].tolist() == [0, 0.25, 1]
    np.testing.assert_allclose(curve["metrics"]["train_loss"], [1, 1.25, 2])
    evenly = views.interpolation_curve(3, 4, [ckpt(i) for i in range(3)])
    assert evenly["x"].tolist() == [0, 0.5, 1]


def test_surface_view_fills_gaps_and_marks_what_is_computed():
    x = np.linspace(-1, 1, 5)
    loss = np.add.outer(x**2, x**2)
    done = np.ones((5, 5), bool)
    done[4] = False
    surf = Surface(
        x=x,
        y=x.copy(),
        values={"train_loss": np.where(done, loss, np.nan)},
        done=done,
        meta={"center": 2, "trajectory": {"ids": [0], "coords": [[0.1, 0.2]]}},
    )
    v = views.surface_view(surf, "nope", job=7)
    assert v["metric"] == "train_loss" and v["job"] == 7 and v["done"] == 20 and v["total"] == 25
    assert v["critical"] == [] and v["trajectory"] is None and "trajectory" not in v["meta"]
    assert v["done_mask"].dtype == np.uint8 and v["done_mask"][4].sum() == 0
    assert views.stored_trajectory(surf.meta)["coords"].tolist() == [[pytest.approx(0.1), pytest.approx(0.2)]]
    surf.done[:] = True
    surf.values["train_loss"] = loss
    full = views.surface_view(surf, "train_loss")
    minima = [c for c in full["critical"] if c["kind"] == "minimum"]
    assert len(minima) == 1 and minima[0]["x"] == pytest.approx(0, abs=1e-9)
    assert views.surface_view(Surface(x=x, y=None, values={}, done=np.zeros(5, bool)), "train_loss") is None


def test_projection_and_distances_views():
    p = views.projection_view("pca", SimpleNamespace(ids=[1, 2], coords=np.ones((2, 2)), meta={"r": np.float64(0.5)}))
    assert p["ids"].dtype == np.float32 and p["coords"].shape == (2, 2) and p["meta"] == {"r": 0.5}
    assert views.empty_projection("layout")["coords"].shape == (0, 2)
    d = views.distances_view([1, 2], [[0, 1], [1, 0]])
    assert d["d"].dtype == np.float32 and d["ids"].tolist() == [1, 2]
    with pytest.raises(ValueError, match="shape"):
        views.distances_view([1, 2, 3], np.zeros((2, 2)))


def test_time_label_says_step_only_for_a_project_logged_by_steps():
    by_steps = [ckpt(i, epoch=float(100 * i), step=100 * i) for i in range(3)]  # Session.log(step=) sets epoch = step
    assert views.checkpoint_table(by_steps)["time_label"] == "step"
    by_epochs = [ckpt(0, epoch=0.0, step=0), ckpt(1, epoch=1.0, step=32), ckpt(2, epoch=2.0, step=64)]
    assert views.checkpoint_table(by_epochs)["time_label"] == "epoch"
    assert views.time_label([ckpt(0, epoch=0.0, step=0), ckpt(1, epoch=0.0, step=0)]) == "epoch"  # no step > 0
    no_step = [{"id": 0, "epoch": 5.0}, {"id": 1, "epoch": 6.0, "step": 6}]
    assert views.time_label(no_step) == "epoch" and views.time_label([]) == "epoch"


def test_a_session_logged_by_steps_has_a_step_time_axis(tmp_path):
    from lossviz import Session

    session = Session(tmp_path / "p", model="mlp", data="spirals", eval_samples=64)
    model = session.new_model()
    for step in (0, 50, 100):
        session.log(model, step=step, metrics={"train_loss": 1.0})
    assert views.checkpoint_table(session.checkpoints())["time_label"] == "step"
    session.log(model, epoch=3.0, step=120, metrics={"train_loss": 1.0})  # an epoch that is not its step
    assert views.checkpoint_table(session.checkpoints())["time_label"] == "epoch"
