"""Explorer's Python contract, against a small fake Session with the methods of API.md's session layer:
binary buffers (paths, dtype, shape, size, values), selection round trip, each command message -> the right
session call, bad payloads -> the ``error`` trait (never an exception), session events from worker threads.
Also: the wheel ships the built front end."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import pytest
from ipywidgets.widgets.widget import _remove_buffers

from lossviz.landscape import Surface
from lossviz.store import Checkpoint
from lossviz.training import DEFAULT_HPARAMS
from lossviz.widget import Explorer

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "src" / "lossviz" / "static" / "widget.js"


# ----------------------------------------------------------------------------------------- the fake
class FakeJob:
    _next = 100

    def __init__(self, kind, result=None, state="running"):
        FakeJob._next += 1
        self.id, self.kind, self.state, self.result = FakeJob._next, kind, state, result
        self.done, self.total, self.message, self.error = 0, 10, "", None
        self.cancelled = False
        self._finished = threading.Event()
        if state in ("done", "failed", "cancelled"):
            self._finished.set()

    @classmethod
    def running(cls, kind, fn, on_end=None):
        """A job that runs ``fn()`` on a thread of its own (as the session's quick queue does); ``on_end(job)``
        once it has ended (the session's job event)."""
        job = cls(kind, state="queued")

        def work():
            job.state = "running"
            try:
                result = fn()
            except Exception as exc:  # noqa: BLE001 - a job's failure is recorded, as the session's worker does
                job.error, job.state = f"{type(exc).__name__}: {exc}", "failed"
            else:
                if job.state != "cancelled":
                    job.result, job.state = result, "done"
            job._finished.set()
            if on_end is not None:
                on_end(job)

        threading.Thread(target=work, daemon=True).start()
        return job

    @property
    def progress(self):
        return self.done / self.total if self.total else 0.0

    def cancel(self):
        self.cancelled = True
        self.state = "cancelled"
        self._finished.set()

    def wait(self, timeout=None):
        if not self._finished.wait(timeout):
            raise TimeoutError(f"job {self.id} still {self.state}")
        return self.result


class FakeSession:
    """Checkpoints 0..4: branch 0 = 0->1->2, branch 1 = 3->4 forked at 1. Vectors are known 3-D points."""

    defaults: ClassVar[dict] = dict(DEFAULT_HPARAMS)

    def __init__(self, path="/tmp/fake-project"):
        self.path = Path(path)
        self.calls: list[tuple] = []
        self.subscribers = []
        self.jobs: list[FakeJob] = []
        self.surface_options: list[dict] = []  # surface()'s other keyword arguments, per call
        self.gates: list[threading.Event] = []  # each quick job started takes the next gate and waits for it
        self.vectors = {0: [0.0, 0, 0], 1: [1.0, 0, 0], 2: [1.0, 2, 0], 3: [1.0, 0, 3], 4: [4.0, 4, 3]}
        spec = [
            (0, None, 0, "init", 0.0),
            (1, 0, 0, "train", 1.0),
            (2, 1, 0, "train", 2.0),
            (3, 1, 1, "disturb", 1.0),
            (4, 3, 1, "train", 2.0),
        ]
        self._cks = [
            Checkpoint(
                id=i,
                parent=p,
                branch=b,
                kind=k,
                epoch=e,
                step=int(10 * e),
                hparams=dict(self.defaults, lr=0.1 * (1 + b), schedule={"name": "step", "step_size": 30, "gamma": 0.5}),
                metrics={"train_loss": 2.0 / (1 + i), "train_acc": 50.0 + i, "test_loss": 2.5 / (1 + i)},
            )
            for i, p, b, k, e in spec
        ]

    # contract methods
    def subscribe(self, cb):
        self.subscribers.append(cb)
        return lambda: self.subscribers.remove(cb)

    def emit(self, event):
        for cb in list(self.subscribers):
            cb(event)

    def checkpoints(self, branch=None):
        return [c for c in self._cks if branch is None or c.branch == branch]

    def checkpoint(self, id):
        for c in self._cks:
            if c.id == int(id):
                return c
        raise KeyError(f"no checkpoint {id}")

    def add(self, parent, branch, kind, epoch, **metrics):
        c = Checkpoint(
            id=max(c.id for c in self._cks) + 1,
            parent=parent,
            branch=branch,
            kind=kind,
            epoch=epoch,
            step=0,
            hparams=dict(self.defaults),
            metrics=metrics or {"train_loss": 0.5},
        )
        self._cks.append(c)
        self.vectors[c.id] = [float(c.id), 1.0, 1.0]
        self.emit({"type": "checkpoint", "checkpoint": c})
        return c

    def train(self, from_=None, epochs=1, **hp):
        self.calls.append(("train", from_, epochs, hp))
        if "lr" in hp and hp["lr"] > 5:
            raise ValueError(f"lr={hp['lr']} is too large for this fake: use lr <= 5")
        job = FakeJob("train")
        self.jobs.append(job)
        return job

    def _quick(self, kind, fn, wait):
        """The blocking call's result, or with ``wait=False`` a job running it (on the quick queue)."""
        if wait:
            return fn()
        gate = self.gates.pop(0) if self.gates else None

        def run():
            if gate is not None:
                gate.wait(30)
            return fn()

        job = FakeJob.running(kind, run, on_end=lambda j: self.emit({"type": "job", "job": j}))
        self.jobs.append(job)
        return job

    def disturb(self, checkpoint, magnitude, seed=None, wait=True):
        self.calls.append(("disturb", checkpoint, magnitude, seed))
        return self._quick(
            "disturb", lambda: self.add(checkpoint, 9, "disturb", self.checkpoint(checkpoint).epoch), wait
        )

    def interpolate(self, a, b, n, wait=True):
        self.calls.append(("interpolate", a, b, n))

        def run():
            out = []
            for t in np.linspace(0, 1, n):
                c = self.add(a, 7, "interpolate", 0.0, train_loss=float(1 + (t - 0.5) ** 2))
                c.hparams["interpolate"] = {"a": a, "b": b, "t": float(t)}
                out.append(c)
            return out

        return self._quick("interpolate", run, wait)

    def distances(self, ids, wait=True):
        self.calls.append(("distances", list(ids)))
        v = np.array([self.vectors[i] for i in ids], dtype=np.float64)
        return self._quick("distances", lambda: np.sqrt(((v[:, None, :] - v[None, :, :]) ** 2).sum(-1)), wait)

    def surface(self, center, directions="random", x="-1:1:21", y=None, checkpoints=None, wait=True, **kw):
        self.calls.append(("surface", center, directions, x, y, checkpoints, wait))
        self.surface_options.append(dict(kw))
        job = FakeJob("surface")
        self.jobs.append(job)
        return job

    def surfaces(self):
        return []

    def load_surface(self, key):
        raise KeyError(f"no stored surface {key!r}")

    def project(self, ids=None, method="layout", surface=None, wait=True, store=True, outliers="include"):
        self.calls.append(("project", method, surface is not None))
        self.project_options = {"store": store, "outliers": outliers}
        cks = list(self._cks) if ids is None else [self.checkpoint(i) for i in ids]

        def run():
            if method == "layout":
                coords = np.array([[c.epoch, c.branch] for c in cks], dtype=np.float64)
            elif method == "surface":
                coords = np.array([self.vectors[c.id][:2] for c in cks], dtype=np.float64) * 0.1
            else:
                coords = np.array([self.vectors[c.id][1:] for c in cks], dtype=np.float64)
            return SimpleNamespace(
                ids=[c.id for c in cks], coords=coords, method=method, meta={"explained_variance_ratio": [0.7, 0.2]}
            )

        return self._quick("project", run, wait)

    @staticmethod
    def list_projects(root):
        return [
            {
                "path": str(Path(root) / "a"),
                "name": "a",
                "model": "mlp",
                "data": "spirals",
                "n_checkpoints": 3,
                "modified": float("nan"),
            }
        ]


def make_surface(nx=7, ny=5, done_fraction=1.0):
    x = np.linspace(-1, 1, nx)
    y = np.linspace(-2, 2, ny)
    X, Y = np.meshgrid(x, y)
    loss = X**2 + 0.5 * Y**2 + 0.1  # minimum at the centre
    done = np.ones((ny, nx), bool)
    if done_fraction < 1:
        done.flat[int(done.size * done_fraction) :] = False
    return Surface(
        x=x,
        y=y,
        values={"train_loss": np.where(done, loss, np.nan), "train_acc": np.where(done, 100 - loss, np.nan)},
        done=done,
        meta={"center": 2},
    )


@pytest.fixture
def fake():
    return FakeSession()


@pytest.fixture
def widget(fake):
    w = Explorer(fake, throttle=0, background=False)
    yield w
    w.close()


def buffers_of(widget, *keys):
    state = widget.get_state(list(keys) if keys else None)
    stripped, paths, buffers = _remove_buffers(state)
    return stripped, {tuple(p): b for p, b in zip(paths, buffers, strict=True)}


def last(fake, kind):
    """The session's last call of this kind (refreshing projections interleaves project calls)."""
    return [c for c in fake.calls if c[0] == kind][-1]


def as_f32(buf):
    return np.frombuffer(bytes(buf), dtype=np.float32)


def lists_of_numbers(obj, path=()):
    """Every JSON list of more than 4 numbers in a state (arrays must travel as buffers)."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += lists_of_numbers(v, (*path, k))
    elif isinstance(obj, list):
        if len(obj) > 4 and all(isinstance(v, (int, float)) for v in obj):
            out.append(path)
        for i, v in enumerate(obj):
            out += lists_of_numbers(v, (*path, i))
    return out


# ----------------------------------------------------------------------------------------- buffers
def test_checkpoint_table_travels_as_float32_buffers(widget, fake):
    stripped, bufs = buffers_of(widget, "checkpoints")
    n = len(fake.checkpoints())
    for col in ("ids", "parents", "branches", "epochs", "kinds"):
        path = ("checkpoints", col, "view")
        assert path in bufs, f"{col} is not a binary buffer"
        assert bufs[path].nbytes == 4 * n
        assert stripped["checkpoints"][col]["dtype"] == "float32"
        assert stripped["checkpoints"][col]["shape"] == [n]
    ids = as_f32(bufs[("checkpoints", "ids", "view")])
    parents = as_f32(bufs[("checkpoints", "parents", "view")])
    assert ids.tolist() == [c.id for c in fake.checkpoints()]
    assert np.isnan(parents[0]) and parents[1:].tolist() == [0, 1, 1, 3]
    kinds = stripped["checkpoints"]["kind_names"]
    assert [kinds[int(k)] for k in as_f32(bufs[("checkpoints", "kinds", "view")])] == [
        c.kind for c in fake.checkpoints()
    ]
    loss = as_f32(bufs[("checkpoints", "metrics", "train_loss", "view")])
    np.testing.assert_allclose(loss, [c.metrics["train_loss"] for c in fake.checkpoints()], rtol=1e-6)
    assert stripped["checkpoints"]["hparams"][3]["lr"] == pytest.approx(0.2)
    assert lists_of_numbers(stripped) == []
    json.dumps(stripped, allow_nan=False)  # the JSON part is strict JSON


def test_projection_coordinates_are_an_n_by_2_buffer(widget, fake):
    stripped, bufs = buffers_of(widget, "projection")
    assert stripped["projection"]["method"] == "layout"
    assert stripped["projection"]["coords"]["shape"] == [5, 2]
    coords = as_f32(bufs[("projection", "coords", "view")]).reshape(5, 2)
    np.testing.assert_array_equal(coords, [[c.epoch, c.branch] for c in fake.checkpoints()])
    widget.projection_method = "pca"
    coords = np.asarray(widget.projection["coords"])
    np.testing.assert_array_equal(coords, [fake.vectors[i][1:] for i in range(5)])
    assert widget.projection["meta"]["explained_variance_ratio"] == [0.7, 0.2]


def test_surface_travels_as_buffers_with_nan_where_not_done(widget, fake):
    surf = make_surface(7, 5, done_fraction=0.6)
    job = FakeJob("surface")
    fake.emit({"type": "surface", "job": job, "surface": surf})
    stripped, bufs = buffers_of(widget, "surface")
    s = stripped["surface"]
    assert s["z"]["shape"] == [5, 7] and s["x"]["shape"] == [7] and s["y"]["shape"] == [5]
    assert bufs[("surface", "z", "view")].nbytes == 4 * 35
    z = as_f32(bufs[("surface", "z", "view")]).reshape(5, 7)
    X, Y = np.meshgrid(np.linspace(-1, 1, 7), np.linspace(-2, 2, 5))
    expected = np.where(surf.done, X**2 + 0.5 * Y**2 + 0.1, np.nan)
    np.testing.assert_allclose(z, expected.astype(np.float32), rtol=1e-6, equal_nan=True)
    assert s["done"] == int(surf.done.sum()) and s["total"] == 35
    # the per-point done mask travels too (one byte a point), so the preview fill can tell
    # "not computed yet" from "computed and NaN" (a diverged point: a gap)
    assert s["done_mask"]["shape"] == [5, 7] and s["done_mask"]["dtype"] == "uint8"
    mask = bufs[("surface", "done_mask", "view")]
    assert mask.nbytes == 35
    np.testing.assert_array_equal(np.frombuffer(bytes(mask), np.uint8).reshape(5, 7), surf.done.astype(np.uint8))
    assert s["progress"] == pytest.approx(surf.done.mean())
    assert s["critical"] == []  # only once complete
    assert lists_of_numbers(stripped) == []
    # complete: the minimum at the centre is found, and the metric can be switched
    fake.emit({"type": "surface", "job": job, "surface": make_surface(7, 5)})
    crit = widget.surface["critical"]
    minima = [c for c in crit if c["kind"] == "minimum"]
    assert (
        len(minima) == 1
        and minima[0]["x"] == pytest.approx(0, abs=1e-9)
        and minima[0]["y"] == pytest.approx(0, abs=1e-9)
    )
    assert minima[0]["value"] == pytest.approx(0.1)
    traj = widget.surface["trajectory"]  # projected through session.project(method="surface")
    np.testing.assert_allclose(
        np.asarray(traj["coords"]), [np.array(fake.vectors[i][:2]) * 0.1 for i in range(5)], rtol=1e-6
    )
    widget.surface_metric = "train_acc"
    z = np.asarray(widget.surface["z"])
    np.testing.assert_allclose(z, 100 - (X**2 + 0.5 * Y**2 + 0.1), rtol=1e-6)


def test_done_but_diverged_points_are_marked_done_in_the_mask(widget, fake):
    surf = make_surface(6, 4, done_fraction=0.5)
    surf.done[1, 2] = True  # computed, but the model gave NaN there (diverged)
    surf.values["train_loss"][1, 2] = np.nan
    surf.values["train_acc"][1, 2] = np.nan
    fake.emit({"type": "surface", "job": FakeJob("surface"), "surface": surf})
    stripped, bufs = buffers_of(widget, "surface")
    mask = np.frombuffer(bytes(bufs[("surface", "done_mask", "view")]), np.uint8).reshape(4, 6)
    z = as_f32(bufs[("surface", "z", "view")]).reshape(4, 6)
    assert mask[1, 2] == 1 and np.isnan(z[1, 2])  # done and NaN: a gap, not a cell to preview-fill
    assert (mask[np.isfinite(z)] == 1).all() and (mask == 0).sum() == (~surf.done).sum()
    assert stripped["surface"]["done"] == int(surf.done.sum())


def test_a_201_square_surface_is_about_four_bytes_a_point(widget, fake):
    x = np.linspace(-1, 1, 201)
    surf = Surface(
        x=x,
        y=x.copy(),
        values={"train_loss": np.add.outer(x**2, x**2)},
        done=np.ones((201, 201), bool),
        meta={"center": 0},
    )
    fake.emit({"type": "surface", "job": None, "surface": surf})
    stripped, bufs = buffers_of(widget, "surface")
    assert bufs[("surface", "z", "view")].nbytes == 201 * 201 * 4
    assert bufs[("surface", "done_mask", "view")].nbytes == 201 * 201  # the mask: one byte a point
    assert len(json.dumps(stripped)) < 20_000  # the JSON part is small; the grid is in the buffer


# ----------------------------------------------------------------------------------------- selection & form
def test_selection_round_trip(widget, fake):
    widget.selection = [4, 1, 1]
    assert widget.selection == [1, 4]
    assert widget.get_state(["selection"])["selection"] == [1, 4]
    widget.set_state({"selection": [3, 2]})  # as the front end does
    assert widget.selection == [2, 3]
    # two to 16 selected: distances computed by the session, symmetric, zero diagonal
    d = np.asarray(widget.distances["d"])
    v = np.array([fake.vectors[2], fake.vectors[3]])
    assert d[0, 1] == pytest.approx(np.linalg.norm(v[0] - v[1]), rel=1e-6)
    assert d[0, 0] == 0 and d[1, 0] == d[0, 1]
    widget.handle({"type": "select_all"})
    assert widget.selection == [0, 1, 2, 3, 4]
    widget.handle({"type": "select_none"})
    assert widget.selection == [] and widget.distances == {}


def test_clicking_fills_the_form_with_the_checkpoints_hyperparameters(widget, fake):
    widget.set_state({"clicked": 3})
    f = widget.form
    assert f["checkpoint"] == 3
    assert f["lr"] == pytest.approx(0.2) and f["optimizer"] == "sgd" and f["batch_size"] == 64
    assert f["schedule"] == "step:30:0.5"
    assert f["epochs"] == 1 and f["magnitude"] == 0.1 and f["range"] == "auto" and f["resolution"] == 21
    widget.set_state({"clicked": 99})
    assert "99" in widget.error


# ----------------------------------------------------------------------------------------- commands
def test_train_command_calls_session_train_with_parsed_hparams(widget, fake):
    widget.handle(
        {
            "type": "train",
            "from": 2,
            "epochs": 3,
            "hparams": {
                "lr": "0.05",
                "optimizer": "adam",
                "momentum": 0.5,
                "nesterov": False,
                "batch_size": 32,
                "schedule": "cosine",
                "seed": None,
                "weight_decay": 0,
            },
        }
    )
    assert widget.error == ""
    assert last(fake, "train") == (
        "train",
        2,
        3,
        {
            "lr": 0.05,
            "optimizer": "adam",
            "momentum": 0.5,
            "nesterov": False,
            "batch_size": 32,
            "schedule": "cosine",
            "weight_decay": 0.0,
        },
    )
    assert widget.jobs[-1]["kind"] == "train" and widget.jobs[-1]["state"] == "running"


def test_cancel_command_cancels_running_jobs(widget, fake):
    widget.handle({"type": "train", "from": 1, "epochs": 2, "hparams": {}})
    widget.handle({"type": "train", "from": 2, "epochs": 2, "hparams": {}})
    first, second = [j for j in fake.jobs if j.kind == "train"]  # the others: the projection's quick jobs
    widget.handle({"type": "cancel", "job": first.id})
    assert first.cancelled and not second.cancelled
    widget.handle({"type": "cancel"})
    assert second.cancelled
    widget.handle({"type": "cancel", "job": first.id})  # no longer running
    assert "not running" in widget.error


def test_disturb_interpolate_and_distances_commands(widget, fake):
    widget.handle({"type": "disturb", "from": 2, "magnitude": 0.3, "seed": 5})
    assert last(fake, "disturb") == ("disturb", 2, 0.3, 5)
    assert 5 in np.asarray(widget.checkpoints["ids"]).astype(int).tolist()  # event -> table refreshed
    widget.selection = [0, 2]
    widget.handle({"type": "interpolate", "n": 5})
    assert last(fake, "interpolate") == ("interpolate", 0, 2, 5)
    curve = widget.curves[-1]
    np.testing.assert_allclose(np.asarray(curve["x"]), np.linspace(0, 1, 5))
    np.testing.assert_allclose(
        np.asarray(curve["metrics"]["train_loss"]), 1 + (np.linspace(0, 1, 5) - 0.5) ** 2, rtol=1e-6
    )
    widget.handle({"type": "distances", "ids": [0, 1, 4]})
    assert last(fake, "distances") == ("distances", [0, 1, 4])
    assert np.asarray(widget.distances["d"])[0, 2] == pytest.approx(np.linalg.norm([4, 4, 3]), rel=1e-6)


def test_surface_command_builds_axis_specs_and_tracks_the_job(widget, fake):
    widget.handle({"type": "surface", "center": 2, "directions": "random", "range": "-0.5:1.5", "resolution": 11})
    assert last(fake, "surface") == ("surface", 2, "random", "-0.5:1.5:11", "-0.5:1.5:11", None, False)
    job = fake.jobs[-1]
    assert widget.jobs[-1]["id"] == job.id
    job.result, job.state = make_surface(5, 5), "done"
    fake.emit({"type": "job", "job": job})
    assert widget.surface["done"] == 25 and widget.surface["center"] == 2
    widget.selection = [0, 1, 2]
    widget.handle({"type": "surface", "center": 2, "directions": "pca", "range": "-1:1", "resolution": 5})
    assert last(fake, "surface")[2] == "pca" and last(fake, "surface")[5] == [0, 1, 2]


def test_adaptive_checkbox_reaches_session_surface_and_the_trait_says_adaptive(widget, fake):
    widget.handle({"type": "surface", "center": 2, "range": "-1:1", "resolution": 9, "adaptive": True})
    assert widget.error == "" and "adaptive" in widget.message
    assert last(fake, "surface")[:4] == ("surface", 2, "random", "-1:1:9") and fake.surface_options[-1] == {
        "adaptive": True
    }
    for off in ({"adaptive": False}, {"adaptive": None}, {}):  # unticked or absent: a full surface, as before
        widget.handle({"type": "surface", "center": 2, "range": "-1:1", "resolution": 9, **off})
        assert widget.error == "" and fake.surface_options[-1] == {}
    # a round of an adaptive surface: complete (interpolated), evaluated points listed in meta
    surf = make_surface(7, 5)
    evaluated = [0, 3, 6, 17, 28, 31, 34]
    surf.meta["adaptive"] = {
        "method": "refine",
        "evaluated": evaluated,
        "n_evaluated": 7,
        "fraction": 0.2,
        "rounds": 2,
        "driver": "train_loss",
        "log": None,
    }
    fake.emit({"type": "surface", "job": fake.jobs[-1], "surface": surf})
    stripped, bufs = buffers_of(widget, "surface")
    s = stripped["surface"]
    assert s["adaptive"] == {"n_evaluated": 7, "total": 35, "rounds": 2}
    assert s["done"] == s["total"] == 35 and "adaptive" not in s["meta"]  # no long index list as JSON
    assert not lists_of_numbers(stripped)
    np.testing.assert_allclose(
        as_f32(bufs[("surface", "z", "view")]).reshape(5, 7), surf.values["train_loss"].astype(np.float32)
    )
    fake.emit({"type": "surface", "job": None, "surface": make_surface(7, 5)})  # a full one: no mark
    assert widget.surface["adaptive"] is None


def test_adaptive_surface_from_a_real_session_fills_round_by_round(tmp_path):
    """The command with adaptive=True on a real (tiny) Session: every round arrives complete, the last
    one is the job's result, and fewer points were evaluated than the grid holds."""
    from lossviz.session import Session

    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    s = Session(
        tmp_path / "p",
        model="mlp",
        data="spirals",
        data_kwargs={"n": 120, "n_test": 40},
        device="cpu",
        hparams={"batch_size": 60, "lr": 0.05},
    )
    try:
        job = s.train(epochs=1)
        job.wait(120)
        assert job.state == "done", job.error
        tip = job.result[-1].id
        w = Explorer(s, throttle=0, background=False)
        seen: list[dict] = []
        w.observe(
            lambda ch: ch["new"] and seen.append({k: ch["new"][k] for k in ("adaptive", "done", "total")}),
            names="surface",
        )
        # 37 x 37: a first lattice of 13 x 13 (every 3rd point), then rounds up to a fifth of the grid
        w.handle({"type": "surface", "center": tip, "range": "-1:1", "resolution": 37, "adaptive": True})
        assert w.error == "", w.error
        sjob = w._surface_job
        sjob.wait(120)
        assert sjob.state == "done", sjob.error
        w._push_surface()
        result = sjob.result
        n_eval = result.meta["adaptive"]["n_evaluated"]
        assert n_eval == len(result.meta["adaptive"]["evaluated"]) and 13 * 13 <= n_eval <= 0.2 * 37 * 37
        assert w.surface["adaptive"] == {
            "n_evaluated": n_eval,
            "total": 37 * 37,
            "rounds": result.meta["adaptive"]["rounds"],
        }
        np.testing.assert_allclose(np.asarray(w.surface["z"]), result.values["train_loss"], rtol=1e-6)
        rounds = [e for e in seen if e["adaptive"] is not None]
        assert len(rounds) >= 2 and all(
            e["done"] == e["total"] == 37 * 37 for e in rounds
        )  # each round: the whole picture
        counts = [e["adaptive"]["n_evaluated"] for e in rounds]
        assert counts[0] == 13 * 13 and counts == sorted(counts) and counts[-1] == n_eval
        w.close()
    finally:
        s.close()


def test_project_command_and_surface_plane(widget, fake):
    widget.handle({"type": "project", "method": "surface"})
    assert "needs a surface" in widget.error
    widget.error = ""
    fake.emit({"type": "surface", "job": None, "surface": make_surface()})
    widget.handle({"type": "project", "method": "surface"})
    assert widget.error == "" and widget.projection["method"] == "surface"
    assert ("project", "surface", True) in fake.calls


def test_project_panel_commands(tmp_path, fake):
    made = []

    class Factory:
        list_projects = staticmethod(FakeSession.list_projects)

        @staticmethod
        def opening(path, **kw):
            made.append((path, kw))
            return FakeJob.running("open", lambda: FakeSession(path))

    (tmp_path / "a").mkdir()
    w = Explorer(fake, throttle=0, background=False, session_factory=Factory, project_root=tmp_path)
    w.handle({"type": "list_projects", "root": str(tmp_path)})
    assert w.projects[0]["name"] == "a" and w.projects[0]["modified"] is None  # NaN -> null
    w.handle({"type": "open_project", "path": "a"})
    assert made[-1] == (str(tmp_path / "a"), {})
    assert w.session is not fake and w.project["name"] == "a"
    assert fake.subscribers == []  # the old session is let go
    w.handle(
        {
            "type": "create_project",
            "path": "new",
            "model": "mlp",
            "data": "spirals",
            "hparams": {"lr": 0.05, "optimizer": "adam"},
        }
    )
    assert made[-1] == (
        str(tmp_path / "new"),
        {"model": "mlp", "data": "spirals", "hparams": {"lr": 0.05, "optimizer": "adam"}},
    )
    w.handle({"type": "create_project", "path": "new2"})  # the form sends its fields; a message without is refused
    assert "model must be a non-empty text" in w.control_errors["create_project"] and made[-1][0].endswith("new")
    defaults = w.options["create_defaults"]  # what the form starts at: the zoo's mlp on spirals
    w.handle({"type": "create_project", "path": "new2", **defaults})
    assert made[-1] == (str(tmp_path / "new2"), {"model": "mlp", "data": "spirals", "hparams": None})
    w.handle({"type": "create_project", "path": "new3", "model": "lenet", "data": "mnist", "data_root": str(tmp_path)})
    assert made[-1][1]["data_kwargs"] == {"root": str(tmp_path)}
    w.handle({"type": "create_project", "path": "new4", **defaults, "data_root": str(tmp_path / "nowhere")})
    assert "not a folder" in w.control_errors["create_project"] and made[-1][0].endswith("new3")
    w.handle({"type": "create_project", "path": "a", "model": "mlp", "data": "spirals"})
    assert "already exists" not in w.error  # empty folder "a" may be created into
    (tmp_path / "a" / "x").write_text("")
    w.handle({"type": "create_project", "path": "a", "model": "mlp", "data": "spirals"})
    assert "already exists" in w.error
    w.handle({"type": "open_project", "path": "missing"})
    assert "does not exist" in w.error and "does not exist" in w.control_errors["open_project"]
    w.close()


def test_export_surface_writes_an_hdf5_file_readable_back(widget, fake, tmp_path):
    from lossviz.io.h5 import read_surface

    widget.handle({"type": "export_surface"})
    assert "no surface" in widget.error
    surf = make_surface(6, 4)
    fake.emit({"type": "surface", "job": None, "surface": surf})
    sent = []
    widget.send = lambda content, buffers=None: sent.append((content, buffers))
    target = tmp_path / "out.h5"
    widget.handle({"type": "export_surface", "path": str(target)})
    back = read_surface(target)
    np.testing.assert_allclose(back.values["train_loss"], surf.values["train_loss"])
    assert sent[0][0]["type"] == "download" and bytes(sent[0][1][0]) == target.read_bytes()


# ----------------------------------------------------------------------------------------- bad payloads
@pytest.mark.parametrize(
    "payload, words",
    [
        ("not a dict", "must be an object"),
        ({"no": "type"}, "unknown"),
        ({"type": "explode"}, "unknown"),
        ({"type": "train", "from": 1, "hparams": {"lr": "abc"}}, "lr must be a number"),
        ({"type": "train", "from": 1, "hparams": {"lr": -0.1}}, "lr must be greater than 0"),
        ({"type": "train", "from": 1, "epochs": 0, "hparams": {}}, "epochs must be at least 1"),
        ({"type": "train", "from": 1, "epochs": 1.5, "hparams": {}}, "whole number"),
        ({"type": "train", "from": 1, "hparams": {"colour": 3}}, "unknown hyperparameters"),
        ({"type": "train", "from": 1, "hparams": [1, 2]}, "hparams must be an object"),
        ({"type": "train", "from": 1, "hparams": {"lr": 10}}, "too large"),  # the session's own error
        ({"type": "disturb", "from": 1, "magnitude": 0}, "magnitude must be greater than 0"),
        ({"type": "disturb", "magnitude": 0.1}, "from is missing"),
        ({"type": "interpolate", "n": 3}, "exactly two selected"),
        ({"type": "interpolate", "a": 0, "b": 1, "n": 1}, "n must be at least 2"),
        ({"type": "surface", "center": 1, "range": "1:-1"}, "max must be greater than min"),
        ({"type": "surface", "center": 1, "range": "a:b"}, "not min:max"),
        ({"type": "surface", "center": 1, "resolution": 1000}, "at most 401"),
        ({"type": "surface", "center": 1, "directions": "sideways"}, "unknown"),
        ({"type": "surface", "center": 1, "directions": "pca"}, "at least 3 selected"),
        ({"type": "surface", "center": 1, "adaptive": "yes"}, "adaptive must be true or false, got 'yes'"),
        ({"type": "surface", "center": 1, "adaptive": 1}, "adaptive must be true or false, got 1"),
        ({"type": "surface", "center": 1, "adaptive": {"rtol": 0.1}}, "adaptive must be true or false"),
        ({"type": "project", "method": "umap"}, "unknown"),
        ({"type": "select", "ids": "1,2"}, "list of checkpoint ids"),
        ({"type": "distances", "ids": [1]}, "distances need 2"),
        ({"type": "list_projects", "root": "/no/such/folder"}, "does not exist"),
    ],
)
def test_bad_payloads_set_the_error_trait_and_call_nothing(widget, fake, payload, words):
    n_calls = len([c for c in fake.calls if c[0] != "project"])
    widget._on_frontend_msg(widget, payload, [])  # must not raise
    assert words in widget.error
    calls = [c for c in fake.calls if c[0] != "project"]
    assert len(calls) == n_calls + (1 if "too large" in words else 0)
    widget.handle({"type": "clear_error"})
    assert widget.error == ""


def test_the_options_trait_carries_the_shared_constants_and_the_validators_read_them(widget):
    from lossviz import figures
    from lossviz.widget.options import LIMITS, explorer_options

    assert widget.options == explorer_options()
    widget.levels = 10**6
    assert widget.levels == LIMITS["levels_max"]
    widget.levels = -3
    assert widget.levels == LIMITS["levels_min"]
    for mode in figures.CONTOUR_MODES:
        widget.contour_mode = mode
    widget.handle({"type": "surface", "center": 1, "resolution": LIMITS["resolution_max"] + 1})
    assert f"at most {LIMITS['resolution_max']}" in widget.error


def test_view_option_traits_validate(widget):
    widget.levels = 1
    assert widget.levels == 2
    widget.levels = 10_000
    assert widget.levels == 200
    with pytest.raises(Exception, match="contour_mode"):
        widget.contour_mode = "wireframe"
    with pytest.raises(Exception, match="projection"):
        widget.projection_method = "umap"


# ----------------------------------------------------------------------------------------- events from threads
# ----------------------------------------------------------------------------------------- long work as session jobs
def test_long_work_runs_as_session_jobs_listed_with_their_state(widget, fake):
    widget.selection = [0, 2]  # distances at once
    widget.handle({"type": "disturb", "from": 2, "magnitude": 0.3})
    widget.handle({"type": "interpolate", "a": 0, "b": 2, "n": 3})
    widget.handle({"type": "project", "method": "pca"})
    kinds = {j["kind"] for j in widget.jobs}
    assert {"distances", "disturb", "interpolate", "project"} <= kinds
    assert all(j["state"] == "done" for j in widget.jobs if j["kind"] != "train")
    assert {j.id for j in fake.jobs} >= {j["id"] for j in widget.jobs}  # the session's own jobs


def test_a_job_that_fails_says_what_failed_in_the_error_trait(widget, fake):
    widget.handle({"type": "disturb", "from": 99, "magnitude": 0.3})
    assert widget.error.startswith("disturbing checkpoint 99 failed:") and "no checkpoint 99" in widget.error
    assert [j["state"] for j in widget.jobs if j["kind"] == "disturb"] == ["failed"]


def test_in_the_background_a_command_returns_at_once_and_its_result_comes_later(fake):
    w = Explorer(fake, throttle=0, background=True)
    try:
        gate = threading.Event()
        fake.gates = [gate]
        w.handle({"type": "interpolate", "a": 0, "b": 2, "n": 4})
        assert w.error == "" and w.curves == []
        assert [j["state"] for j in w.jobs if j["kind"] == "interpolate"] in (["queued"], ["running"])
        with pytest.raises(TimeoutError, match="interpolating 0 -> 2"):
            w.wait_idle(timeout=0.2)
        gate.set()
        w.wait_idle()
        assert len(w.curves) == 1 and np.asarray(w.curves[0]["x"]).tolist() == [0, 1 / 3, 2 / 3, 1]
        assert [j["state"] for j in w.jobs if j["kind"] == "interpolate"] == ["done"]
    finally:
        w.close()


def test_a_cancelled_job_applies_nothing(fake):
    w = Explorer(fake, throttle=0, background=True)
    try:
        gate = threading.Event()
        fake.gates = [gate]
        w.handle({"type": "interpolate", "a": 0, "b": 2, "n": 4})
        (job,) = [j for j in fake.jobs if j.kind == "interpolate"]
        w.handle({"type": "cancel", "job": job.id})
        w.wait_idle()
        gate.set()
        assert job.cancelled and w.curves == [] and "cancelled" in w.message
    finally:
        w.close()


def test_a_later_request_supersedes_an_earlier_one(fake):
    w = Explorer(fake, throttle=0, background=True)
    try:
        slow = threading.Event()
        fake.gates = [slow]  # the first distances job waits; the second one ends first
        w.selection = [0, 1]
        w.selection = [0, 4]
        deadline = time.monotonic() + 10
        while not w.distances and time.monotonic() < deadline:  # the second one's result arrives
            time.sleep(0.01)
        assert np.asarray(w.distances["ids"]).tolist() == [0, 4]
        slow.set()
        w.wait_idle()
        assert np.asarray(w.distances["ids"]).tolist() == [0, 4]  # the older result is not applied
        assert np.asarray(w.distances["d"])[0, 1] == pytest.approx(np.linalg.norm([4, 4, 3]), rel=1e-6)
    finally:
        w.close()


def test_running_jobs_stay_listed_however_many_finish(widget, fake):
    from lossviz.widget.options import LIMITS

    widget.handle({"type": "train", "from": 1, "epochs": 2, "hparams": {}})
    for _ in range(LIMITS["max_jobs_shown"] + 5):
        widget.handle({"type": "disturb", "from": 1, "magnitude": 0.1})  # each a job the user started
    listed = widget.jobs
    assert [j["kind"] for j in listed if j["state"] == "running"] == ["train"]
    assert len([j for j in listed if j["state"] == "done"]) == LIMITS["max_jobs_shown"]


def test_view_refreshes_are_not_listed_once_they_end_well(widget, fake):
    """A projection job runs after every new checkpoint: listed while it runs, then dropped, so a long
    training run does not fill the jobs panel with finished refreshes."""
    widget.handle({"type": "disturb", "from": 1, "magnitude": 0.1})
    for _ in range(5):
        widget.handle({"type": "refresh"})  # each a projection job
    widget.wait_idle()
    time.sleep(0.3)  # the coalesced job list is pushed
    listed = widget.jobs
    assert [j["kind"] for j in listed if j["state"] == "done"] == ["disturb"]


def test_session_events_from_worker_threads_update_traits(fake):
    w = Explorer(fake, throttle=0.05, background=True)
    try:

        def worker():
            for _ in range(5):
                fake.add(4, 1, "train", 3.0)

        th = threading.Thread(target=worker)
        th.start()
        th.join()
        w.wait_idle()
        assert int(w.checkpoints["n"]) == 10
        assert np.asarray(w.projection["ids"]).shape == (10,)
        # a diverged checkpoint and a failed job are reported in words
        c = fake.add(4, 1, "train", 4.0)
        c.status = "diverged"
        fake.emit({"type": "checkpoint", "checkpoint": c})
        assert "diverged" in w.error and "lower the learning rate" in w.error
        job = FakeJob("surface", state="failed")
        job.error = "3 points not computed"
        fake.emit({"type": "job", "job": job})
        assert "surface job" in w.error and "3 points not computed" in w.error
        fake.emit({"type": "error", "message": "training job 7: loss is nan"})
        assert w.error == "training job 7: loss is nan"
        # background command: disturb runs on the worker, result appears after wait_idle
        w.handle({"type": "disturb", "from": 1, "magnitude": 0.5})
        w.wait_idle()
        assert ("disturb", 1, 0.5, None) in fake.calls
        assert int(w.checkpoints["n"]) == 12
    finally:
        w.close()


# ----------------------------------------------------------------------------------------- packaging
def test_wheel_contains_the_built_front_end(tmp_path):
    assert BUNDLE.exists(), "build the front end first: npm install && npm run build"
    size = BUNDLE.stat().st_size
    assert 100_000 < size <= 2_000_000, f"bundle is {size} bytes; the budget is 2 MB"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (wheel,) = tmp_path.glob("lossviz-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert "lossviz/static/widget.js" in names and "lossviz/static/widget.css" in names
        assert z.getinfo("lossviz/static/widget.js").file_size == size
        assert "lossviz/widget/__init__.py" in names and "lossviz/widget/explorer.py" in names


# ----------------------------------------------------------------------------------------- figures.py
def test_contour_and_3d_figures_carry_the_surface_and_lift_the_trajectory(fake):
    from lossviz import figures

    surf = make_surface(7, 5)
    traj = SimpleNamespace(ids=[2, 1], coords=np.array([[0.5, 1.0], [-0.25, 0.0]]))
    fig = figures.contour_figure(surf, mode="lines", levels=5, trajectory=traj)
    c = fig.data[0]
    assert c.type == "contour" and c.contours.coloring == "lines"
    np.testing.assert_allclose(np.asarray(c.z), surf.values["train_loss"])
    assert c.contours.size == pytest.approx((c.zmax - c.zmin) / 4)
    t = next(d for d in fig.data if d.name == "trajectory")
    assert list(t.customdata) == [1, 2] and list(t.x) == [-0.25, 0.5]  # sorted by id
    assert [d.name for d in fig.data if d.name == "minimum"] == ["minimum"]
    log = figures.contour_figure(surf, mode="heatmap", log=True)
    np.testing.assert_allclose(np.asarray(log.data[0].z), np.log10(surf.values["train_loss"]))
    f3 = figures.surface3d_figure(surf, trajectory=traj)
    lifted = next(d for d in f3.data if d.type == "scatter3d")
    X = lambda a, b: a**2 + 0.5 * b**2 + 0.1  # noqa: E731
    # the lifted point is the bilinear interpolation of the grid, which is exact on grid lines for x^2 + ...
    # only at nodes: (1/3, 1) is a node of the 7 x 5 grid
    assert lifted.z[0] == pytest.approx(figures.bilinear(surf.x, surf.y, surf.values["train_loss"], -0.25, 0.0))
    assert figures.bilinear(surf.x, surf.y, surf.values["train_loss"], 1 / 3, 1.0) == pytest.approx(X(1 / 3, 1.0))
    with pytest.raises(ValueError, match="mode"):
        figures.contour_figure(surf, mode="wire")
    with pytest.raises(ValueError, match="metric"):
        figures.contour_figure(surf, metric="nope")


def test_trajectory_metrics_and_line_figures(fake):
    from lossviz import figures

    proj = fake.project(method="layout")
    fig = figures.trajectory_figure(fake.checkpoints(), proj, selection=[1, 4])
    lines = [d for d in fig.data if d.mode == "lines"]
    b1 = next(d for d in lines if d.name == "branch 1")
    assert list(b1.x) == [1.0, 1.0, 2.0] and list(b1.y) == [0.0, 1.0, 1.0]  # from parent 1 (epoch 1, lane 0)
    sel = next(d for d in fig.data if d.name == "selected")
    assert len(sel.x) == 2
    m = figures.metrics_figure(fake.checkpoints(), selection=[2])
    train = next(d for d in m.data if d.name == "train_loss · branch 0")
    assert list(train.y) == pytest.approx([2.0, 1.0, 2.0 / 3])
    x = np.linspace(-1, 1, 9)
    s1 = Surface(x=x, y=None, values={"train_loss": x**2}, done=np.ones(9, bool))
    lf = figures.line_figure(s1, curves=[{"name": "a → b", "x": [0, 1], "metrics": {"train_loss": [1.0, 2.0]}}])
    np.testing.assert_allclose(np.asarray(lf.data[0].y), x**2)
    assert lf.data[1].name == "a → b"


def test_open_with_a_relative_root_never_looks_in_root_slash_root(tmp_path, fake, monkeypatch):
    """The list gives paths that start with the root ("runs/a"): opening one opens runs/a, not runs/runs/a;
    a bare name opens it under the root."""
    made = []

    class Factory:
        list_projects = staticmethod(FakeSession.list_projects)

        @staticmethod
        def opening(path, **kw):
            made.append(path)
            return FakeJob.running("open", lambda: FakeSession(path))

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "a").mkdir(parents=True)
    w = Explorer(fake, throttle=0, background=False, session_factory=Factory, project_root="runs")
    try:
        w.handle({"type": "list_projects"})
        listed = w.projects[0]["path"]
        assert listed == str(Path("runs") / "a")
        w.handle({"type": "open_project", "path": listed})
        assert w.error == "" and made[-1] == str(Path("runs") / "a")
        w.project_root = "runs"
        w.handle({"type": "open_project", "path": "a"})
        assert made[-1] == str(Path("runs") / "a")
        assert w.control_errors == {}
    finally:
        w.close()
