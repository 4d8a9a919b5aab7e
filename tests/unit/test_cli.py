"""The ``lossviz`` command line, run in-process through ``main([...])`` and once as a real process.

Ground truth: the loss and accuracy of the model computed directly (``F.cross_entropy(model(X), y)``)
at the center, at points ``θ0 + x·d`` read back from the direction file, and at both ends of an
interpolation."""

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lossviz.cli import main
from lossviz.io.checkpoints import save_state_dict
from lossviz.params import ParamSpace
from lossviz.zoo import get_data, get_model

torch.set_num_threads(1)

SPIRALS = ["--dataset", "spirals", "--data-kwargs", '{"n": 120, "n_test": 40}', "--no-progress"]


def _spirals(split="train"):
    train, test = get_data("spirals", n=120, n_test=40)
    return (train if split == "train" else test).tensors


def _direct(model, X, y, dtype=torch.float64):
    """Mean cross-entropy and accuracy (percent) of ``model`` itself, in ``dtype``."""
    m = model.to(dtype).eval()
    with torch.no_grad():
        out = m(X.to(dtype))
    return float(F.cross_entropy(out, y)), float((out.argmax(1) == y).double().mean() * 100)


def _save_model(path, seed, **kwargs):
    torch.manual_seed(seed)
    model = get_model(kwargs.pop("name", "mlp"), **kwargs)
    torch.save(model.state_dict(), path)
    return model


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_2d_surface_end_to_end(tmp_path, capsys):
    model = _save_model(tmp_path / "a.pt", seed=3)
    out, dirs = tmp_path / "s.h5", tmp_path / "d.h5"
    code, stdout, err = _run(
        capsys, "surface", "--model", "mlp", "--model-file", tmp_path / "a.pt", "--x=-1:1:5", "--y=-1:1:3",
        *SPIRALS, "--split", "both", "--out", out, "--dir-out", dirs, "--seed", 7,
    )
    assert code == 0, err
    assert "wrote" in stdout
    with h5py.File(out, "r") as f:
        assert np.array_equal(f["xcoordinates"][()], np.linspace(-1, 1, 5))
        assert np.array_equal(f["ycoordinates"][()], np.linspace(-1, 1, 3))
        for name in ("train_loss", "train_acc", "test_loss", "test_acc"):
            assert f[name].shape == (3, 5)  # non-square grids: (ny, nx), row = y
            assert np.isfinite(f[name][()]).all()
        assert f["dir_file"][()].decode() == str(dirs)
        values = {k: f[k][()] for k in ("train_loss", "train_acc", "test_loss", "test_acc")}
    X, y = _spirals("train")
    loss, acc = _direct(model, X, y)
    assert values["train_loss"][1, 2] == pytest.approx(loss, rel=1e-5)
    assert values["train_acc"][1, 2] == pytest.approx(acc, abs=1e-9)
    Xt, yt = _spirals("test")
    assert values["test_loss"][1, 2] == pytest.approx(_direct(model, Xt, yt)[0], rel=1e-5)
    # off the center: θ0 + x·d1 + y·d2 with the directions written to the direction file
    with h5py.File(dirs, "r") as f:
        assert set(f) >= {"xdirection", "ydirection"}
        d1 = torch.cat([torch.from_numpy(f["xdirection"][str(i)][()]).reshape(-1) for i in range(6)]).double()
        d2 = torch.cat([torch.from_numpy(f["ydirection"][str(i)][()]).reshape(-1) for i in range(6)]).double()
    space = ParamSpace(model, "weights")
    center = space.vector(model, dtype=torch.float64)
    probe = get_model("mlp").double()
    for i, j in [(0, 0), (2, 4), (0, 3)]:
        xv, yv = np.linspace(-1, 1, 5)[j], np.linspace(-1, 1, 3)[i]
        space.load_into(probe, center + xv * d1 + yv * d2)
        assert values["train_loss"][i, j] == pytest.approx(_direct(probe, X, y)[0], rel=1e-5)
    # biases are ignored (biasbn): the 1-D entries of the directions are zero
    assert all(float(d1[e.slice].abs().max()) == 0 for e in space.entries if e.dim == 1)
    # a second run reads the same direction file and gives the same surface
    out2 = tmp_path / "s2.h5"
    code, _, err = _run(
        capsys, "surface", "--model-file", tmp_path / "a.pt", "--x=-1:1:5", "--y=-1:1:3", *SPIRALS,
        "--split", "both", "--out", out2, "--dir-file", dirs, "--seed", 99,
    )
    assert code == 0, err
    with h5py.File(out2, "r") as f:
        np.testing.assert_allclose(f["train_loss"][()], values["train_loss"], rtol=1e-6)
    code, stdout, _ = _run(capsys, "info", out)
    assert code == 0 and "2D surface" in stdout and "train_loss" in stdout and "test_acc" in stdout


def test_1d_surface_float64_center_and_line(tmp_path, capsys):
    torch.manual_seed(4)
    model = get_model("mlp")
    save_state_dict(tmp_path / "a.safetensors", model.state_dict())
    out, dirs = tmp_path / "line.h5", tmp_path / "dline.h5"
    code, _, err = _run(
        capsys, "surface", "--model-file", tmp_path / "a.safetensors", "--x=-0.5:0.5:5", *SPIRALS,
        "--dtype", "float64", "--xnorm", "layer", "--xignore", "none", "--out", out, "--dir-out", dirs,
    )
    assert code == 0, err
    with h5py.File(out, "r") as f:
        assert "ycoordinates" not in f
        assert f["train_loss"].shape == (5,) and f["train_acc"].shape == (5,)
        line = f["train_loss"][()]
    X, y = _spirals()
    assert line[2] == pytest.approx(_direct(model, X, y)[0], rel=1e-12, abs=1e-12)
    with h5py.File(dirs, "r") as f:
        assert "ydirection" not in f
        d = torch.cat([torch.from_numpy(f["xdirection"][str(i)][()]).reshape(-1) for i in range(6)]).double()
    space = ParamSpace(model)
    center = space.vector(model, dtype=torch.float64)
    # layer normalization: each tensor of d has the norm of the center's tensor (float32 in the file)
    for e in space.entries:
        assert float(d[e.slice].norm()) == pytest.approx(float(center[e.slice].norm()), rel=1e-5)
    probe = get_model("mlp").double()
    space.load_into(probe, center + 0.5 * d)
    assert line[4] == pytest.approx(_direct(probe, X, y)[0], rel=1e-6)


@pytest.mark.parametrize("case", ["mlp-spirals", "cnn-digits-bn"])
def test_interpolation_ends_are_the_two_models(tmp_path, capsys, case):
    if case == "mlp-spirals":
        kwargs, data_args = {}, SPIRALS
        a = _save_model(tmp_path / "a.pt", seed=1)
        b = _save_model(tmp_path / "b.pt", seed=2)
        X, y = _spirals()
    else:
        kwargs = {"in_channels": 1, "width": 4}
        data_args = ["--dataset", "digits", "--max-samples", "150", "--no-progress"]
        models = []
        for seed, name in ((1, "a.pt"), (2, "b.pt")):
            torch.manual_seed(seed)
            m = get_model("cnn", **kwargs)
            for mod in m.modules():  # non-trivial BN running statistics, different in a and b
                if isinstance(mod, torch.nn.BatchNorm2d):
                    mod.running_mean.uniform_(-0.5, 0.5)
                    mod.running_var.uniform_(0.5, 2.0)
            torch.save({"state_dict": m.state_dict()}, tmp_path / name)  # the reference's wrapping
            models.append(m)
        a, b = models
        train, _ = get_data("digits")
        X, y = train.tensors[0][:150], train.tensors[1][:150]
    out = tmp_path / "interp.h5"
    code, _, err = _run(
        capsys, "surface", "--model", "mlp" if case == "mlp-spirals" else "cnn", "--model-kwargs", json.dumps(kwargs),
        "--model-file", tmp_path / "a.pt", "--model-file2", tmp_path / "b.pt", "--x=-0.5:1.5:5",
        *data_args, "--out", out, "--dtype", "float64",
    )
    assert code == 0, err
    with h5py.File(out, "r") as f:
        assert np.array_equal(f["xcoordinates"][()], np.linspace(-0.5, 1.5, 5))
        loss, acc = f["train_loss"][()], f["train_acc"][()]
        meta = json.loads(f.attrs["lossviz_meta"])
    assert meta["kind"] == "states" and meta["interpolation"] == {"a": 0.0, "b": 1.0}
    la, aa = _direct(a, X, y)
    lb, ab = _direct(b, X, y)
    assert abs(la - lb) > 1e-3  # the two ends differ, so the check below can fail
    assert loss[1] == pytest.approx(la, rel=1e-10)
    assert loss[3] == pytest.approx(lb, rel=1e-10)
    assert acc[1] == pytest.approx(aa) and acc[3] == pytest.approx(ab)


def test_plot_and_info_commands(tmp_path, capsys):
    out = tmp_path / "s.h5"
    code, stdout, err = _run(capsys, "surface", "--x=-1:1:4", "--y=-1:1:4", *SPIRALS, "--out", out, "--plot")
    assert code == 0, err
    png, html = tmp_path / "s.png", tmp_path / "s.html"
    if png.exists():  # kaleido installed and working
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert "kaleido" in err or "PNG export failed" in err
        text = html.read_text()
        assert '"type":"contour"' in text and '"type":"surface"' in text
    code, stdout, _ = _run(capsys, "plot", out, "--out", tmp_path / "p.html", "--metric", "train_acc")
    assert code == 0 and (tmp_path / "p.html").exists()
    assert '"type":"contour"' in (tmp_path / "p.html").read_text()
    line = tmp_path / "line.h5"
    # "--x -1:1:4" (a value that looks like an option) is accepted as well as "--x=-1:1:4"
    assert _run(capsys, "surface", "--x", "-1:1:4", *SPIRALS, "--out", line, "--plot", "html")[0] == 0
    assert '"type":"scatter"' in (tmp_path / "line.html").read_text()
    code, stdout, _ = _run(capsys, "info", line)
    assert code == 0 and "1D surface, 4 points" in stdout


def _expect_usage_error(capsys, argv, must_mention, absent):
    code, _stdout, err = _run(capsys, *argv)
    assert code == 2
    msg = err.strip()
    assert "\n" not in msg and "Traceback" not in msg
    for word in must_mention:
        assert word in msg, msg
    for p in absent:
        assert not Path(p).exists(), p
    return msg


def test_bad_inputs_exit_2_and_write_nothing(tmp_path, capsys):
    out, dirs = tmp_path / "out.h5", tmp_path / "dirs.h5"
    _save_model(tmp_path / "a.pt", seed=0)
    _save_model(tmp_path / "small.pt", seed=0, hidden=[16])
    base = ["surface", "--x=-1:1:3", *SPIRALS, "--out", out, "--dir-out", dirs]
    with_a = ["--model-file", tmp_path / "a.pt"]
    cases = [
        (["--x", "-1:1"], ["grid spec", "min:max:num"]),
        (["--y", "1:-1:3"], ["grid spec y", "below max"]),
        (["--model-file", tmp_path / "small.pt"], ["does not fit the model", "net.0.weight", "[16, 2]"]),
        (["--model-file", tmp_path / "missing.pt"], ["missing.pt", "does not exist"]),
        (["--model", "resnet57"], ["unknown model 'resnet57'", "resnet56"]),
        (["--model", "no_such_pkg_xyz:build"], ["cannot import"]),
        (["--dataset", "imagenet"], ["unknown data set 'imagenet'"]),
        (["--model-kwargs", "{bad json"], ["--model-kwargs is not valid JSON"]),
        (["--model", "lenet"], ["cannot take inputs of shape [2]", "spirals"]),
        (["--model-kwargs", '{"out_features": 1}'], ["1 outputs", "num_classes"]),
        ([*with_a, "--model-file2", tmp_path / "small.pt"], ["does not fit the model"]),
        (["--model-file2", tmp_path / "a.pt"], ["--model-file2 needs --model-file"]),
        (["--device", "tpu:3"], ["--device"]),
        (["--same-dir"], ["--same-dir needs a 2D surface"]),
        (["--dataset", "cifar10", "--data-kwargs", "{}", "--data-root", tmp_path / "nodata"],
         ["cifar-10-batches-py", "data_batch_1"]),
        (["--dataset", "digits"], ["data set 'digits'", "bad keyword arguments", "'n'"]),
    ]
    for extra, words in cases:
        _expect_usage_error(capsys, base + extra, words, [out, dirs])
    # an output folder that does not exist
    _expect_usage_error(capsys, ["surface", *SPIRALS, "--out", tmp_path / "nope" / "s.h5"], ["does not exist"], [])
    # an existing output stays as it was when the run fails
    out.write_bytes(b"previous result")
    _expect_usage_error(capsys, [*base, "--model-file", tmp_path / "small.pt"], ["does not fit"], [dirs])
    assert out.read_bytes() == b"previous result"
    out.unlink()
    # h5 files without the expected datasets: as a direction file, and for plot / info
    with h5py.File(tmp_path / "junk.h5", "w") as f:
        f["something"] = np.arange(3)
    _expect_usage_error(capsys, ["surface", "--x=-1:1:3", *SPIRALS, "--out", out, "--dir-file", tmp_path / "junk.h5"],
                        ["junk.h5", "xdirection"], [out])
    _expect_usage_error(capsys, ["info", tmp_path / "junk.h5"], ["junk.h5", "xcoordinates"], [])
    _expect_usage_error(capsys, ["plot", tmp_path / "junk.h5", "--out", tmp_path / "junk.html"],
                        ["junk.h5", "xcoordinates"], [tmp_path / "junk.html"])
    (tmp_path / "text.h5").write_text("not hdf5")
    _expect_usage_error(capsys, ["info", tmp_path / "text.h5"], ["text.h5"], [])
    _expect_usage_error(capsys, ["info", tmp_path / "absent.h5"], ["absent.h5", "does not exist"], [])
    # a 2D direction file used for a 1D surface
    assert _run(capsys, "surface", "--x=-1:1:3", "--y=-1:1:3", *SPIRALS, "--out", tmp_path / "ok.h5",
                "--dir-out", dirs)[0] == 0
    _expect_usage_error(capsys, ["surface", "--x=-1:1:3", *SPIRALS, "--out", out, "--dir-file", dirs],
                        ["holds 2 direction(s)", "1D"], [out])
    # argparse rejects unknown choices with its own usage message, status 2
    assert main(["surface", "--xnorm", "bogus"]) == 2


@pytest.mark.system  # starts processes: a system test in the unit file of the module it exercises
def test_entry_point_runs_as_a_process(tmp_path):
    exe = Path(sys.executable).with_name("lossviz")
    assert exe.exists(), "the lossviz console script is not installed: pip install -e ."
    torch.manual_seed(0)
    out = tmp_path / "proc.h5"
    res = subprocess.run(
        [str(exe), "surface", "--x=-1:1:3", "--y=-1:1:3", *SPIRALS, "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr
    with h5py.File(out, "r") as f:
        assert f["train_loss"].shape == (3, 3)
        center = f["train_loss"][1, 1]
    # without --model-file the model is get_model("mlp") initialized under torch.manual_seed(--seed=0)
    torch.manual_seed(0)
    X, y = _spirals()
    assert center == pytest.approx(_direct(get_model("mlp"), X, y)[0], rel=1e-5)
    bad = subprocess.run([str(exe), "surface", "--x", "1:2:x", "--out", str(tmp_path / "bad.h5")],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "grid spec" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "bad.h5").exists()


def test_mse_loss_is_the_references(tmp_path, capsys):
    model = _save_model(tmp_path / "a.pt", seed=5)
    out = tmp_path / "mse.h5"
    code, _, err = _run(capsys, "surface", "--model-file", tmp_path / "a.pt", "--x=-1:1:3", *SPIRALS,
                        "--loss", "mse", "--dtype", "float64", "--out", out)
    assert code == 0, err
    X, y = _spirals()
    with torch.no_grad():
        p = torch.softmax(model.double()(X.double()), dim=1)
    onehot = torch.zeros_like(p)
    onehot[torch.arange(len(y)), y] = 1.0
    expected = float(((p - onehot) ** 2).mean())  # the reference: MSELoss(softmax(z), one_hot)
    with h5py.File(out, "r") as f:
        assert f["train_loss"][1] == pytest.approx(expected, rel=1e-10)
        assert f["train_acc"][1] == pytest.approx(_direct(model, X, y)[1])


@pytest.mark.parametrize("dataset,model,kwargs", [
    ("cifar10", "resnet20", {}),
    ("mnist", "lenet", {}),
])
def test_surface_on_torchvision_folders(tmp_path, capsys, dataset, model, kwargs):
    """The CLI reads fake CIFAR-10 / MNIST folders (torchvision's formats) through torchvision."""
    from lossviz.zoo import write_fake_cifar10, write_fake_mnist

    if dataset == "cifar10":
        write_fake_cifar10(tmp_path / "data", n_train=10, n_test=8, seed=1)
        data_kwargs = {"verify": False}
    else:
        write_fake_mnist(tmp_path / "data", n_train=10, n_test=8, seed=1)
        data_kwargs = {}
    torch.manual_seed(0)
    net = get_model(model, **kwargs)
    torch.save(net.state_dict(), tmp_path / "m.pt")
    out = tmp_path / "s.h5"
    code, _, err = _run(
        capsys, "surface", "--model", model, "--model-file", tmp_path / "m.pt", "--dataset", dataset,
        "--data-root", tmp_path / "data", "--data-kwargs", json.dumps(data_kwargs), "--max-samples", 6,
        "--split", "test", "--x=-1:1:3", "--dir-type", "states", "--no-progress", "--out", out,
    )
    assert code == 0, err
    _, test = get_data(dataset, tmp_path / "data", **data_kwargs)
    X = torch.stack([test[i][0] for i in range(6)])
    y = torch.tensor([test[i][1] for i in range(6)])
    with h5py.File(out, "r") as f:
        assert set(f) >= {"test_loss", "test_acc"} and "train_loss" not in f
        assert f["test_loss"][1] == pytest.approx(_direct(net, X, y)[0], rel=1e-4)


# ------------------------------------------------------------------ --dataset factory, --adaptive, --subsample
# Ground truth: compute_surface on the same model, data and directions (a direction file the test writes,
# which the CLI reads), in float64.

def _dir_file(path, model, ndim, seed=11):
    """A direction file of ``ndim`` filter-normalized random directions; returns them as read back."""
    from lossviz.directions import DirectionSet, random_direction
    from lossviz.io.h5 import read_directions, write_directions

    space = ParamSpace(model)
    center = space.vector(model)
    g = torch.Generator().manual_seed(seed)
    vecs = [random_direction(space, center, generator=g) for _ in range(ndim)]
    write_directions(path, DirectionSet(vecs, kind="weights", seed=seed), space)
    return read_directions(path, space)


def _read(path):
    from lossviz.io.h5 import read_surface

    return read_surface(path)


USER_DATA = '''
import torch
from lossviz.zoo import get_data

class Pairs(torch.utils.data.Dataset):  # a map-style Dataset that is not a TensorDataset
    def __init__(self, X, y):
        self.X, self.y = X, y
    def __len__(self):
        return len(self.y)
    def __getitem__(self, i):
        return self.X[i], self.y[i]

def spirals(n=90, n_test=30, split_kinds="dict"):
    train, test = get_data("spirals", n=n, n_test=n_test, seed=5)
    if split_kinds == "pair":
        return train.tensors
    if split_kinds == "dataset":
        return Pairs(*train.tensors)
    return {"train": Pairs(*train.tensors), "test": test.tensors}

def only_train(**kw):
    return {"train": spirals(split_kinds="pair")}

def returns_int(**kw):
    return 42

def bad_key(**kw):
    return {"train": spirals(split_kinds="pair"), "validation": spirals(split_kinds="pair")}

def bad_part(**kw):
    return {"train": [1, 2, 3]}

def mismatched(**kw):
    X, y = spirals(split_kinds="pair")
    return X, y[:-1]

NOT_CALLABLE = [1, 2]
'''


@pytest.fixture
def user_data(tmp_path, monkeypatch):
    """A user module ``lvz_user_data_<n>`` with data factories, importable from tmp_path."""
    name = f"lvz_user_data_{abs(hash(str(tmp_path)))}"
    (tmp_path / f"{name}.py").write_text(USER_DATA)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


@pytest.mark.parametrize("kind", ["dict", "pair", "dataset"])
def test_dataset_factory_equals_compute_surface(tmp_path, capsys, user_data, kind):
    from lossviz.landscape import compute_surface

    model = _save_model(tmp_path / "a.pt", seed=2)
    dirs = _dir_file(tmp_path / "d.h5", model, 2)
    out = tmp_path / "s.h5"
    split = "both" if kind == "dict" else "train"
    code, _stdout, err = _run(
        capsys, "surface", "--model-file", tmp_path / "a.pt", "--dataset", f"{user_data}:spirals",
        "--data-kwargs", json.dumps({"n": 90, "n_test": 30, "split_kinds": kind}), "--split", split,
        "--x=-1:1:5", "--y=-1:1:3", "--dir-file", tmp_path / "d.h5", "--dtype", "float64", "--no-progress",
        "--out", out,
    )
    assert code == 0, err
    train, test = get_data("spirals", n=90, n_test=30, seed=5)
    ref = compute_surface(model, train.tensors, dirs, x="-1:1:5", y="-1:1:3", dtype=torch.float64,
                          test_data=test.tensors if split == "both" else None, progress=False)
    got = _read(out)
    assert set(got.values) == set(ref.values) == (
        {"train_loss", "train_acc", "test_loss", "test_acc"} if split == "both" else {"train_loss", "train_acc"})
    for name in ref.values:
        np.testing.assert_allclose(got.values[name], ref.values[name], rtol=1e-10, atol=1e-10)
    # and ref is the model itself at the center (independent of the engine)
    assert got.values["train_loss"][1, 2] == pytest.approx(_direct(model, *train.tensors)[0], rel=1e-10)
    assert got.meta["dataset"] == f"{user_data}:spirals"


def test_dataset_factory_bad_inputs_exit_2(tmp_path, capsys, user_data):
    out = tmp_path / "out.h5"
    base = ["surface", "--x=-1:1:3", "--no-progress", "--out", out]
    m = user_data
    cases = [
        (["--dataset", "no_such_module_lvz:make"], ["cannot import module 'no_such_module_lvz'", "PYTHONPATH"]),
        (["--dataset", f"{m}:nope"], ["has no attribute 'nope'", m]),
        (["--dataset", f"{m}:NOT_CALLABLE"], ["'NOT_CALLABLE' is a list, not callable"]),
        (["--dataset", f"{m}:returns_int"],
         ["returned an object of type 'int'", "(X, y) tensors", "Dataset", '"test"']),
        (["--dataset", f"{m}:bad_key"], ["'validation'", '"train" and/or "test"']),
        (["--dataset", f"{m}:bad_part"], ["'train' split is a list of 3", "(X, y) tensors"]),
        (["--dataset", f"{m}:mismatched"], ["'train' split", "targets"]),
        (["--dataset", f"{m}:only_train", "--split", "both"], ["no 'test' split", "--split both", '"test"']),
        (["--dataset", f"{m}:spirals", "--split", "test", "--data-kwargs", '{"split_kinds": "pair"}'],
         ["no 'test' split", "--split test"]),
        (["--dataset", f"{m}:spirals", "--data-kwargs", '{"colour": 1}'], ["--data-kwargs", "colour"]),
        (["--dataset", f"{m}:spirals", "--data-root", tmp_path], ["--data-root is for zoo data sets"]),
        (["--dataset", ":spirals"], ["package.module:factory"]),
        # the fewer-passes flags
        (["--adaptive", "--subsample"], ["--adaptive and --subsample cannot be combined"]),
        (["--rtol", "0.01"], ["--rtol is an option of --adaptive"]),
        (["--sample-rtol", "0.01"], ["--sample-rtol is an option of --subsample"]),
        (["--adaptive", "--budget", "1.5"], ["--budget", "(0, 1]"]),
        (["--adaptive", "--rtol", "0"], ["--rtol must be a positive"]),
        (["--subsample", "--sample-rtol", "-1"], ["--sample-rtol must be a positive"]),
        (["--loss", "l1", "--data-kwargs", '{"n": 40}'], ["--loss l1 cannot compare", "spirals", "cross_entropy"]),
    ]
    for extra, words in cases:
        _expect_usage_error(capsys, base + extra, words, [out])
    assert main(["surface", "--loss", "hinge"]) == 2  # not a name of LOSS_NAMES: argparse's usage error


def test_loss_choices_are_the_loss_table(tmp_path, capsys):
    from lossviz.cli import build_parser
    from lossviz.losses import LOSS_NAMES

    action = next(a for a in build_parser()._subparsers._group_actions[0].choices["surface"]._actions
                  if a.dest == "loss")
    assert sorted(action.choices) == sorted(LOSS_NAMES)
    model = _save_model(tmp_path / "a.pt", seed=6)
    out = tmp_path / "nll.h5"
    code, _, err = _run(capsys, "surface", "--model-file", tmp_path / "a.pt", "--x=-1:1:3", *SPIRALS,
                        "--loss", "nll", "--dtype", "float64", "--out", out)
    assert code == 0, err
    X, y = _spirals()
    with torch.no_grad():
        expected = float(F.nll_loss(model.double()(X.double()), y))
    assert _read(out).values["train_loss"][1] == pytest.approx(expected, rel=1e-10)


def test_adaptive_matches_compute_surface_where_evaluated(tmp_path, capsys):
    from lossviz.landscape import compute_surface

    model = _save_model(tmp_path / "a.pt", seed=3)
    dirs = _dir_file(tmp_path / "d.h5", model, 2)
    out = tmp_path / "ad.h5"
    # 25x25: the coarse lattice is every 2nd point (169), then refinement up to 40% of the grid
    grid = ["--x=-1:1:25", "--y=-1:1:25"]
    code, stdout, err = _run(capsys, "surface", "--model-file", tmp_path / "a.pt", *grid, *SPIRALS, "--adaptive",
                             "--budget", "0.4", "--dtype", "float64", "--dir-file", tmp_path / "d.h5", "--out", out)
    assert code == 0, err
    got = _read(out)
    info = got.meta["adaptive"]
    evaluated = np.zeros(625, dtype=bool)
    evaluated[info["evaluated"]] = True
    evaluated = evaluated.reshape(25, 25)
    n = int(evaluated.sum())
    assert info["n_evaluated"] == n and 169 <= n <= 250  # the coarse lattice, at most the budget
    assert f"adaptive: evaluated {n}/625 grid points" in stdout.strip().splitlines()[-1]
    ref = compute_surface(model, _spirals(), dirs, x="-1:1:25", y="-1:1:25", dtype=torch.float64, progress=False)
    for name in ("train_loss", "train_acc"):
        np.testing.assert_allclose(got.values[name][evaluated], ref.values[name][evaluated], rtol=1e-10, atol=1e-10)
        err_arr = got.errors[name]
        assert err_arr.shape == (25, 25) and np.all(err_arr[evaluated] == 0)
        assert np.all(np.isfinite(got.values[name]))
    assert np.all(got.errors["train_loss"][~evaluated] >= 0) and got.errors["train_loss"][~evaluated].max() > 0
    # the interpolated loss is close to the truth (a smooth surface: 1% is loose, a wrong fill is far off)
    np.testing.assert_allclose(got.values["train_loss"], ref.values["train_loss"], rtol=1e-2)
    with h5py.File(out, "r") as f:  # error arrays in the file, marked as such
        assert f["train_loss_err"].attrs["lossviz_error_of"] == "train_loss"


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_subsample_within_its_standard_errors(tmp_path, capsys, loss):
    from lossviz.landscape import compute_surface

    model = _save_model(tmp_path / "a.pt", seed=4)
    dirs = _dir_file(tmp_path / "d.h5", model, 2)
    out = tmp_path / "sub.h5"
    data = ["--dataset", "spirals", "--data-kwargs", '{"n": 400, "n_test": 40}', "--no-progress"]
    code, stdout, err = _run(capsys, "surface", "--model-file", tmp_path / "a.pt", "--x=-1.5:1.5:9", "--y=-1.5:1.5:9",
                             *data, "--subsample", "--sample-rtol", "0.005", "--loss", loss, "--dtype", "float64",
                             "--dir-file", tmp_path / "d.h5", "--out", out)
    assert code == 0, err
    assert stdout.strip().splitlines()[-1].startswith("subsample: ")
    got = _read(out)
    assert got.meta["loss"] == ("softmax_mse" if loss == "mse" else "cross_entropy")
    X, y = get_data("spirals", n=400, n_test=40)[0].tensors
    from lossviz.losses import softmax_mse

    ref = compute_surface(model, (X, y), dirs, x="-1.5:1.5:9", y="-1.5:1.5:9", dtype=torch.float64, progress=False,
                          loss=softmax_mse if loss == "mse" else "cross_entropy")
    n = np.asarray(got.meta["adaptive"]["samples_per_point"]).reshape(9, 9)
    full = n == 400
    assert full.any() and (~full).any()  # both kinds of points, so both checks below run
    v, se, truth = got.values["train_loss"], got.errors["train_loss"], ref.values["train_loss"]
    np.testing.assert_allclose(v[full], truth[full], rtol=1e-10)
    assert np.all(se[full] == 0) and np.all(se[~full] > 0)
    assert np.all(np.abs(v[~full] - truth[~full]) <= 4 * se[~full])
    np.testing.assert_allclose(got.values["train_acc"][full], ref.values["train_acc"][full], rtol=1e-10)


def test_strategy_batch_size_and_threads_flags_pin_the_engine(tmp_path, capsys):
    import json as _json

    from lossviz.evaluate import forget_plans

    forget_plans()
    model = _save_model(tmp_path / "a.pt", seed=3)
    out = tmp_path / "pinned.h5"
    code, _, err = _run(capsys, "surface", "--model-file", tmp_path / "a.pt", "--x=-1:1:9", *SPIRALS,
                        "--dtype", "float64", "--strategy", "loop", "--batch-size", 7, "--threads", 1, "--out", out)
    assert code == 0, err
    with h5py.File(out, "r") as f:
        meta = _json.loads(f.attrs["lossviz_meta"])
        line = f["train_loss"][()]
    assert (meta["strategy"], meta["batch_size"], meta["plan"], meta["threads"]) == ("loop", 7, "pinned", 1)
    X, y = _spirals()
    assert line[4] == pytest.approx(_direct(model, X, y)[0], rel=1e-12, abs=1e-12)
    base = ["surface", "--x=-1:1:3", *SPIRALS, "--out", out]
    for extra, words in ((["--threads", "0"], ["--threads must be a positive integer"]),
                         (["--batch-size", "0"], ["--batch-size must be a positive integer"])):
        _expect_usage_error(capsys, base + extra, words, [])
    assert main(["surface", "--strategy", "fast"]) == 2
    forget_plans()
