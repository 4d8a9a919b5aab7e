"""The catalogue of untrusted input (issue 13): every case is refused with a message that says why and
what to do, and nothing stored changes (the folder's files are hashed before and after; the index by
its tables' rows, so that SQLite's own housekeeping of its WAL files does not count as a change).

Cases: a folder whose index was lost (missing, emptied), an index naming files outside the project or
code to import (a ``package.module:factory`` model or data set), a weight file changed behind the
index, a full disk during a surface save, ``Session(...)`` given a device, labels or inputs that do
not fit (no folder is left behind), a checkpoint of another project or of a copy that went its own
way, degenerate requests (zero, NaN and centre directions, disturbing by 0, interpolating a checkpoint
with itself), a surface file declaring a 10^6 x 10^6 grid, and
``lossviz surface --plot --metric nosuch``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from lossviz import cli
from lossviz.session import Session

pytestmark = pytest.mark.system
SPIRALS = {"n": 80, "n_test": 20}
KW = dict(model="mlp", data="spirals", data_kwargs=SPIRALS, device="cpu", hparams={"batch_size": 40, "lr": 0.05})


# ------------------------------------------------------------------------------------------ helpers
def stored_state(root: Path) -> dict:
    """Every file under ``root`` by its sha256, the index by its tables' rows (its -wal and -shm
    files are SQLite's housekeeping); a missing ``root`` is ``{}``."""
    out: dict = {}
    if not root.exists():
        return out
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.name.endswith(("-wal", "-shm")):
            continue
        if p.is_dir():
            out[rel] = "dir"
        elif p.name == "index.sqlite" and p.stat().st_size:
            conn = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
            try:
                out[rel] = {t: conn.execute(f'SELECT * FROM "{t}" ORDER BY rowid').fetchall()
                            for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            finally:
                conn.close()
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A small project: an init checkpoint, one epoch of training, a stored 3 x 3 surface."""
    path = tmp_path_factory.mktemp("catalogue") / "base"
    s = Session(path, **KW)
    job = s.train(epochs=1)
    job.wait(120)
    assert job.state == "done", job.error
    s.surface(job.result[-1].id, x="-1:1:3", y="-1:1:3")
    s.close()
    return path


@pytest.fixture
def project(base, tmp_path) -> Path:
    """A fresh copy of the base project for one case."""
    path = tmp_path / "proj"
    shutil.copytree(base, path)
    return path


def refused(root: Path, call: Callable[[], object], error: type[BaseException], message: str) -> BaseException:
    """``call()`` raises ``error`` matching ``message`` and leaves ``root`` as it was."""
    before = stored_state(root)
    with pytest.raises(error, match=message) as info:
        call()
    assert stored_state(root) == before, "the refused request changed what is stored"
    return info.value


def _set_row(path: Path, sql: str, *args: object) -> None:
    conn = sqlite3.connect(path / "index.sqlite")
    conn.execute(sql, args)
    conn.commit()
    conn.close()


def _session_call(path: Path, fn: Callable[[Session], object]) -> Callable[[], object]:
    def call() -> object:
        s = Session(path, **KW)
        try:
            return fn(s)
        finally:
            s.close()
    return call


# ------------------------------------------------------------------------------------- the folder
@pytest.mark.parametrize("damage", ["missing", "empty"])
def test_a_lost_index_is_refused_and_the_files_stay(project, damage):
    for name in ("index.sqlite-wal", "index.sqlite-shm"):
        (project / name).unlink(missing_ok=True)
    if damage == "missing":
        (project / "index.sqlite").unlink()
    else:
        (project / "index.sqlite").write_bytes(b"")
    refused(project, lambda: Session(project, **KW), ValueError,
            r"the index .* (is missing|is empty \(0 bytes\)), but the folder holds project files .*restore "
            r"index\.sqlite from a copy of the project; nothing was changed")


@pytest.mark.parametrize("rel, why", [("../../outside.h5", r"leads out of the project \(\.\.\)"),
                                      ("/etc/hostname", "is an absolute path"),
                                      ("weights/1.safetensors", "is not a file directly inside results/")])
def test_an_index_naming_a_file_outside_its_folder_is_refused(project, rel, why):
    _set_row(project, "UPDATE results SET file=?", rel)
    refused(project, _session_call(project, lambda s: s.surfaces()), ValueError,
            rf"names the file {re.escape(repr(rel))}, which {why}: lossviz only uses files inside the project's "
            r"results/ folder; the index was altered: restore index\.sqlite")


def test_an_index_naming_weights_outside_the_project_is_refused(project):
    _set_row(project, "UPDATE checkpoints SET weights=? WHERE id=1", "/etc/hostname")
    refused(project, _session_call(project, lambda s: s.model(1)), ValueError, r"is an absolute path")


@pytest.mark.parametrize("what", ["model", "data"])
def test_an_index_naming_code_to_run_is_refused_and_nothing_runs(project, tmp_path, what):
    marker = tmp_path / "MARKER"
    conn = sqlite3.connect(project / "index.sqlite")
    spec = json.loads(conn.execute("SELECT value FROM meta WHERE key='spec'").fetchone()[0])
    spec[what], spec[f"{what}_kwargs"] = "os:system", {"command": f"touch {marker}"}
    conn.execute("UPDATE meta SET value=? WHERE key='spec'", (json.dumps(spec),))
    conn.commit()
    conn.close()
    refused(project, lambda: Session(project), ValueError,
            rf"the index names the {what} factory 'os:system'; lossviz never imports code a project folder names "
            rf"\(the folder may come from someone else\): if you trust it, pass {what}='os:system' yourself")
    assert not marker.exists()


def test_an_index_asking_to_read_unverified_data_files_is_refused(project):
    conn = sqlite3.connect(project / "index.sqlite")
    spec = json.loads(conn.execute("SELECT value FROM meta WHERE key='spec'").fetchone()[0])
    spec["data"], spec["data_kwargs"] = "cifar10", {"root": str(project / "results"), "verify": False}
    conn.execute("UPDATE meta SET value=? WHERE key='spec'", (json.dumps(spec),))
    conn.commit()
    conn.close()
    refused(project, lambda: Session(project), ValueError,
            r"the index asks to read the data set with verify=False .*which torchvision unpickles\); if you "
            r"trust them, pass data_kwargs yourself")


def test_a_weight_file_changed_behind_the_index_is_refused_naming_it(project):
    weights = project / "weights" / "1.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    refused(project, _session_call(project, lambda s: s.model(1)), ValueError,
            r"weight file of checkpoint 1 .*weights/1\.safetensors was changed after lossviz wrote it")


def test_a_full_disk_during_a_surface_save_raises_and_stores_nothing(project, monkeypatch):
    import lossviz.files as files_mod

    def no_space(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(files_mod, "write_durably", no_space)
    err = refused(project, _session_call(project, lambda s: s.surface(2, x="-1:1:5", y="-1:1:5")), OSError,
                  r"no space left on the disk of .* while writing a surface result .*free some space")
    assert err.errno == errno.ENOSPC and "damaged" not in str(err) and "restore" not in str(err)


# -------------------------------------------------------------------------------- Session(...)
class TwoOutputs(nn.Module):
    def __init__(self, width: int = 2):
        super().__init__()
        self.net = nn.Linear(width, 2)

    def forward(self, x):
        return self.net(x)


X = torch.randn(16, 2)
CREATIONS = {
    "cuda without CUDA": (dict(model="mlp", data="spirals", data_kwargs=SPIRALS, device="cuda"),
                          r"device 'cuda' cannot be used on this machine .*pass device='cpu'"),
    "labels beyond the outputs": (dict(model=TwoOutputs, data=(X, torch.arange(16) % 5)),
                                  r"the model has 2 outputs but the data has labels up to 4"),
    "inputs of the wrong width": (dict(model=lambda: TwoOutputs(3), data=(X, torch.arange(16) % 2)),
                                  r"the model cannot take inputs of shape \[2\] from the data"),
    "an unknown loss": (dict(model=TwoOutputs, data=(X, torch.arange(16) % 2), loss="nosuch"),
                        r"unknown loss 'nosuch'"),
}


@pytest.mark.parametrize("case", list(CREATIONS))
def test_a_refused_creation_leaves_no_folder(tmp_path, case):
    kwargs, message = CREATIONS[case]
    if case == "cuda without CUDA" and torch.cuda.is_available():  # then a GPU beyond this machine's
        beyond = f"cuda:{torch.cuda.device_count()}"
        kwargs, message = dict(kwargs, device=beyond), rf"device '{beyond}' cannot be used on this machine"
    for path in (tmp_path / "new", tmp_path / "deeper" / "new"):
        refused(tmp_path, lambda path=path: Session(path, **kwargs), ValueError, message)
        assert not path.exists() and not (tmp_path / "deeper").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    refused(tmp_path, lambda: Session(empty, **kwargs), ValueError, message)
    assert list(empty.iterdir()) == []


# ---------------------------------------------------------------------------------- checkpoints
def test_a_checkpoint_of_another_project_is_refused(project, tmp_path):
    other = Session(tmp_path / "other", **KW)
    foreign = other.init()
    other.close()
    for call in (lambda s: s.checkpoint(foreign), lambda s: s.model(foreign), lambda s: s.distances([1, foreign]),
                 lambda s: s.disturb(foreign, 0.1), lambda s: s.interpolate(1, foreign, 3),
                 lambda s: s.surface(foreign, x="-1:1:3"), lambda s: s.surface(2, directions=foreign, x="-1:1:3"),
                 lambda s: s.surface(2, "pca", x="-1:1:3", y="-1:1:3", checkpoints=[1, foreign])):
        refused(project, _session_call(project, call), ValueError,
                r"checkpoint 1 belongs to another project \(identity [0-9a-f]{12}\), not to .*pass an id or one "
                r"of this project's checkpoints\(\)")


def test_a_checkpoint_of_a_copy_that_went_its_own_way_is_refused(project, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(project, copy)
    s = Session(copy, **KW)
    assert s.checkpoint(Session(project, **KW).checkpoint(1)).id == 1  # a copy's own past is its past
    diverged = s.disturb(2, 0.5, seed=1)
    s.close()
    s = Session(project, **KW)
    made_here = s.disturb(2, 0.25, seed=2)  # the same id, another checkpoint
    s.close()
    assert made_here.id == diverged.id
    refused(project, _session_call(project, lambda s: s.checkpoint(diverged)), ValueError,
            rf"the checkpoint {diverged.id} given is not checkpoint {diverged.id} of .*a copy of this project "
            "that went its own way")


# ---------------------------------------------------------------------------- degenerate requests
DEGENERATE = {  # call(session, numel, twin): twin is a checkpoint with the centre's (2's) weights
    "a zero direction": (lambda s, n, twin: s.surface(2, directions=torch.zeros(n), x="-1:1:3"),
                         r"direction x is zero \(all \d+ entries are 0\).*give a non-zero direction"),
    "a NaN direction": (lambda s, n, twin: s.surface(2, directions=torch.full((n,), float("nan")), x="-1:1:3"),
                        r"direction x has \d+ NaN or infinite entries .*give a finite direction"),
    "a zero y direction": (lambda s, n, twin: s.surface(2, directions=torch.stack([torch.ones(n), torch.zeros(n)]),
                                                        x="-1:1:3", y="-1:1:3"),
                           r"direction y is zero"),
    "a direction towards the centre": (lambda s, n, twin: s.surface(2, directions=2, x="-1:1:3"),
                                       r"direction x points to checkpoint 2, the surface's centre itself"),
    "a direction towards a copy of the centre": (
        lambda s, n, twin: s.surface(2, directions=twin, x="-1:1:3"),
        r"direction x \(towards checkpoint \d+, which has the centre's weights\) is zero"),
    "disturbing by 0": (lambda s, n, twin: s.disturb(2, 0),
                        r"magnitude must not be 0: disturbing by 0 would store a copy"),
    "interpolating a checkpoint with itself": (lambda s, n, twin: s.interpolate(2, 2, 3),
                                               r"interpolating checkpoint 2 with itself would store 3 copies of it"),
}


@pytest.mark.parametrize("case", list(DEGENERATE))
def test_a_degenerate_request_is_refused_before_any_work(project, case):
    call, message = DEGENERATE[case]
    s = Session(project, **KW)
    n, twin = int(s.vector(2).numel()), s.interpolate(2, 1, 2)[0]  # made before the state is taken
    s.close()
    err = refused(project, _session_call(project, lambda s: call(s, n, twin)), (ValueError, RuntimeError), message)
    assert "Traceback" not in str(err)


# ------------------------------------------------------------------------------------- the CLI
def test_a_surface_file_declaring_a_huge_grid_is_refused_by_info(tmp_path, capsys):
    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as f:  # a few kB on disk: the datasets are declared, never written
        f.create_dataset("xcoordinates", data=np.linspace(-1, 1, 3))
        f.create_dataset("ycoordinates", data=np.linspace(-1, 1, 3))
        f.create_dataset("train_loss", shape=(10**6, 10**6), dtype="f8", chunks=(1000, 1000))
    assert path.stat().st_size < 100_000
    big_axes = tmp_path / "axes.h5"
    with h5py.File(big_axes, "w") as f:
        f.create_dataset("xcoordinates", shape=(10**6,), dtype="f8", chunks=(10**5,))
        f.create_dataset("ycoordinates", shape=(10**6,), dtype="f8", chunks=(10**5,))
    for file, what in ((path, r"dataset 'train_loss'"), (big_axes, r"the grid \(ycoordinates x xcoordinates\)")):
        before = stored_state(tmp_path)
        assert cli.main(["info", str(file)]) == 2
        err = capsys.readouterr().err
        assert re.search(what, err), err
        assert "declares 1000000 x 1000000 = 1e+12 values, more than the 25,000,000" in err, err
        assert "nothing was read" in err and stored_state(tmp_path) == before


def test_surface_plot_with_an_unknown_metric_exits_2_before_writing_out(tmp_path, capsys):
    out = tmp_path / "s.h5"
    code = cli.main(["surface", "--model", "mlp", "--dataset", "spirals", "--x=-1:1:3", "--out", str(out),
                     "--plot", "--metric", "nosuch", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "--metric 'nosuch' is not a metric of this surface: use one of train_loss" in err, err
    assert "nothing was computed or written" in err and list(tmp_path.iterdir()) == []
