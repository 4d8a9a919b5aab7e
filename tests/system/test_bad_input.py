"""A catalogue of bad inputs (issue 7): every one is answered by an exception whose message names the
offending value or field *and* says what to do, and nothing stored changes (the SQLite rows of every
project and the bytes of every other file under the test's folder are hashed before and after).

Also here: a read-only project folder (checked as an unprivileged user, since root ignores permission
bits), the Explorer's command messages fuzzed with hypothesis against a real Explorer over a real tiny
Session, and two trainings launched on one branch at once.

Decision for two trainings launched from one checkpoint at once: both run (one after the other in one
Session's queue, side by side from two Sessions or processes); the first to store a checkpoint continues
the branch, the other starts a new branch forked at the same checkpoint (decided inside the store's write
transaction). Nothing is lost, nothing is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import sqlite3
import string
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

from lossviz.grid import SurfaceGrid, parse_axis
from lossviz.io.checkpoints import load_checkpoint_into, save_state_dict
from lossviz.io.h5 import read_directions, read_surface
from lossviz.landscape import compute_surface
from lossviz.params import ParamSpace
from lossviz.session import Session
from lossviz.store import Store

SPIRALS = {"n": 120, "n_test": 40}
HP = {"batch_size": 60, "lr": 0.05}
NAN = float("nan")


def _session(path, **kw):
    kw.setdefault("hparams", HP)
    return Session(path, model="mlp", data="spirals", data_kwargs=SPIRALS, device="cpu", **kw)


def _nonscalar_loss(outputs, targets):
    return F.cross_entropy(outputs, targets, reduction="none")


# ----------------------------------------------------------------------------------------- snapshots
def _rows(db: Path) -> dict:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        return {t: conn.execute(f'SELECT * FROM "{t}" ORDER BY rowid').fetchall() for t in tables}
    finally:
        conn.close()


def snapshot(root: Path) -> dict:
    """Every file's sha256 (SQLite indexes: their rows), every folder, under ``root``."""
    out: dict[str, Any] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.name.endswith(("-wal", "-shm", "-journal")):
            continue  # SQLite's own side files: their content is compared through the rows
        if p.is_dir():
            out[rel] = "dir"
        elif p.name == "index.sqlite":
            try:
                out[rel] = _rows(p)
            except sqlite3.DatabaseError:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# ----------------------------------------------------------------------------------------- the world
@dataclass
class World:
    root: Path
    project: Path
    session: Session
    ids: list[int]
    small_ckpt: Path  # a checkpoint of another architecture (hidden (16, 16))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("catalogue")
    s = _session(root / "proj")
    job = s.train(epochs=2)
    job.wait(120)
    assert job.state == "done", job.error
    s.surface(job.result[-1].id, x="-1:1:3", y="-1:1:3")
    from lossviz.zoo import get_model

    small = get_model("mlp", hidden=(16, 16))
    (root / "inputs").mkdir()
    save_state_dict(root / "inputs" / "small.safetensors", small.state_dict())
    # HDF5 inputs
    with h5py.File(root / "inputs" / "no_coords.h5", "w") as f:
        f["train_loss"] = np.zeros(3)
    with h5py.File(root / "inputs" / "bad_shape.h5", "w") as f:
        f["xcoordinates"] = np.linspace(-1, 1, 5)
        f["ycoordinates"] = np.linspace(-1, 1, 3)
        f["train_loss"] = np.zeros((4, 4))
    with h5py.File(root / "inputs" / "coords_only.h5", "w") as f:
        f["xcoordinates"] = np.linspace(-1, 1, 5)
    with h5py.File(root / "inputs" / "no_xdirection.h5", "w") as f:
        f["something"] = np.arange(3)
    space = ParamSpace(s.new_model(), "weights")
    with h5py.File(root / "inputs" / "bad_dirs.h5", "w") as f:
        g = f.create_group("xdirection")
        for i, e in enumerate(space.entries):
            shape = (e.shape[0] + 1, *e.shape[1:]) if i == 2 else e.shape
            g.create_dataset(str(i), data=np.zeros(shape, np.float32))
    with h5py.File(root / "inputs" / "few_dirs.h5", "w") as f:
        g = f.create_group("xdirection")
        g.create_dataset("0", data=np.zeros(space.entries[0].shape, np.float32))
    # folders that are not projects
    (root / "thesis").mkdir()
    (root / "thesis" / "chapter1.tex").write_text("\\chapter{Loss}")
    (root / "garbage").mkdir()
    (root / "garbage" / "index.sqlite").write_bytes(b"this is not SQLite " * 64)
    (root / "otherdb").mkdir()
    other = sqlite3.connect(root / "otherdb" / "index.sqlite")
    other.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
    other.execute("INSERT INTO invoices(amount) VALUES (12.5)")
    other.commit()
    other.close()
    (root / "afile").write_text("a file, not a folder")
    ids = [c.id for c in s.checkpoints()]
    w = World(root, root / "proj", s, ids, root / "inputs" / "small.safetensors")
    yield w
    s.close()


def _cli(*argv: Any) -> None:
    """Run ``lossviz ...``; a failure (exit 2) is raised as the one-line message it printed."""
    from lossviz.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main([str(a) for a in argv])
    if rc != 0:
        raise SystemExit(f"exit {rc}: {err.getvalue().strip()}")


def _open_and_close(path: Path, **kw) -> None:
    Session(path, **kw).close()


def _train(w: World, **kw) -> None:
    w.session.train(**kw)


def _nonscalar_session_train(w: World) -> None:
    s = Session(w.project, loss=_nonscalar_loss)
    try:
        s.train(from_=w.ids[-1], epochs=1)
    finally:
        s.close()


def _empty_surface(w: World) -> None:
    compute_surface(w.session.new_model(), (torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)),
                    x="-1:1:3", progress=False)


def _nonscalar_surface(w: World) -> None:
    x, y = w.session.eval_data()["train"]
    compute_surface(w.session.model(w.ids[-1]), (x, y), x="-1:1:3", loss=_nonscalar_loss, progress=False)


def _other_arch_into_model(w: World) -> None:
    load_checkpoint_into(w.session.new_model(), w.small_ckpt)


# (name, call, exception types, words the message must hold: the offending value/name, and a hint)
CATALOGUE: list[tuple[str, Callable[[World], Any], tuple, list[str]]] = [
    # --- grid specs
    ("grid 1:-1:0", lambda w: w.session.surface(w.ids[-1], x="1:-1:0"), ValueError,
     ["'1:-1:0'", "at least 1 point", "e.g. '-1:1:51'"]),
    ("grid a:b:c", lambda w: w.session.surface(w.ids[-1], x="a:b:c"), ValueError,
     ["'a:b:c'", "must be numbers", "e.g."]),
    ("grid 1:-1:5", lambda w: w.session.surface(w.ids[-1], x="1:-1:5"), ValueError,
     ["'1:-1:5'", "below max", "write e.g. '-1:1:5'"]),
    ("grid million points 1D", lambda w: parse_axis("-1:1:1000000"), ValueError,
     ["1000000 points", "use fewer points"]),
    ("grid million points 2D", lambda w: w.session.surface(w.ids[-1], x="-1:1:1000", y="-1:1:1000"), ValueError,
     ["1000000 points", "use fewer points"]),
    ("grid two fields", lambda w: SurfaceGrid.from_specs("-1:1"), ValueError, ["'-1:1'", "min:max:num"]),
    ("grid fractional count", lambda w: parse_axis("-1:1:2.5"), ValueError, ["'-1:1:2.5'", "must be an integer"]),
    ("grid nan bound", lambda w: w.session.surface(w.ids[-1], x="nan:1:3"), ValueError, ["'nan:1:3'", "finite"]),
    # --- HDF5 files missing datasets or with wrong shapes
    ("h5 no xcoordinates", lambda w: read_surface(w.root / "inputs" / "no_coords.h5"), ValueError,
     ["no_coords.h5", "'xcoordinates'", "expected"]),
    ("h5 wrong shape", lambda w: read_surface(w.root / "inputs" / "bad_shape.h5"), ValueError,
     ["'train_loss'", "(4, 4)", "expected (3, 5)"]),
    ("h5 no metric", lambda w: read_surface(w.root / "inputs" / "coords_only.h5"), ValueError,
     ["coords_only.h5", "no metric dataset", "train_loss"]),
    ("h5 no xdirection",
     lambda w: read_directions(w.root / "inputs" / "no_xdirection.h5", ParamSpace(w.session.new_model())), ValueError,
     ["'xdirection'", "expected groups"]),
    ("h5 direction shape",
     lambda w: read_directions(w.root / "inputs" / "bad_dirs.h5", ParamSpace(w.session.new_model())), ValueError,
     ["bad_dirs.h5", "shape"]),
    ("h5 too few tensors",
     lambda w: read_directions(w.root / "inputs" / "few_dirs.h5", ParamSpace(w.session.new_model())), ValueError,
     ["few_dirs.h5"]),
    ("cli info wrong shape", lambda w: _cli("info", w.root / "inputs" / "bad_shape.h5"), SystemExit,
     ["exit 2", "bad_shape.h5", "'train_loss'", "expected"]),
    ("cli plot no xcoordinates",
     lambda w: _cli("plot", w.root / "inputs" / "no_coords.h5", "--out", w.root / "inputs" / "x.html"), SystemExit,
     ["exit 2", "no_coords.h5", "xcoordinates"]),
    # --- checkpoints of another architecture, ids that do not exist
    ("ckpt other architecture", _other_arch_into_model, ValueError,
     ["small.safetensors", "'net.0.weight'", "[16, 2]", "[32, 2]", "build the model with"]),
    ("session other architecture",
     lambda w: _open_and_close(w.project, model="mlp", model_kwargs={"hidden": (16, 16)}), ValueError,
     ["'net.0.weight'", "[32, 2]", "[16, 2]", "open it with the model it was created with"]),
    ("cli model-file2 other architecture",
     lambda w: _cli("surface", "--x=-1:1:3", "--dataset", "spirals", "--data-kwargs", '{"n": 60}',
                    "--model-file2", w.small_ckpt, "--model-file", w.small_ckpt, "--out", w.root / "inputs" / "o.h5"),
     SystemExit,
     ["exit 2", "net.0.weight", "does not fit"]),
    ("checkpoint 999", lambda w: w.session.checkpoint(999), KeyError,
     ["no checkpoint 999", "list them with checkpoints()"]),
    ("train from 999", lambda w: w.session.train(from_=999), KeyError, ["no checkpoint 999", "checkpoints()"]),
    ("surface around 999", lambda w: w.session.surface(999, x="-1:1:3"), KeyError,
     ["no checkpoint 999", "checkpoints()"]),
    ("disturb 999", lambda w: w.session.disturb(999, 0.1), KeyError, ["no checkpoint 999", "checkpoints()"]),
    ("interpolate to 999", lambda w: w.session.interpolate(w.ids[0], 999, 3), KeyError,
     ["no checkpoint 999", "checkpoints()"]),
    ("model 999", lambda w: w.session.model(999), KeyError, ["no checkpoint 999", "checkpoints()"]),
    # --- hyperparameters
    ("lr negative", lambda w: _train(w, lr=-0.1), ValueError, ["lr", "-0.1", "> 0"]),
    ("lr NaN", lambda w: _train(w, lr=NAN), ValueError, ["lr", "nan", "finite"]),
    ("momentum negative", lambda w: _train(w, momentum=-0.5), ValueError, ["momentum", "-0.5", "[0, 1)"]),
    ("weight decay NaN", lambda w: _train(w, weight_decay=NAN), ValueError, ["weight_decay", "nan", "finite"]),
    ("batch size negative", lambda w: _train(w, batch_size=-3), ValueError, ["batch_size", "-3", ">= 1"]),
    ("seed negative", lambda w: _train(w, seed=-1), ValueError, ["seed", "-1", ">= 0"]),
    ("epochs zero", lambda w: _train(w, epochs=0), ValueError, ["epochs", "0", ">= 1"]),
    ("unknown optimizer", lambda w: _train(w, optimizer="adamax"), ValueError, ["'adamax'", "use one of", "sgd"]),
    ("unknown schedule", lambda w: _train(w, schedule="sometimes"), ValueError, ["'sometimes'", "use 'constant'"]),
    ("disturb NaN magnitude", lambda w: w.session.disturb(w.ids[-1], NAN), ValueError, ["magnitude", "nan", "finite"]),
    ("session lr negative (new)", lambda w: _session(w.root / "new_lr"  , hparams={"lr": -1.0}), ValueError,
     ["lr", "-1.0", "> 0"]),
    ("session unknown hparam (new)", lambda w: _session(w.root / "new_hp", hparams={"lrr": 0.1}), ValueError,
     ["'lrr'", "use ['lr'"]),
    # --- data and loss
    ("empty dataset (new)",
     lambda w: Session(w.root / "new_empty", model="mlp", data=(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))),
     ValueError,
     ["training data is empty", "give a dataset with samples"]),
    ("empty dataset surface", _empty_surface, ValueError, ["no samples", "give at least one"]),
    ("non-scalar loss training", _nonscalar_session_train, ValueError,
     ["loss returned a tensor of shape [2]", "not a scalar", "mean"]),
    ("non-scalar loss surface", _nonscalar_surface, ValueError, ["loss returned [2]", "not a scalar", "mean"]),
    ("unknown loss name", lambda w: Session(w.project, loss="hinge"), ValueError, ["'hinge'", "use one of"]),
    # --- folders that are not projects
    ("folder that is not a project",
     lambda w: _open_and_close(w.root / "thesis", model="mlp", data="spirals"), ValueError,
     ["thesis", "not a lossviz project", "'chapter1.tex'", "new or empty folder"]),
    ("index that is not SQLite", lambda w: _open_and_close(w.root / "garbage"), ValueError,
     ["garbage/index.sqlite", "not a readable lossviz index", "choose another folder"]),
    ("SQLite of something else", lambda w: _open_and_close(w.root / "otherdb", model="mlp", data="spirals"), ValueError,
     ["otherdb/index.sqlite", "invoices", "choose another folder"]),
    ("a file, not a folder", lambda w: _open_and_close(w.root / "afile", model="mlp", data="spirals"), ValueError,
     ["afile", "is a file", "choose another path"]),
    ("new project without a model", lambda w: _open_and_close(w.root / "new_nomodel"), ValueError,
     ["new_nomodel", "pass model="]),
    ("store create=False", lambda w: Store(w.root / "absent", create=False), FileNotFoundError,
     ["absent", "check the path"]),
    # --- surfaces and projections
    ("unknown directions", lambda w: w.session.surface(w.ids[-1], directions="sideways", x="-1:1:3"), ValueError,
     ["'sideways'", "use 'random'"]),
    ("unknown kind", lambda w: w.session.surface(w.ids[-1], kind="bias", x="-1:1:3"), ValueError,
     ["'bias'", "'weights' or 'states'"]),
    ("pca of one checkpoint",
     lambda w: w.session.surface(w.ids[-1], directions="pca", x="-1:1:3", y="-1:1:3", checkpoints=[w.ids[0]]),
     ValueError,
     ["PCA directions need at least 2 checkpoints", "got 1", "pass checkpoints="]),
    ("unknown projection", lambda w: w.session.project(method="umap"), ValueError, ["'umap'", "use layout"]),
]


def test_the_catalogue_has_at_least_30_entries():
    assert len(CATALOGUE) >= 30
    assert len({c[0] for c in CATALOGUE}) == len(CATALOGUE)


@pytest.mark.parametrize("name, call, exc, words", CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_bad_input_is_named_with_a_hint_and_changes_nothing(world, name, call, exc, words):
    before = snapshot(world.root)
    n_jobs = len(world.session.jobs)
    with pytest.raises(exc) as info:
        call(world)
    message = str(info.value)
    missing = [w for w in words if w not in message]
    assert not missing, f"{name}: {missing} not in the message {message!r}"
    assert "Traceback" not in message
    assert len(world.session.jobs) == n_jobs, "a job was started"
    assert snapshot(world.root) == before, f"{name} changed something stored"


# ----------------------------------------------------------------------------------------- read-only
READONLY_CHILD = textwrap.dedent(
    """
    import os, sys
    from lossviz.session import Session
    path = sys.argv[1]
    assert os.getuid() != 0
    try:
        Session(path, model="mlp", data="spirals", data_kwargs={"n": 60, "n_test": 20})
    except PermissionError as exc:
        print("ERROR", exc)
    else:
        print("OPENED")
    """
)


def _run_unprivileged(script: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(script), *args]
    if os.geteuid() == 0:  # root ignores permission bits: drop to nobody for the check
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is needed to run the read-only check as root"
        cmd = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    env = dict(os.environ, HOME="/tmp", PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)


def test_a_read_only_project_folder_is_named_and_left_as_it_was():
    base = Path(tempfile.mkdtemp(prefix="lossviz-ro-"))
    try:
        os.chmod(base, 0o755)
        s = _session(base / "proj")
        s.init()
        s.close()
        for p in [base / "proj", *(base / "proj").rglob("*")]:
            os.chmod(p, 0o555 if p.is_dir() else 0o444)
        script = base / "child.py"
        script.write_text(READONLY_CHILD)
        os.chmod(script, 0o444)
        before = snapshot(base)
        r = _run_unprivileged(script, str(base / "proj"))
        assert r.returncode == 0, r.stderr[-3000:]
        out = r.stdout.strip()
        assert out.startswith("ERROR"), out
        assert "proj" in out and "read-only" in out and "chmod -R u+w" in out and "copy the project" in out
        after = snapshot(base)
        assert after == before
    finally:
        for p in [base, *base.rglob("*")]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        shutil.rmtree(base)


# ----------------------------------------------------------------------------------------- the widget
LETTERS = st.text(alphabet=string.ascii_letters, min_size=1, max_size=8)
NOT_A_NUMBER = st.one_of(
    LETTERS, st.lists(st.integers(-3, 3), max_size=3), st.dictionaries(LETTERS, st.integers(), max_size=2),
    st.booleans(), st.sampled_from([NAN, float("inf"), float("-inf")]),
)
NOT_AN_INT = st.one_of(NOT_A_NUMBER, st.floats(0.01, 50).filter(lambda v: v != int(v)))
BAD_ID = st.one_of(NOT_AN_INT, st.integers(10_000, 10**9))  # wrong types, or ids that do not exist
NOT_TEXT = st.one_of(st.integers(), st.floats(allow_nan=False), st.lists(st.integers(), max_size=2),
                     st.dictionaries(LETTERS, st.integers(), max_size=2), st.booleans(), st.just(""))
BAD_CHOICE = st.one_of(NOT_TEXT, LETTERS.filter(lambda s: s.lower() not in
                                               ("random", "pca", "layout", "tsne", "surface")))
BAD_IDS = st.one_of(LETTERS, st.integers(), st.dictionaries(LETTERS, st.integers(), max_size=2),
                    st.lists(st.one_of(LETTERS, st.booleans(), st.just(0.5)), min_size=1, max_size=3))
BAD_POSITIVE = st.one_of(NOT_A_NUMBER, st.floats(-1e6, 0.0))
MISSING = object()

# command -> (a valid payload, {field: strategy of invalid values}, required fields)
COMMANDS = {
    "train": ({"epochs": 1, "hparams": {}},
              {"from": BAD_ID, "epochs": st.one_of(NOT_AN_INT, st.integers(-5, 0)),
               "hparams": st.one_of(LETTERS, st.lists(st.integers(), max_size=2), st.integers())},
              []),
    "disturb": ({"from": 0, "magnitude": 0.1},
                {"from": BAD_ID, "magnitude": BAD_POSITIVE, "seed": st.one_of(NOT_AN_INT, st.integers(-9, -1))},
                ["from", "magnitude"]),
    "interpolate": ({"a": 0, "b": 1, "n": 3},
                    {"a": BAD_ID, "b": BAD_ID, "n": st.one_of(NOT_AN_INT, st.integers(-5, 1))},
                    ["b"]),
    "surface": ({"center": 0, "range": "-1:1", "resolution": 3},
                {"center": BAD_ID, "directions": BAD_CHOICE,
                 "resolution": st.one_of(NOT_AN_INT, st.integers(-5, 2), st.integers(402, 10**7)),
                 "range": st.one_of(NOT_TEXT, LETTERS, st.sampled_from(["1:-1", "0:0", "a:1", "1:2:3", "nan:1"])),
                 "adaptive": st.one_of(LETTERS, st.integers(), st.just(NAN),
                                       st.dictionaries(LETTERS, st.integers(), max_size=2))},
                ["center"]),
    "project": ({"method": "layout"}, {"method": BAD_CHOICE}, ["method"]),
    "select": ({"ids": [0]}, {"ids": BAD_IDS}, ["ids"]),
    "distances": ({"ids": [0, 1]}, {"ids": BAD_IDS}, []),
    "cancel": ({}, {"job": st.one_of(NOT_AN_INT, st.integers(10**6, 10**9))}, []),
    "list_projects": ({"root": "."}, {"root": st.one_of(NOT_TEXT, LETTERS.map(lambda s: "no_such_" + s))}, []),
    "open_project": ({"path": "proj"}, {"path": st.one_of(NOT_TEXT, LETTERS.map(lambda s: "no_such_" + s))}, ["path"]),
    "create_project": ({"path": "fresh", "model": "mlp", "data": "spirals"},
                       {"model": st.one_of(NOT_TEXT, LETTERS.map(lambda s: "nomodel" + s)),
                        "data": st.one_of(NOT_TEXT, LETTERS.map(lambda s: "nodata" + s)),
                        "path": NOT_TEXT, "hparams": st.one_of(LETTERS, st.lists(st.integers(), max_size=2))},
                       ["path", "model", "data"]),
}
HPARAM_FIELDS = {"lr": BAD_POSITIVE, "momentum": st.one_of(NOT_A_NUMBER, st.floats(-10, -0.01)),
                 "weight_decay": st.one_of(NOT_A_NUMBER, st.floats(-10, -0.01)),
                 "batch_size": st.one_of(NOT_AN_INT, st.integers(-5, 0)),
                 "seed": st.one_of(NOT_AN_INT, st.integers(-9, -1)),
                 "nesterov": st.one_of(LETTERS, st.integers(), st.just(NAN)),
                 # "" is the form's "inherit this field", a valid value: not among the bad ones here
                 "optimizer": BAD_CHOICE.filter(lambda v: v != ""), "schedule": BAD_CHOICE.filter(lambda v: v != ""),
                 "colour": st.integers()}


@st.composite
def bad_messages(draw):
    kind = draw(st.sampled_from([*sorted(COMMANDS), "hparams"]))
    if kind == "hparams":  # a train command with one bad hyperparameter
        field = draw(st.sampled_from(sorted(HPARAM_FIELDS)))
        value = draw(HPARAM_FIELDS[field])
        return {"type": "train", "epochs": 1, "hparams": {field: value}}, field, value
    base, fields, required = COMMANDS[kind]
    options = sorted(fields) + [f"-{r}" for r in required]
    field = draw(st.sampled_from(options))
    msg = {"type": kind, **base}
    if field.startswith("-"):
        msg.pop(field[1:], None)
        return msg, field[1:], MISSING
    value = draw(fields[field])
    msg[field] = value
    return msg, field, value


@pytest.fixture(scope="module")
def explorer(world):
    from lossviz.widget import Explorer

    w = Explorer(world.session, throttle=0, background=False, project_root=str(world.root))
    yield w
    w.close()


def _settle(session: Session) -> None:
    for job in list(session.jobs):
        if job.state in ("queued", "running"):
            job.cancel()
            job.wait(60)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(case=bad_messages())
def test_fuzzed_widget_commands_set_the_error_trait_and_change_nothing(world, explorer, case):
    msg, field, value = case
    explorer.error = ""
    before = snapshot(world.root)
    n_jobs = len(world.session.jobs)
    cwd = os.getcwd()
    os.chdir(world.root / "inputs")  # relative paths of list_projects resolve here
    try:
        explorer._on_frontend_msg(explorer, msg, [])  # what the kernel calls: must not raise
    finally:
        os.chdir(cwd)
    started = world.session.jobs[n_jobs:]
    _settle(world.session)
    err = explorer.error
    assert err, f"{msg} was accepted"
    said = [field]
    if value is not MISSING:
        said += [repr(value), str(value)]
    assert any(s and s in err for s in said), f"{msg}: the error {err!r} names neither {field!r} nor the value"
    assert not started, f"{msg} started {started}"
    assert snapshot(world.root) == before, f"{msg} changed something stored"
    assert "Traceback" not in err


def test_widget_type_field_and_non_objects(explorer):
    for msg, words in [("train", ["must be an object", "str"]), ([1, 2], ["must be an object", "list"]),
                       ({"type": 5}, ["message type 5 is unknown", "use one of"]),
                       ({"kind": "train"}, ["message type None is unknown"])]:
        explorer._on_frontend_msg(explorer, msg, [])
        assert all(w in explorer.error for w in words), explorer.error


# ----------------------------------------------------------------------------------------- two trainings at once
def test_two_trainings_launched_on_one_branch_at_once_make_two_branches(tmp_path):
    s = _session(tmp_path / "p")
    first = s.train(epochs=1)
    first.wait(120)
    tip = first.result[-1]
    # the same session, twice at once (queued one after the other)
    a, b = s.train(from_=tip.id, epochs=2), s.train(from_=tip.id, epochs=2, lr=0.01)
    # and a second session on the same project (a second kernel), at the same time
    other = _session(tmp_path / "p")
    c = other.train(from_=tip.id, epochs=2, lr=0.02)
    for job in (a, b, c):
        job.wait(120)
        assert job.state == "done", job.error
    made = [job.result for job in (a, b, c)]
    heads = [r[0] for r in made]
    assert all(h.parent == tip.id and h.epoch == tip.epoch + 1 for h in heads)
    assert sum(h.branch == tip.branch for h in heads) == 1, "exactly one continues the branch"
    assert len({h.branch for h in heads}) == 3, "the others start branches of their own"
    for r in made:
        assert [c.epoch for c in r] == [tip.epoch + 1, tip.epoch + 2]
        assert r[1].parent == r[0].id and r[1].branch == r[0].branch
    every = s.checkpoints()
    assert len(every) == 1 + 1 + 6 and len({c.id for c in every}) == len(every)
    assert {c.id for r in made for c in r} | {tip.id, every[0].id} == {c.id for c in every}
    # the learning rates differ, so do the branches' weights
    assert not torch.equal(s.vector(made[0][-1].id), s.vector(made[1][-1].id))
    for sess in (other, s):
        sess.close()


def test_a_huge_value_is_not_echoed_back_in_the_error(world, explorer):
    from lossviz.widget.payloads import MAX_SHOWN_CHARS

    before = snapshot(world.root)
    for msg in [{"type": "train", "epochs": 1, "hparams": {"lr": "x" * 10**7}}, {"type": "y" * 10**7},
                {"type": "open_project", "path": "no_such_" + "z" * 10**7}]:
        explorer.error = ""
        explorer._on_frontend_msg(explorer, msg, [])
        err = explorer.error
        assert err and len(err) <= MAX_SHOWN_CHARS + 100, len(err)
        assert "characters left out" in err and err.split()[0] in ("lr", "message", "project"), err[:80]
        assert "Errno" not in err and "Traceback" not in err
        assert all(len(v) <= MAX_SHOWN_CHARS + 100 for v in explorer.control_errors.values())
    assert snapshot(world.root) == before
