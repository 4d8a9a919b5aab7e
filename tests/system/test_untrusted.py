"""Untrusted files (issue 7): a pickle whose ``__reduce__`` writes a marker file, placed as a ``.pt``, a
``.t7``, a legacy (non-zip) ``torch.save`` file, a ``.safetensors`` name, and as a project's weight,
optimizer-state and result files, and HDF5 files holding pickled bytes in object/opaque datasets and
attributes. Every entry point that opens files refuses it in words, and the marker never appears:
``lossviz.io.checkpoints``, the CLI's ``--model-file``/``--model-file2``/``--dir-file``/``info``/``plot``,
the Store, a Session opening the project (models, vectors, distances, projections, surfaces, training),
the Explorer, and the HDF5 readers."""

from __future__ import annotations

import contextlib
import io
import pickle
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from lossviz.io.checkpoints import load_checkpoint_into, load_state_dict
from lossviz.io.h5 import read_directions, read_surface
from lossviz.params import ParamSpace
from lossviz.session import Session
from lossviz.zoo import get_model

SPIRALS = {"n": 100, "n_test": 30}


class Payload:
    """Unpickling this writes ``marker``: the proof that code from a file ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def _evil_state(marker: Path) -> dict:
    return {"state_dict": {"net.0.weight": torch.zeros(32, 2)}, "epoch": 3, "extra": Payload(marker)}


@pytest.fixture
def marker(tmp_path):
    m = tmp_path / "MARKER"
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(Payload(probe)))  # the payload does run when unpickled: the test can fail
    assert probe.exists()
    yield m
    assert not m.exists(), "code from an untrusted file ran"


def _evil_files(folder: Path, marker: Path) -> dict[str, Path]:
    folder.mkdir(exist_ok=True)
    files = {
        "raw pickle .pt": folder / "raw.pt",
        "torch.save .t7": folder / "model.t7",
        "legacy torch.save .pth": folder / "legacy.pth",
        "pickle named .safetensors": folder / "fake.safetensors",
        "torch.save .ckpt": folder / "model.ckpt",
    }
    files["raw pickle .pt"].write_bytes(pickle.dumps(_evil_state(marker), protocol=2))
    torch.save(_evil_state(marker), files["torch.save .t7"])
    torch.save(_evil_state(marker), files["legacy torch.save .pth"], _use_new_zipfile_serialization=False)
    files["pickle named .safetensors"].write_bytes(pickle.dumps(_evil_state(marker)))
    torch.save(Payload(marker), files["torch.save .ckpt"])
    return files


def test_io_checkpoints_refuse_every_pickle(tmp_path, marker):
    for what, path in _evil_files(tmp_path / "files", marker).items():
        with pytest.raises(ValueError, match=re.escape(path.name)) as info:
            load_state_dict(path)
        msg = str(info.value)
        assert path.name in msg, (what, msg)
        assert ("refusing to unpickle" in msg and "state_dict()" in msg) or "safetensors" in msg, (what, msg)
        with pytest.raises(ValueError, match=re.escape(path.name)):
            load_checkpoint_into(get_model("mlp"), path)
        assert not marker.exists(), what


def _cli(*argv) -> tuple[int, str]:
    from lossviz.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main([str(a) for a in argv])
    return rc, err.getvalue()


def test_cli_refuses_pickled_model_files(tmp_path, marker):
    good = tmp_path / "good.safetensors"
    from safetensors.torch import save_file

    save_file(get_model("mlp").state_dict(), str(good))
    out = tmp_path / "out.h5"
    for what, path in _evil_files(tmp_path / "files", marker).items():
        for flags in (["--model-file", path], ["--model-file", good, "--model-file2", path]):
            rc, err = _cli("surface", "--x=-1:1:3", "--dataset", "spirals", "--data-kwargs", '{"n": 40}',
                           "--out", out, "--no-progress", *flags)
            assert rc == 2 and path.name in err, (what, err)
            assert "refusing to unpickle" in err or "safetensors" in err, (what, err)
            assert not out.exists() and not marker.exists(), what


def _evil_h5(folder: Path, marker: Path) -> dict[str, Path]:
    folder.mkdir(exist_ok=True)
    blob = np.void(pickle.dumps(Payload(marker)))
    vlen = h5py.vlen_dtype(np.dtype("uint8"))
    files = {}
    p = folder / "object_metric.h5"
    with h5py.File(p, "w") as f:
        f["xcoordinates"] = np.linspace(-1, 1, 3)
        f.create_dataset("train_loss", data=np.array([pickle.dumps(Payload(marker), protocol=0)] * 3, dtype=object),
                         dtype=h5py.string_dtype("ascii"))
        f.attrs["lossviz_format"] = "lossviz-surface-1"
    files["object metric"] = p
    p = folder / "opaque_metric.h5"
    with h5py.File(p, "w") as f:
        f["xcoordinates"] = np.linspace(-1, 1, 3)
        f["train_loss"] = np.array([blob] * 3)
    files["opaque metric"] = p
    p = folder / "vlen_metric.h5"
    with h5py.File(p, "w") as f:
        f["xcoordinates"] = np.linspace(-1, 1, 3)
        ds = f.create_dataset("train_loss", (3,), dtype=vlen)
        for i in range(3):
            ds[i] = np.frombuffer(pickle.dumps(Payload(marker)), dtype=np.uint8)
    files["vlen metric"] = p
    p = folder / "pickled_meta.h5"
    with h5py.File(p, "w") as f:
        f["xcoordinates"] = np.linspace(-1, 1, 3)
        f["train_loss"] = np.zeros(3)
        f["lossviz_done"] = np.ones(3, np.uint8)
        f.attrs["lossviz_format"] = "lossviz-surface-1"
        f.attrs["lossviz_meta"] = np.void(pickle.dumps(Payload(marker)))
    files["pickled meta attribute"] = p
    p = folder / "object_directions.h5"
    space = ParamSpace(get_model("mlp"))
    with h5py.File(p, "w") as f:
        g = f.create_group("xdirection")
        for i, e in enumerate(space.entries):
            if i == 0:
                g.create_dataset("0", data=np.array([pickle.dumps(Payload(marker), protocol=0)], dtype=object),
                                 dtype=h5py.string_dtype("ascii"))
            else:
                g.create_dataset(str(i), data=np.zeros(e.shape, np.float32))
        f.attrs["lossviz_directions"] = np.void(pickle.dumps(Payload(marker)))
    files["object directions"] = p
    return files


def test_hdf5_reads_never_unpickle_object_data(tmp_path, marker):
    files = _evil_h5(tmp_path / "h5", marker)
    space = ParamSpace(get_model("mlp"))
    for what, path in files.items():
        if what == "object directions":
            with pytest.raises(ValueError, match=re.escape(path.name)) as info:
                read_directions(path, space)
            assert path.name in str(info.value), str(info.value)
            rc, err = _cli("surface", "--x=-1:1:3", "--dataset", "spirals", "--data-kwargs", '{"n": 40}',
                           "--out", tmp_path / "o.h5", "--dir-file", path, "--no-progress")
            assert rc == 2 and path.name in err, err
            continue
        try:
            surf = read_surface(path)
        except ValueError as exc:  # refused in words (either outcome is right, so no pytest.raises)
            assert path.name in str(exc), (what, exc)  # noqa: PT017
        else:  # or read without the pickled parts: only numbers come back
            for v in surf.values.values():
                assert v.dtype == np.float64
            assert all(isinstance(v, (str, int, float, bool, list, dict, type(None))) for v in surf.meta.values())
        for cmd in (["info", path], ["plot", path, "--out", tmp_path / "p.html"]):
            rc, err = _cli(*cmd)
            assert rc in (0, 2), (what, cmd, err)
            assert rc == 0 or path.name in err, (what, err)
        assert not marker.exists(), what


@pytest.fixture
def project(tmp_path):
    s = Session(tmp_path / "proj", model="mlp", data="spirals", data_kwargs=SPIRALS,
                hparams={"batch_size": 50, "lr": 0.05})
    job = s.train(epochs=2)
    job.wait(120)
    assert job.state == "done", job.error
    surf = s.surface(job.result[-1].id, x="-1:1:3", y="-1:1:3")
    s.close()
    return tmp_path / "proj", [c.id for c in job.result], surf.meta["key"]


def _plant(path: Path, marker: Path, how: str) -> None:
    if how == "pickle":
        path.write_bytes(pickle.dumps(_evil_state(marker)))
    else:
        torch.save(_evil_state(marker), path)


@pytest.mark.parametrize("how", ["pickle", "torch.save"])
def test_a_project_with_pickled_weight_files_is_refused_everywhere(project, marker, how):
    path, ids, _ = project
    a, b = ids
    _plant(path / "weights" / f"{b}.safetensors", marker, how)
    _plant(path / "optim" / f"{a}.safetensors", marker, how)
    s = Session(path)  # opening reads no weight file; each use below does, and refuses
    for call in (lambda: s.model(b), lambda: s.vector(b), lambda: s.distances([a, b]),
                 lambda: s.store.load_state_dict(b), lambda: s.store.load_optim_state(a),
                 lambda: s.project(method="pca"), lambda: s.disturb(b, 0.1), lambda: s.interpolate(a, b, 3)):
        with pytest.raises(ValueError, match="not a valid safetensors file"):
            call()
    assert not s.store.verify(b)
    for job in (s.train(from_=b, epochs=1), s.train(from_=a, epochs=1)):
        job.wait(120)
        assert job.state == "failed" and "safetensors" in job.error and "never unpickles" in job.error
    with pytest.raises(RuntimeError, match="safetensors"):
        s.surface(b, x="-1:1:3", seed=5)
    assert [c.id for c in s.checkpoints()] == [ids[0] - 1, a, b]  # nothing was added
    s.close()


def test_a_pickled_result_file_is_refused(project, marker):
    path, ids, key = project
    s = Session(path)
    stored = s.store.find_result(key)["path"]
    stored.write_bytes(pickle.dumps(Payload(marker)))
    for call in (lambda: s.load_surface(key), lambda: s.surface(ids[-1], x="-1:1:3", y="-1:1:3")):
        with pytest.raises(ValueError, match="not a readable HDF5 file"):
            call()
    s.close()


def test_the_explorer_reports_a_pickled_weight_file(project, marker):
    from lossviz.widget import Explorer

    path, ids, _ = project
    _plant(path / "weights" / f"{ids[-1]}.safetensors", marker, "torch.save")
    s = Session(path)
    w = Explorer(s, throttle=0, background=False)
    w.handle({"type": "disturb", "from": ids[-1], "magnitude": 0.1})
    assert "disturbing" in w.error and "not a valid safetensors file" in w.error
    w.handle({"type": "select", "ids": ids})
    w.handle({"type": "distances"})
    assert "safetensors" in w.error
    w.close()
    s.close()
