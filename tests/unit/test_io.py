"""Files: Li-compatible surface and direction files, checkpoints (never unpickling code)."""

from __future__ import annotations

import os
import pickle
import pickletools

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from lossviz.directions import DirectionSet, as_direction, pca_directions, random_directions
from lossviz.io.checkpoints import (
    load_checkpoint_into,
    load_state_dict,
    read_metadata,
    save_state_dict,
)
from lossviz.io.h5 import read_directions, read_surface, write_directions, write_surface
from lossviz.landscape import Surface
from lossviz.params import ParamSpace


def f_xy(x, y):
    """An asymmetric test function, so that swapped axes cannot pass."""
    return 1.0 + x + 10.0 * y + 0.5 * x * y**2


def bn_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2)
    )
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
        net[1].num_batches_tracked.fill_(3)
    return net


def grid_surface(nx: int, ny: int | None, meta=None) -> Surface:
    x = np.linspace(-1, 1, nx)
    if ny is None:
        vals = {"train_loss": f_xy(x, 0.0), "train_acc": 50 + 10 * x}
        return Surface(x=x, y=None, values=vals, done=np.ones(nx, bool), meta=meta or {})
    y = np.linspace(-0.5, 2, ny)
    X, Y = np.meshgrid(x, y)
    vals = {"train_loss": f_xy(X, Y), "train_acc": 50 + 10 * X - Y, "test_loss": 2 * f_xy(X, Y)}
    return Surface(x=x, y=y, values=vals, done=np.ones((ny, nx), bool), meta=meta or {})


def assert_same_surface(a: Surface, b: Surface) -> None:
    np.testing.assert_array_equal(a.x, b.x)
    if a.y is None:
        assert b.y is None
    else:
        np.testing.assert_array_equal(a.y, b.y)
    assert sorted(a.values) == sorted(b.values)
    for k in a.values:
        np.testing.assert_array_equal(a.values[k], b.values[k])
    np.testing.assert_array_equal(a.done, b.done)


# ------------------------------------------------------------------ surfaces
def test_roundtrip_1d(tmp_path):
    s = grid_surface(7, None, meta={"kind": "weights", "seed": 3, "grid": {"x": "-1:1:7"}})
    p = tmp_path / "s.h5"
    write_surface(p, s, dir_file="dirs.h5")
    r = read_surface(p)
    assert_same_surface(s, r)
    assert r.meta == {**s.meta, "dir_file": "dirs.h5"}
    with h5py.File(p, "r") as f:
        assert f["xcoordinates"].dtype == np.float64 and f["train_loss"].shape == (7,)
        assert f["dir_file"].shape == () and f["dir_file"][()].decode() == "dirs.h5"


def test_roundtrip_square_2d_is_the_reference_layout(tmp_path):
    s = grid_surface(5, 5)
    p = tmp_path / "sq.h5"
    write_surface(p, s)
    assert_same_surface(s, read_surface(p))
    with h5py.File(p, "r") as f:
        # what plot_2D.plot_2d_contour does: X, Y = meshgrid(x, y); contour(X, Y, Z)
        x, y = f["xcoordinates"][:], f["ycoordinates"][:]
        X, Y = np.meshgrid(x, y)
        Z = f["train_loss"][:]
        np.testing.assert_allclose(Z, f_xy(X, Y), rtol=0, atol=0)
        # and the flat index k = i*nx + j holds (x[j], y[i]), as h52vtp.py ravels it
        np.testing.assert_array_equal(Z.ravel(), f_xy(X.ravel(), Y.ravel()))


def test_roundtrip_nonsquare_2d(tmp_path):
    s = grid_surface(5, 3)
    p = tmp_path / "ns.h5"
    write_surface(p, s)
    r = read_surface(p)
    assert_same_surface(s, r)
    assert r.values["train_loss"].shape == (3, 5)
    with h5py.File(p, "r") as f:
        assert f["train_loss"].shape == (3, 5)
        assert f.attrs["lossviz_layout"] == "yx"


def test_roundtrip_partial_with_nan_and_diverged(tmp_path):
    s = grid_surface(4, 6)
    done = np.zeros((6, 4), bool)
    done[::2, ::3] = True
    done[1, 1] = True  # computed but diverged
    for k in s.values:
        s.values[k] = np.where(done, s.values[k], np.nan)
        s.values[k][1, 1] = np.nan
    s.done = done
    p = tmp_path / "partial.h5"
    write_surface(p, s)
    r = read_surface(p)
    assert_same_surface(s, r)
    assert r.done[1, 1] and np.isnan(r.values["train_loss"][1, 1])
    assert not r.complete


def err_xy(x, y):
    """Asymmetric per-point error estimates (so a transposed or swapped layout cannot pass)."""
    return 0.01 + 0.002 * x + 0.03 * y**2


@pytest.mark.parametrize("nx,ny", [(7, None), (4, 4), (5, 3), (2, 6)])
def test_roundtrip_errors(tmp_path, nx, ny):
    s = grid_surface(nx, ny)
    X, Y = (s.x, 0.0) if ny is None else np.meshgrid(s.x, s.y)
    err = err_xy(X, Y) * np.ones(s.shape)
    unknown = np.zeros(s.shape, bool)
    unknown.flat[::3] = True  # NaN where no estimate exists
    s.errors = {"train_loss": np.where(unknown, np.nan, err), "train_acc": 100.0 * err}
    p = tmp_path / "err.h5"
    write_surface(p, s)
    r = read_surface(p)
    assert_same_surface(s, r)  # the _err datasets are not taken for metrics
    assert sorted(r.values) == sorted(s.values) and sorted(r.errors) == ["train_acc", "train_loss"]
    for k in s.errors:
        assert r.errors[k].shape == s.shape and r.errors[k].dtype == np.float64
        np.testing.assert_array_equal(r.errors[k], s.errors[k])  # NaN in the same places
    with h5py.File(p, "r") as f:
        ds = f["train_loss_err"]
        assert ds.attrs["lossviz_role"] == "error" and ds.attrs["lossviz_error_of"] == "train_loss"
        assert ds.shape == f["train_loss"].shape == s.shape
        if ny is not None:  # same orientation as the metric: row i = y[i], column j = x[j]
            i, j = ny - 1, 0
            assert ds[i, j] == pytest.approx(err_xy(s.x[j], s.y[i]), rel=1e-15) or unknown[i, j]
            np.testing.assert_allclose(f["train_acc_err"][()], 100.0 * err_xy(X, Y), rtol=1e-15)
        assert "test_loss_err" not in f


def test_err_named_metric_without_marker_is_a_metric(tmp_path):
    s = grid_surface(4, 3)
    s.values["train_loss_err"] = s.values["train_loss"] * 0.5  # a user metric, not an estimate
    p = tmp_path / "m.h5"
    write_surface(p, s)
    r = read_surface(p)
    assert_same_surface(s, r)
    assert r.errors == {}
    s.errors = {"train_loss": np.zeros((3, 4))}
    with pytest.raises(ValueError, match="a metric of that name exists"):
        write_surface(tmp_path / "clash.h5", s)


def test_bad_errors_are_refused(tmp_path):
    s = grid_surface(5, 3)
    s.errors = {"val_loss": np.zeros((3, 5))}
    with pytest.raises(ValueError, match="no such metric"):
        write_surface(tmp_path / "a.h5", s)
    s.errors = {"train_loss": np.zeros((5, 3))}
    with pytest.raises(ValueError, match=r"errors\['train_loss'\] has shape \(5, 3\), expected \(3, 5\)"):
        write_surface(tmp_path / "b.h5", s)
    assert not (tmp_path / "a.h5").exists() and not (tmp_path / "b.h5").exists()
    # a marked error dataset whose metric is missing: a damaged file, said in words
    p = tmp_path / "orphan.h5"
    s.errors = {"train_loss": np.zeros((3, 5))}
    write_surface(p, s)
    with h5py.File(p, "r+") as f:
        f["train_loss_err"].attrs["lossviz_error_of"] = "val_loss"
    with pytest.raises(ValueError, match=r"error estimate for metric 'val_loss'.*re-create"):
        read_surface(p)


def test_adaptive_surface_errors_roundtrip(tmp_path):
    """The errors lossviz.subsample computes survive the file (read back equal, not as metrics)."""
    from lossviz.subsample import subsampled_surface

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3))
    data = (torch.randn(400, 3), torch.randint(0, 3, (400,)))
    s = subsampled_surface(model, data, x="-1:1:4", y="-0.5:0.5:3", rtol=0.2, first=40, seed=2)
    assert sorted(s.errors) == ["train_acc", "train_loss"] and s.errors["train_loss"].shape == (3, 4)
    assert (s.errors["train_loss"] > 0).any()  # some points stopped early with a nonzero error
    p = tmp_path / "adaptive.h5"
    write_surface(p, s)
    r = read_surface(p)
    assert_same_surface(s, r)
    for k in s.errors:
        np.testing.assert_array_equal(r.errors[k], s.errors[k])


def reference_style_file(path, xs: str, ys: str | None, dir_file: str, n_fill: int):
    """A surface file made the way plot_surface.py's setup_surface_file and crunch make it."""
    xmin, xmax, xnum = [float(a) for a in xs.split(":")]
    f = h5py.File(path, "a")
    f["dir_file"] = dir_file
    xcoordinates = np.linspace(xmin, xmax, num=int(xnum))
    f["xcoordinates"] = xcoordinates
    ycoordinates = None
    if ys:
        ymin, ymax, ynum = [float(a) for a in ys.split(":")]
        ycoordinates = np.linspace(ymin, ymax, num=int(ynum))
        f["ycoordinates"] = ycoordinates
    f.close()
    # crunch
    f = h5py.File(path, "r+")
    shape = xcoordinates.shape if ycoordinates is None else (len(xcoordinates), len(ycoordinates))
    losses = -np.ones(shape=shape)
    accuracies = -np.ones(shape=shape)
    f["train_loss"] = losses
    f["train_acc"] = accuracies
    # scheduler.get_unplotted_indices
    inds = np.array(range(losses.size))
    inds = inds[losses.ravel() <= 0]
    if ycoordinates is not None:
        xm, ym = np.meshgrid(xcoordinates, ycoordinates)
        coords = np.c_[xm.ravel()[inds], ym.ravel()[inds]]
    else:
        coords = xcoordinates.ravel()[inds]
    for count, ind in enumerate(inds[:n_fill]):
        c = coords[count]
        cx, cy = (c, 0.0) if ycoordinates is None else (c[0], c[1])
        losses.ravel()[ind] = f_xy(cx, cy)
        accuracies.ravel()[ind] = 40.0 + cx
        f["train_loss"][:] = losses
        f["train_acc"][:] = accuracies
        f.flush()
    f.close()
    return xcoordinates, ycoordinates


@pytest.mark.parametrize("xs,ys", [("-1:1:5", "-1:1:5"), ("-1:1:4", "0:2:3"), ("-1:1:6", None)])
def test_reads_reference_file(tmp_path, xs, ys):
    p = tmp_path / "ref.h5"
    n_total = int(xs.split(":")[2]) * (int(ys.split(":")[2]) if ys else 1)
    n_fill = n_total - 3  # the last three points are still -1 (unfinished)
    x, y = reference_style_file(p, xs, ys, "model.t7_weights.h5", n_fill)
    r = read_surface(p)
    np.testing.assert_array_equal(r.x, x)
    assert r.meta["dir_file"] == "model.t7_weights.h5"
    if y is None:
        expected = f_xy(x, 0.0)
        expected_acc = 40.0 + x
        done = np.arange(len(x)) < n_fill
    else:
        X, Y = np.meshgrid(x, y)
        expected = f_xy(X, Y)
        expected_acc = 40.0 + X
        done = (np.arange(n_total) < n_fill).reshape(len(y), len(x))
        np.testing.assert_array_equal(r.y, y)
    assert r.values["train_loss"].shape == expected.shape
    np.testing.assert_array_equal(r.done, done)
    np.testing.assert_allclose(r.values["train_loss"][done], expected[done], rtol=1e-15)
    np.testing.assert_allclose(r.values["train_acc"][done], expected_acc[done], rtol=1e-15)
    assert np.isnan(r.values["train_loss"][~done]).all() and (~done).sum() == 3
    assert r.errors == {}  # the reference's files hold no error estimates


def test_bad_surface_files(tmp_path):
    txt = tmp_path / "not.h5"
    txt.write_text("hello")
    with pytest.raises(ValueError, match="not a readable HDF5"):
        read_surface(txt)
    with pytest.raises(FileNotFoundError):
        read_surface(tmp_path / "missing.h5")
    p = tmp_path / "nox.h5"
    with h5py.File(p, "w") as f:
        f["train_loss"] = np.zeros(3)
    with pytest.raises(ValueError, match="'xcoordinates'"):
        read_surface(p)
    p = tmp_path / "shape.h5"
    with h5py.File(p, "w") as f:
        f["xcoordinates"] = np.linspace(-1, 1, 4)
        f["ycoordinates"] = np.linspace(-1, 1, 3)
        f["train_loss"] = np.zeros((4, 4))
    with pytest.raises(ValueError, match=r"'train_loss' has shape \(4, 4\), expected \(3, 4\)"):
        read_surface(p)
    p = tmp_path / "empty.h5"
    with h5py.File(p, "w") as f:
        f["xcoordinates"] = np.linspace(-1, 1, 4)
    with pytest.raises(ValueError, match="no metric dataset"):
        read_surface(p)


def test_write_is_atomic(tmp_path):
    good = grid_surface(4, 4)
    p = tmp_path / "s.h5"
    write_surface(p, good)
    before = p.read_bytes()
    bad = grid_surface(4, 4)
    bad.values["train_loss"] = np.full((4, 4), "x", dtype=object)  # fails while writing
    with pytest.raises((ValueError, TypeError)):
        write_surface(p, bad)
    assert p.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["s.h5"]
    wrong = grid_surface(4, 4)
    wrong.values["train_loss"] = np.zeros((3, 4))
    with pytest.raises(ValueError, match="'train_loss' has shape"):
        write_surface(p, wrong)
    assert p.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["s.h5"]


def test_a_full_disk_while_writing_a_surface_is_a_plain_oserror(tmp_path, monkeypatch):
    """The file is built in memory and written in one plain write: a full disk raises the OS's
    ENOSPC (no h5py error), and the file and its folder stay as they were."""
    import errno

    from lossviz import files

    p = tmp_path / "s.h5"
    write_surface(p, grid_surface(4, 4))
    before = p.read_bytes()
    real_open = open

    def full_disk_open(path, mode="r", *args, **kwargs):
        fh = real_open(path, mode, *args, **kwargs)
        if "w" in mode and files.TMP_PREFIX in os.fspath(path):
            def no_space(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path))
            fh.write = no_space
        return fh

    monkeypatch.setattr("builtins.open", full_disk_open)
    with pytest.raises(OSError, match="No space left") as info:
        write_surface(p, grid_surface(5, 5))
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC
    assert p.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["s.h5"]


def test_surface_bytes_are_the_file_write_surface_writes(tmp_path):
    from lossviz.io.h5 import surface_bytes

    surf = grid_surface(5, 4)
    p = tmp_path / "s.h5"
    write_surface(p, surf)
    q = tmp_path / "extended.h5"
    q.write_bytes(surface_bytes(surf, extend=lambda f: f.create_dataset("lossviz_mine", data=np.arange(3))))
    a, b = read_surface(p), read_surface(q)
    for name in surf.values:
        np.testing.assert_array_equal(a.values[name], b.values[name])
    with h5py.File(q, "r") as f:
        np.testing.assert_array_equal(f["lossviz_mine"][()], np.arange(3))


def test_a_file_declaring_a_huge_grid_is_refused_before_reading(tmp_path):
    from lossviz.io.h5 import MAX_READ_POINTS

    cases = {
        "grid": ({"xcoordinates": (10**6,), "ycoordinates": (10**6,)}, r"the grid \(ycoordinates x xcoordinates\)"),
        "metric": ({"xcoordinates": (3,), "ycoordinates": (3,), "train_loss": (10**6, 10**6)},
                   r"dataset 'train_loss'"),
        "axis": ({"xcoordinates": (10**12,)}, r"dataset 'xcoordinates'"),
    }
    for name, (shapes, what) in cases.items():
        p = tmp_path / f"{name}.h5"
        with h5py.File(p, "w") as f:  # declared, never written: a few kB on disk
            for ds, shape in shapes.items():
                f.create_dataset(ds, shape=shape, dtype="f8", chunks=tuple(min(n, 1000) for n in shape))
        assert p.stat().st_size < 100_000
        with pytest.raises(ValueError, match=rf"{what} declares .* values, more than the {MAX_READ_POINTS:,} a "
                                             r"surface file may hold .*nothing was read"):
            read_surface(p)
    p = tmp_path / "dir_file.h5"
    write_surface(p, grid_surface(3, 3))
    with h5py.File(p, "a") as f:  # a huge dir_file dataset: only its first string is read
        del f["dir_file"]
        f.create_dataset("dir_file", shape=(10**9,), dtype=h5py.string_dtype(), chunks=(1000,))
    assert read_surface(p).meta.get("dir_file", "") == ""


# ------------------------------------------------------------------ directions
@pytest.mark.parametrize("kind", ["weights", "states"])
def test_direction_file_roundtrip(tmp_path, kind):
    net = bn_net()
    space = ParamSpace(net, kind)
    ds = random_directions(space, space.vector(net), 2, seed=4, ignore=None)
    p = tmp_path / "dirs.h5"
    write_directions(p, ds, space)
    with h5py.File(p, "r") as f:
        ref_tensors = list(net.parameters()) if kind == "weights" else list(net.state_dict().values())
        assert len(f["xdirection"]) == len(ref_tensors) == len(f["ydirection"])
        for i, t in enumerate(ref_tensors):
            assert f["xdirection"][str(i)].shape == tuple(t.shape)
            assert f["xdirection"][str(i)].dtype == np.float32
        if kind == "states":
            nbt = list(net.state_dict()).index("1.num_batches_tracked")
            assert f["xdirection"][str(nbt)][()] == 0.0
    r = read_directions(p, space)
    assert r.kind == kind and r.seed == 4 and r.normalization == "filter" and r.method == "random"
    for a, b in zip(ds.vectors, r.vectors, strict=True):
        assert torch.equal(a, b)


def test_reads_reference_direction_file_states(tmp_path):
    net = bn_net()
    space = ParamSpace(net, "states")
    torch.manual_seed(0)
    xdir = [torch.randn(v.size()) for v in net.state_dict().values()]  # get_random_states
    p = tmp_path / "ref_dirs.h5"
    with h5py.File(p, "w") as f:  # h5_util.write_list
        grp = f.create_group("xdirection")
        for i, t in enumerate(xdir):
            grp.create_dataset(str(i), data=t.numpy())
    r = read_directions(p, space)
    assert r.ndim == 1 and r.method == "custom"
    assert torch.equal(r.vectors[0], as_direction(space, xdir))
    with pytest.raises(ValueError, match="holds 9 tensors but this weights space has 6"):
        read_directions(p, ParamSpace(net, "weights"))


def test_direction_file_shape_mismatch_and_pca(tmp_path):
    net = bn_net()
    space = ParamSpace(net, "weights")
    base = space.vector(net)
    traj = torch.stack([base + 0.1 * k * torch.randn(space.numel) for k in range(5)])
    pca = pca_directions(traj, ignore="biasbn", space=space)
    p = tmp_path / "pca.h5"
    write_directions(p, pca.to_direction_set("weights", ignore="biasbn"), space)
    with h5py.File(p, "r") as f:
        np.testing.assert_allclose(f["explained_variance_ratio_"][:], pca.explained_variance_ratio)
        np.testing.assert_allclose(f["singular_values_"][:], pca.singular_values)
        np.testing.assert_allclose(f["explained_variance_"][:], pca.explained_variance)
    r = read_directions(p, space)
    assert r.method == "pca"
    np.testing.assert_allclose(r.meta["explained_variance_ratio_"], pca.explained_variance_ratio)
    torch.testing.assert_close(r.stacked(), pca.directions)
    other = nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(13, 2)
    )
    with pytest.raises(ValueError, match=r"'xdirection/4' has shape \[2, 12\].*'4\.weight'.*\[2, 13\]"):
        read_directions(p, ParamSpace(other, "weights"))
    empty = tmp_path / "empty_dirs.h5"
    with h5py.File(empty, "w") as f:
        f.create_group("something")
    with pytest.raises(ValueError, match="no 'xdirection' group"):
        read_directions(empty, space)
    with pytest.raises(ValueError, match="are 'weights' vectors but the space is 'states'"):
        write_directions(p, DirectionSet([base], kind="weights"), ParamSpace(net, "states"))


# ------------------------------------------------------------------ checkpoints
def _same_state(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize(
    "name,wrap,legacy",
    [
        ("plain.pt", lambda sd: sd, False),
        ("ref.t7", lambda sd: {"acc": 93.1, "epoch": 300, "state_dict": sd}, True),
        ("model.pth", lambda sd: {"model": sd, "step": 10}, False),
        ("net.pth", lambda sd: {"net": sd}, False),
        ("ckpt.pt", lambda sd: {"model_state_dict": sd, "optimizer_state_dict": {"lr": 0.1}}, False),
        ("dp.pt", lambda sd: {"state_dict": {"module." + k: v for k, v in sd.items()}}, False),
    ],
)
def test_load_state_dict_torch_formats(tmp_path, name, wrap, legacy):
    net = bn_net(1)
    sd = net.state_dict()
    p = tmp_path / name
    torch.save(wrap(sd), p, _use_new_zipfile_serialization=not legacy)
    loaded = load_state_dict(p)
    _same_state(dict(sd), loaded)
    fresh = load_checkpoint_into(bn_net(2), p)
    _same_state(dict(sd), dict(fresh.state_dict()))


def test_safetensors_save_load_atomic(tmp_path):
    net = bn_net(1)
    p = tmp_path / "w.safetensors"
    save_state_dict(p, net.state_dict(), metadata={"epoch": 3, "note": "hi"})
    assert sorted(os.listdir(tmp_path)) == ["w.safetensors"]
    _same_state(dict(net.state_dict()), load_state_dict(p))
    assert read_metadata(p) == {"epoch": "3", "note": "hi"}
    # tied weights (shared storage) are saved too
    lin = nn.Linear(3, 3)
    save_state_dict(tmp_path / "tied.safetensors", {"a": lin.weight, "b": lin.weight})
    t = load_state_dict(tmp_path / "tied.safetensors")
    assert torch.equal(t["a"], t["b"])
    # a failing save leaves the old file intact
    before = p.read_bytes()
    with pytest.raises(TypeError):
        save_state_dict(p, {"x": "not a tensor"})
    assert p.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["tied.safetensors", "w.safetensors"]


def test_checkpoint_shape_mismatch_and_missing(tmp_path):
    net = bn_net(1)
    other = nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 4)
    )
    p = tmp_path / "o.pt"
    torch.save(other.state_dict(), p)
    with pytest.raises(ValueError, match=r"'4\.weight' has shape \[4, 12\] in the checkpoint but \[2, 12\]"):
        load_checkpoint_into(net, p)
    sd = dict(bn_net(2).state_dict())
    del sd["0.bias"]
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"1 missing \(first \['0\.bias'\]\).*1 unexpected"):
        load_checkpoint_into(net, sd)
    # old checkpoints without num_batches_tracked load fine
    sd = {k: v for k, v in bn_net(2).state_dict().items() if "num_batches" not in k}
    load_checkpoint_into(net, sd)
    assert torch.equal(net[4].weight, sd["4.weight"])


def test_bad_checkpoint_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_state_dict(tmp_path / "nope.pt")
    p = tmp_path / "garbage.pt"
    p.write_bytes(b"\x00\x01 not a checkpoint")
    with pytest.raises(ValueError, match=r"garbage\.pt"):
        load_state_dict(p)
    q = tmp_path / "weights.npz"
    q.write_bytes(b"")
    with pytest.raises(ValueError, match="unknown checkpoint format"):
        load_state_dict(q)
    r = tmp_path / "bad.safetensors"
    r.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(ValueError, match="safetensors"):
        load_state_dict(r)


class _Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("how", ["pickle", "torch.save"])
def test_malicious_pickle_is_refused(tmp_path, how):
    marker = tmp_path / "marker.txt"
    p = tmp_path / "evil.pt"
    payload = {"state_dict": {"w": torch.zeros(2)}, "extra": _Evil(str(marker))}
    if how == "pickle":
        with open(p, "wb") as fh:
            pickle.dump(payload, fh, protocol=2)
    else:
        torch.save(payload, p)
    assert not marker.exists()
    # the payload really is a call to exec (checked without unpickling it)
    raw = p.read_bytes()
    if how == "torch.save":
        import zipfile

        with zipfile.ZipFile(p) as z:
            raw = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(raw)]
    assert ("SHORT_BINUNICODE", "exec") in ops or ("BINUNICODE", "exec") in ops or any(
        name == "GLOBAL" and "exec" in str(arg) for name, arg in ops
    )
    assert any(name == "REDUCE" for name, _ in ops)
    with pytest.raises(ValueError, match="refusing to unpickle"):
        load_state_dict(p)
    with pytest.raises(ValueError, match="refusing to unpickle"):
        load_checkpoint_into(nn.Linear(1, 2), p)
    assert not marker.exists()
