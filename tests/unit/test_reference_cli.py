"""The reference's command line (``tomgoldstein/loss-landscape``'s ``plot_surface.py``) run as ``lossviz surface``.

Ground truth: the reference's README commands and its figure names (the README's image file names are
the files its scripts wrote), its direction draw written out as a plain loop (seed, build the model,
``torch.randn`` per tensor, normalize), and a fresh computation for every resumed one."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from lossviz.cli import main
from lossviz.cli_resume import Interrupted, PartialWriter
from lossviz.io.h5 import read_surface
from lossviz.params import ParamSpace
from lossviz.zoo import get_data, get_model, write_fake_cifar10

torch.set_num_threads(1)

SPIRALS = ["--model", "mlp", "--dataset", "spirals", "--data-kwargs", '{"n": 120, "n_test": 40}', "--no-progress"]

# the README's three plot_surface.py commands, verbatim
README = [
    """mpirun -n 4 python plot_surface.py --mpi --cuda --model vgg9 --x=-0.5:1.5:401 --dir_type states \\
--model_file cifar10/trained_nets/vgg9_sgd_lr=0.1_bs=128_wd=0.0_save_epoch=1/model_300.t7 \\
--model_file2 cifar10/trained_nets/vgg9_sgd_lr=0.1_bs=8192_wd=0.0_save_epoch=1/model_300.t7 --plot""",
    """mpirun -n 4 python plot_surface.py --mpi --cuda --model vgg9 --x=-1:1:51 \\
--model_file cifar10/trained_nets/vgg9_sgd_lr=0.1_bs=128_wd=0.0_save_epoch=1/model_300.t7 \\
--dir_type weights --xnorm filter --xignore biasbn --plot""",
    """mpirun -n 4 python plot_surface.py --mpi --cuda --model resnet56 --x=-1:1:51 --y=-1:1:51 \\
--model_file cifar10/trained_nets/resnet56_sgd_lr=0.1_bs=128_wd=0.0005/model_300.t7 \\
--dir_type weights --xnorm filter --xignore biasbn --ynorm filter --yignore biasbn  --plot""",
]
# the README's figures of those commands (its doc/images names, less the '.jpg' of a converted PDF), with the
# commands' grids: the surface file names are the direction file's plus the grid
README_FIGURES = [
    "cifar10/trained_nets/vgg9_sgd_lr=0.1_bs=128_wd=0.0_save_epoch=1_model_300.t7_vgg9_sgd_lr=0.1_bs=8192_"
    "wd=0.0_save_epoch=1_model_300.t7_states.h5_[-0.5,1.5,3].h5_1d_loss_acc",
    "cifar10/trained_nets/vgg9_sgd_lr=0.1_bs=128_wd=0.0_save_epoch=1/model_300.t7_weights_xignore=biasbn_"
    "xnorm=filter.h5_[-1.0,1.0,3].h5_1d_loss_acc",
    "cifar10/trained_nets/resnet56_sgd_lr=0.1_bs=128_wd=0.0005/model_300.t7_weights_xignore=biasbn_"
    "xnorm=filter_yignore=biasbn_ynorm=filter.h5_[-1.0,1.0,3]x[-1.0,1.0,3].h5_train_loss_2dcontour",
]


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _save_model(path, seed, name="mlp", **kwargs):
    torch.manual_seed(seed)
    model = get_model(name, **kwargs)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model


def _pasted(command: str) -> list[str]:
    """The README command as ``lossviz surface`` arguments (``mpirun -n 4`` and ``python plot_surface.py``
    replaced; ``--cuda`` kept only where CUDA is)."""
    words = shlex.split(command.replace("\\\n", " "))
    words = words[words.index("plot_surface.py") + 1:]
    if not torch.cuda.is_available():
        words.remove("--cuda")
    return ["surface", *[w for w in words if w != "--mpi"]]


def test_readme_commands_run_when_pasted(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_fake_cifar10(tmp_path / "cifar10" / "data", n_train=10, n_test=5, seed=1)
    for cmd in README:
        for word in shlex.split(cmd.replace("\\\n", " ")):
            if word.endswith(".t7"):
                _save_model(word, seed=len(word), name="vgg9" if "vgg9" in word else "resnet56")
    small = ["--max-samples", "4", "--data-kwargs", '{"verify": false}', "--no-progress"]  # test-sized runs
    for cmd, figure in zip(README, README_FIGURES, strict=True):
        argv = _pasted(cmd)
        grid = ["--x=" + ("-0.5:1.5:3" if "-0.5:1.5" in cmd else "-1:1:3")] + (["--y=-1:1:3"] if "--y" in cmd else [])
        code, out, err = _run(capsys, *argv, *grid, *small)
        assert code == 0, err
        surf_file = figure[: figure.rindex(".h5") + 3]
        assert Path(surf_file).is_file(), (surf_file, out)
        assert Path(figure + ".png").is_file() and Path(figure + ".pdf").is_file(), out  # --plot: both
        assert "cifar10" in err and "cifar10/data" in err  # the reference's data set default, said once
        assert err.count("note:") == 1
        s = read_surface(surf_file)
        assert np.isfinite(s.values["train_loss"]).all() and s.meta["dataset"] == "cifar10"
    # the interpolation's ends are the two models (states, as --dir_type states asked)
    s = read_surface(README_FIGURES[0][: README_FIGURES[0].rindex(".h5") + 3])
    assert s.meta["kind"] == "states" and s.meta["method"] == "target"


def _reference_direction(model, seed_state, kind="weights", norm="filter", ignore="biasbn", n=1):
    """net_plotter.create_random_direction as a loop, from torch's global state ``seed_state``."""
    torch.set_rng_state(seed_state)
    tensors = [p.data for p in model.parameters()] if kind == "weights" else list(model.state_dict().values())
    out = []
    for _ in range(n):
        ds = [torch.randn(w.size()) for w in tensors]
        for d, w in zip(ds, tensors, strict=True):
            if d.dim() <= 1:
                d.fill_(0) if ignore == "biasbn" else d.copy_(w)
            elif norm == "filter":
                for df, wf in zip(d, w, strict=True):
                    df.mul_(wf.norm() / (df.norm() + 1e-10))
        out.append(ds)
    return out


@pytest.mark.parametrize("kind", ["weights", "states"])
def test_seed_123_gives_the_references_directions(tmp_path, capsys, kind):
    name = "mlp" if kind == "weights" else "cnn"
    kw = {} if kind == "weights" else {"in_channels": 1, "width": 4}
    _save_model(tmp_path / "a.pt", seed=5, name=name, **kw)
    # the reference: torch.manual_seed(123), then model_loader.load (init draws), then the directions
    torch.manual_seed(123)
    net = get_model(name, **kw)
    net.load_state_dict(torch.load(tmp_path / "a.pt", weights_only=True))
    state = torch.get_rng_state()
    want = _reference_direction(net, state, kind=kind, n=2)
    data = ["--dataset", "digits", "--max-samples", "20", "--no-progress"] if kind == "states" else SPIRALS
    code, _, err = _run(capsys, "surface", "--model", name, "--model-kwargs", "{}" if not kw else
                        '{"in_channels": 1, "width": 4}', "--model_file", tmp_path / "a.pt", "--x=-1:1:3",
                        "--y=-1:1:3", "--dir_type", kind, "--xnorm", "filter", "--ynorm", "filter", "--xignore",
                        "biasbn", "--yignore", "biasbn", "--seed", "123", *data, "--out", tmp_path / "s.h5",
                        "--dir-out", tmp_path / "d.h5")
    assert code == 0, err
    with h5py.File(tmp_path / "d.h5", "r") as f:
        for group, ds in zip(("xdirection", "ydirection"), want, strict=True):
            for i, d in enumerate(ds):
                if d.is_floating_point():
                    np.testing.assert_allclose(f[group][str(i)][()], d.numpy(), rtol=1e-6, atol=1e-7)


def test_dir_file_that_does_not_exist_is_refused(tmp_path, capsys):
    code, _, err = _run(capsys, "surface", *SPIRALS, "--x=-1:1:3", "--out", tmp_path / "s.h5",
                        "--dir_file", tmp_path / "typo.h5")
    assert code == 2
    assert "does not exist" in err and "--dir-out" in err and "typo.h5" in err
    assert not (tmp_path / "s.h5").exists() and not (tmp_path / "typo.h5").exists()


def test_note_only_when_a_pasted_command_relied_on_the_references_defaults(tmp_path, capsys):
    _save_model(tmp_path / "a.pt", seed=1)
    base = ["surface", *SPIRALS, "--x=-1:1:3", "--model_file", tmp_path / "a.pt"]
    code, _, err = _run(capsys, *base, "--out", tmp_path / "a.h5")
    assert code == 0 and err.count("note:") == 1 and "--xnorm/--xignore not given" in err and "123" in err
    code, _, err = _run(capsys, *base, "--xnorm", "filter", "--xignore", "biasbn", "--out", tmp_path / "b.h5")
    assert code == 0 and "note:" not in err
    code, _, err = _run(capsys, "surface", *SPIRALS, "--x=-1:1:3", "--out", tmp_path / "c.h5")  # our spelling
    assert code == 0 and "note:" not in err
    _save_model(tmp_path / "b.pt", seed=2)
    code, _, err = _run(capsys, *base, "--model_file2", tmp_path / "b.pt", "--out", tmp_path / "i.h5")
    assert code == 0 and err.count("note:") == 1 and "--dir_type not given: states" in err
    assert "--xnorm" not in err  # the rules do not apply to a line
    # the reference's '' is none: no normalization, and the 1-D entries set to the model's own values
    code, _, err = _run(capsys, *base, "--xnorm", "", "--xignore", "", "--out", tmp_path / "d.h5",
                        "--dir-out", tmp_path / "dd.h5")
    assert code == 0, err
    s = read_surface(tmp_path / "d.h5")
    assert s.meta["normalization"] is None and s.meta["ignore"] is None


def test_files_named_from_the_flags_and_reused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _save_model(tmp_path / "nets" / "model_10.t7", seed=1)
    argv = ["surface", *SPIRALS, "--model_file", "nets/model_10.t7", "--x=-1:1:3", "--y=-1:1:5",
            "--xnorm", "filter", "--ynorm", "layer", "--xignore", "biasbn", "--same_dir", "--idx", "2"]
    code, out, err = _run(capsys, *argv)
    assert code == 0, err
    dir_file = "nets/model_10.t7_weights_xignore=biasbn_xnorm=filter_ynorm=layer_same_dir_idx=2.h5"
    surf_file = dir_file + "_[-1.0,1.0,3]x[-1.0,1.0,5].h5"
    assert Path(dir_file).is_file() and Path(surf_file).is_file(), out
    first = read_surface(surf_file)
    assert first.meta["dir_file"] == dir_file
    # the same command again reads the direction file and finds the surface complete
    code, out, err = _run(capsys, *argv)
    assert code == 0 and f"read {dir_file}" in out and "resuming" in err and "15/15" in err
    np.testing.assert_array_equal(read_surface(surf_file).values["train_loss"], first.values["train_loss"])
    # the data-split and raw-data parts of the name
    code, out, err = _run(capsys, *argv, "--data_split", "3", "--split_idx", "1")
    assert code == 0, err
    assert Path(dir_file + "_[-1.0,1.0,3]x[-1.0,1.0,5]_datasplit=3_splitidx=1.h5").is_file()


def test_resume_reads_the_references_minus_one_as_unfinished(tmp_path, capsys):
    model = _save_model(tmp_path / "a.pt", seed=2)
    argv = ["surface", *SPIRALS, "--model_file", tmp_path / "a.pt", "--x=-1:1:4", "--y=-1:1:4"]
    assert _run(capsys, *argv, "--out", tmp_path / "full.h5", "--dir-out", tmp_path / "d.h5")[0] == 0
    full = read_surface(tmp_path / "full.h5")
    # the reference's crunch(): -np.ones(shape), filled point by point; here half done, the done half
    # marked 7.0 so that a recomputation would show
    ref = tmp_path / "ref.h5"
    done = np.zeros((4, 4), dtype=bool)
    done.ravel()[::2] = True
    with h5py.File(ref, "w") as f:
        f["dir_file"] = str(tmp_path / "d.h5")
        f["xcoordinates"] = np.linspace(-1, 1, 4)
        f["ycoordinates"] = np.linspace(-1, 1, 4)
        f["train_loss"] = np.where(done, 7.0, -1.0)
        f["train_acc"] = np.where(done, 7.0, -1.0)
    code, _, err = _run(capsys, *argv, "--dir-file", tmp_path / "d.h5", "--out", ref)
    assert code == 0, err
    assert "resuming" in err and "8/16" in err
    s = read_surface(ref)
    assert np.all(s.values["train_loss"][done] == 7.0)  # finished points are kept, not recomputed
    np.testing.assert_allclose(s.values["train_loss"][~done], full.values["train_loss"][~done], rtol=1e-6)
    assert s.done.all()
    del model


def test_partial_surface_resumes_and_another_is_refused(tmp_path, capsys):
    _save_model(tmp_path / "a.pt", seed=3)
    argv = ["surface", *SPIRALS, "--model-file", tmp_path / "a.pt", "--x=-1:1:5", "--y=-1:1:3", "--seed", "4"]
    out = tmp_path / "s.h5"
    assert _run(capsys, *argv, "--out", out)[0] == 0
    full = read_surface(out)
    # make it partial: 6 points unfinished (NaN, not done); the finished ones marked
    partial = read_surface(out)
    todo = np.zeros(partial.shape, dtype=bool)
    todo.ravel()[[0, 3, 7, 8, 11, 14]] = True
    for v in partial.values.values():
        v[todo] = np.nan
        v[~todo] = 5.0
    partial.done = ~todo
    from lossviz.io.h5 import write_surface

    write_surface(out, partial)
    code, _, err = _run(capsys, *argv, "--out", out)
    assert code == 0 and "resuming" in err and "9/15" in err
    s = read_surface(out)
    assert np.all(s.values["train_loss"][~todo] == 5.0)
    np.testing.assert_allclose(s.values["train_loss"][todo], full.values["train_loss"][todo], rtol=1e-6)
    # another computation into the same file is refused (it would mix two surfaces), --overwrite replaces
    code, _, err = _run(capsys, *argv[:-1], "7", "--out", out)
    assert code == 2 and "cannot be resumed" in err and "--overwrite" in err
    assert np.all(read_surface(out).values["train_loss"][~todo] == 5.0)
    code, _, err = _run(capsys, *argv[:-1], "7", "--out", out, "--overwrite")
    assert code == 0 and "resuming" not in err


def test_partial_writer_flushes_on_time_and_on_signal(monkeypatch):
    written = []
    w = PartialWriter(lambda s: written.append(dict(s)), every=3600)
    w({"n": 1}, 1, 4)
    assert written == []  # not yet due
    w.every = 0.0
    w({"n": 2}, 2, 4)
    assert written == [{"n": 2}]
    with w.on_signals(), pytest.raises(Interrupted) as info:  # noqa: PT012 - the signal arrives during the sleep
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)
    assert info.value.signum == signal.SIGTERM and written[-1] == {"n": 2} and len(written) == 2
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(signal.getsignal(signal.SIGTERM))


def test_other_reference_flags(tmp_path, capsys):
    a = _save_model(tmp_path / "a.pt", seed=1)
    c = _save_model(tmp_path / "c.pt", seed=3)
    base = ["surface", *SPIRALS, "--model_file", tmp_path / "a.pt", "--xnorm", "filter", "--xignore", "biasbn"]
    # --model_file3: the y direction is the line to the third model (y = 1 is that model)
    code, _, err = _run(capsys, *base, "--x=-1:1:3", "--y=0:1:2", "--model_file3", tmp_path / "c.pt",
                        "--out", tmp_path / "m3.h5", "--dtype", "float64")
    assert code == 0, err
    s = read_surface(tmp_path / "m3.h5")
    X, y = get_data("spirals", n=120, n_test=40)[0].tensors
    with torch.no_grad():
        want = float(torch.nn.functional.cross_entropy(c.double()(X.double()), y))
    assert s.values["train_loss"][1, 1] == pytest.approx(want, rel=1e-9)
    # --loss_name crossentropy is cross_entropy, mse the reference's MSE
    for value in ("crossentropy", "mse"):
        code, _, err = _run(capsys, *base, "--x=-1:1:3", "--loss_name", value, "--out", tmp_path / f"{value}.h5")
        assert code == 0, err
    assert read_surface(tmp_path / "crossentropy.h5").meta["loss"] in ("cross_entropy", "ce")
    # --data_split 3 --split_idx 2: the last third of the train split
    code, _, err = _run(capsys, *base, "--x=0:0:1", "--data_split", "3", "--split_idx", "2", "--out", tmp_path / "p.h5")
    assert code == 0, err
    with torch.no_grad():
        part = float(torch.nn.functional.cross_entropy(a(X[80:]), y[80:]))
    assert read_surface(tmp_path / "p.h5").values["train_loss"][0] == pytest.approx(part, rel=1e-5)
    # flags with no meaning here say why
    code, _, err = _run(capsys, *base, "--x=-1:1:3", "--trainloader", "x.pt", "--out", tmp_path / "t.h5")
    assert code == 2 and "never unpickles" in err
    code, _, err = _run(capsys, *base, "--x=-1:1:3", "--raw_data", "--out", tmp_path / "r.h5")
    assert code == 2 and "--raw-data is for mnist / cifar10" in err
    code, _, err = _run(capsys, "surface", "--model", "mlp", "--dataset", "cifar10", "--data-kwargs",
                        '{"augment": true}', "--x=-1:1:3", "--out", tmp_path / "r.h5", "--no-progress")
    assert code == 2 and "augment" in err and not (tmp_path / "r.h5").exists()
    if not torch.cuda.is_available():
        code, _, err = _run(capsys, *base, "--x=-1:1:3", "--ngpu", "2", "--out", tmp_path / "g.h5")
        assert code == 2 and "--ngpu 2" in err
        code, _, err = _run(capsys, *base, "--x=-1:1:3", "-c", "--out", tmp_path / "g.h5")  # as the reference
        assert code == 2 and "CUDA is not available" in err
    th = tmp_path / "th.h5"
    assert _run(capsys, *base, "--x=-1:1:3", "--threads", "2", "--batch_size", "64", "--out", th)[0] == 0


@pytest.mark.system  # starts processes
def test_sigterm_flushes_and_the_same_command_resumes(tmp_path):
    torch.manual_seed(0)
    torch.save(get_model("mlp", hidden=[256, 256]).state_dict(), tmp_path / "a.pt")
    cmd = [sys.executable, "-m", "lossviz.cli", "surface", "--model-kwargs", '{"hidden": [256, 256]}',
           "--model-file", "a.pt", "--data-kwargs", '{"n": 2000, "n_test": 10}', "--x=-1:1:25", "--y=-1:1:25",
           "--strategy", "loop", "--threads", "1", "--flush-every", "0.2", "--no-progress", "--out", "s.h5"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "s.h5").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "interrupted by SIGTERM" in err and "resume" in err
    partial = read_surface(tmp_path / "s.h5")
    n_done = int(partial.done.sum())
    assert 0 < n_done < partial.done.size
    assert np.isnan(partial.values["train_loss"][~partial.done]).all()
    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"resuming s.h5: {n_done}/{partial.done.size}" in again.stderr
    fresh = subprocess.run([*cmd[:-1], "fresh.h5"], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=600)
    assert fresh.returncode == 0, fresh.stderr
    done, ref = read_surface(tmp_path / "s.h5"), read_surface(tmp_path / "fresh.h5")
    assert done.done.all()
    np.testing.assert_allclose(done.values["train_loss"], ref.values["train_loss"], rtol=1e-5)
    np.testing.assert_array_equal(done.values["train_loss"][partial.done], partial.values["train_loss"][partial.done])


# ---------------------------------------------------------------------------------------- the other scripts
def test_trajectory_is_plot_trajectory(tmp_path, capsys):
    from sklearn.decomposition import PCA

    folder = tmp_path / "run"
    torch.manual_seed(0)
    model = get_model("mlp", hidden=[6])
    vectors = []
    for epoch in range(0, 9, 2):  # a drifting trajectory, saved every 2 epochs
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p) + 0.05 * epoch)
        _save = folder / f"model_{epoch}.t7"
        folder.mkdir(exist_ok=True)
        torch.save(model.state_dict(), _save)
        vectors.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double())
    code, out, err = _run(capsys, "trajectory", "--model", "mlp", "--model-kwargs", '{"hidden": [6]}',
                          "--model_folder", folder, "--max_epoch", "8", "--save_epoch", "2", "--ignore", "biasbn")
    assert code == 0, err
    dir_file = folder / "PCA_weights_ignore=biasbn_save_epoch=2" / "directions.h5"
    proj_file = Path(str(dir_file) + "_proj_cos.h5")
    assert dir_file.is_file() and proj_file.is_file() and Path(str(proj_file) + ".pdf").is_file()
    # ground truth: sklearn's PCA of w_i - w_last over all but the last, 1-D entries zeroed (setup_PCA_directions)
    space = ParamSpace(model)
    one_d = space.mask("1d").numpy()
    rows = (torch.stack(vectors[:-1]) - vectors[-1]).numpy()
    rows[:, one_d] = 0
    pca = PCA(n_components=2).fit(rows)
    with h5py.File(dir_file, "r") as f:
        np.testing.assert_allclose(f["explained_variance_ratio_"][()], pca.explained_variance_ratio_, rtol=1e-6)
        got = [torch.cat([torch.from_numpy(f[g][str(i)][()]).reshape(-1) for i in range(len(space.entries))])
               for g in ("xdirection", "ydirection")]
    for d, comp in zip(got, pca.components_, strict=True):
        np.testing.assert_allclose(d.double().numpy(), comp, atol=1e-6)
    with h5py.File(proj_file, "r") as f:
        xs, ys = f["proj_xcoord"][()], f["proj_ycoord"][()]
    all_rows = (torch.stack(vectors) - vectors[-1]).numpy()
    np.testing.assert_allclose(xs, all_rows @ pca.components_[0], atol=1e-5)  # 'cos': <w_i - w, d> / |d|
    np.testing.assert_allclose(ys, all_rows @ pca.components_[1], atol=1e-5)
    # the projected path over a surface on those directions (plot_surface.py --dir_file --proj_file --plot)
    code, out, err = _run(capsys, "surface", *SPIRALS, "--model-kwargs", '{"hidden": [6]}', "--model_file",
                          folder / "model_8.t7", "--dir_file", dir_file, "--x=-1:1:4", "--y=-1:1:4",
                          "--proj_file", proj_file, "--plot", "pdf")
    assert code == 0, err
    assert "2dcontour_proj.pdf" in out


def test_vtp_is_h52vtp_and_interp_is_bicubic(tmp_path, capsys):
    x, y = np.linspace(-1, 1, 6), np.linspace(-2, 1, 7)
    X, Y = np.meshgrid(x, y)
    Z = 8 + X**2 + X * Y + 0.5 * Y**3  # a bicubic spline reproduces it exactly (and log(z + 0.1) is defined)
    surf = tmp_path / "s.h5"
    with h5py.File(surf, "w") as f:
        f["dir_file"] = ""
        f["xcoordinates"], f["ycoordinates"], f["train_loss"] = x, y, Z
    # the README's command: python h52vtp.py --surf_file path_to_surf_file --surf_name train_loss --zmax 10 --log
    code, _, err = _run(capsys, "vtp", "--surf_file", surf, "--surf_name", "train_loss", "--zmax", "10", "--log")
    assert code == 0, err
    assert (tmp_path / "s.h5_train_loss_zmax=10.0_log.vtp").is_file()
    code, _out, err = _run(capsys, "vtp", surf, "--interp", "11", "--out", tmp_path / "i.vtp")
    assert code == 0, err
    import xml.etree.ElementTree as ET

    piece = ET.parse(tmp_path / "i.vtp").getroot().find("PolyData/Piece")
    assert piece.get("NumberOfPoints") == "121" and piece.get("NumberOfPolys") == "100"
    pts = np.array(piece.find("Points/DataArray").text.split(), dtype=np.float64).reshape(-1, 3)
    want = 8 + pts[:, 0] ** 2 + pts[:, 0] * pts[:, 1] + 0.5 * pts[:, 1] ** 3
    np.testing.assert_allclose(pts[:, 2], want, atol=1e-10)


def _dense_hessian_extremes(model, X, y, vec):
    import torch.nn.functional as F
    from torch.func import functional_call

    space = ParamSpace(model)
    names = [e.name for e in space.entries]

    def loss(v):
        params = {n: t.view(e.shape) for n, t, e in zip(names, v.split([e.numel for e in space.entries]),
                                                         space.entries, strict=True)}
        return F.cross_entropy(functional_call(model, params, (X,)), y)

    H = torch.autograd.functional.hessian(loss, vec)
    ev = torch.linalg.eigvalsh(H)
    return float(ev[0]), float(ev[-1])


def test_hessian_min_max_eigenvalues_against_the_dense_hessian(tmp_path, capsys):
    model = _save_model(tmp_path / "a.pt", seed=3, hidden=[4]).double()
    argv = ["--model", "mlp", "--model-kwargs", '{"hidden": [4]}', "--model_file", tmp_path / "a.pt",
            "--dataset", "spirals", "--data-kwargs", '{"n": 60, "n_test": 10}', "--no-progress",
            "--x=-1:1:3", "--dtype", "float64", "--xnorm", "filter", "--xignore", "biasbn"]
    out = tmp_path / "s.h5"
    assert _run(capsys, "surface", *argv, "--out", out, "--dir-out", tmp_path / "d.h5")[0] == 0
    code, _stdout, err = _run(capsys, "hessian", *argv, "--out", out, "--dir_file", tmp_path / "d.h5", "--plot", "png")
    assert code == 0, err
    s = read_surface(out)
    assert {"train_loss", "train_acc", "min_eig", "max_eig"} <= set(s.values)  # the loss values are kept
    X, y = get_data("spirals", n=60, n_test=10)[0].tensors
    space = ParamSpace(model)
    center = space.vector(model, dtype=torch.float64)
    with h5py.File(tmp_path / "d.h5", "r") as f:
        d = torch.cat([torch.from_numpy(f["xdirection"][str(i)][()]).reshape(-1) for i in range(len(space.entries))])
    for j, xv in enumerate(np.linspace(-1, 1, 3)):
        lo, hi = _dense_hessian_extremes(model, X.double(), y, center + xv * d.double())
        assert s.values["min_eig"][j] == pytest.approx(lo, rel=1e-4, abs=1e-6)
        assert s.values["max_eig"][j] == pytest.approx(hi, rel=1e-4, abs=1e-6)
    assert (tmp_path / "s.h5_1d_eig_abs_ratio.png").is_file()
    # resumable: only the unfinished point is computed again
    from lossviz.io.h5 import write_surface

    part = read_surface(out)
    part.values["min_eig"][[0, 2]] = -123.0
    part.values["min_eig"][1] = part.values["max_eig"][1] = np.nan
    write_surface(out, part)
    assert _run(capsys, "hessian", *argv, "--out", out, "--dir_file", tmp_path / "d.h5")[0] == 0
    again = read_surface(out)
    assert np.all(again.values["min_eig"][[0, 2]] == -123.0)
    assert again.values["min_eig"][1] == pytest.approx(s.values["min_eig"][1], rel=1e-6, abs=1e-9)


def test_plot_writes_the_references_figures(tmp_path, capsys):
    from lossviz.cli_plot import figure

    two, one = tmp_path / "two.h5", tmp_path / "one.h5"
    assert _run(capsys, "surface", *SPIRALS, "--x=-1:1:5", "--y=-1:1:4", "--split", "both", "--out", two)[0] == 0
    assert _run(capsys, "surface", *SPIRALS, "--x=-1:1:5", "--split", "both", "--out", one)[0] == 0
    # the README's: python plot_2D.py --surf_file path_to_surf_file --surf_name train_loss
    code, _, err = _run(capsys, "plot", "--surf_file", two, "--surf_name", "train_loss", "--vmin", "0.5",
                          "--vmax", "2", "--vlevel", "0.25")
    assert code == 0, err
    for suffix in ("_2dcontour", "_2dcontourf", "_2dheat", "_3dsurface"):
        assert Path(f"{two}_train_loss{suffix}.pdf").read_bytes()[:4] == b"%PDF"
        assert Path(f"{two}_train_loss{suffix}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, _, err = _run(capsys, "plot", one, "--log", "--loss_max", "3", "--format", "pdf")
    assert code == 0, err
    for name in ("_1d_loss_acc_log", "_1d_train_loss_log", "_1d_train_err"):
        assert Path(f"{one}{name}.pdf").is_file()
    code, _out, err = _run(capsys, "plot", two, "--out", tmp_path / "heat.png", "--kind", "heatmap")
    assert code == 0 and (tmp_path / "heat.png").is_file()
    # the contour levels are plot_2D.py's arange(vmin, vmax, vlevel); the 1D loss axis stops at loss_max
    s = read_surface(two)
    opts = type("O", (), {"vmin": 0.5, "vmax": 2.0, "vlevel": 0.25, "log": False, "loss_max": 3.0, "zlim": None})
    cs = figure(s, "contour", "train_loss", opts).axes[0].collections[0]
    np.testing.assert_allclose(cs.levels, np.arange(0.5, 2.0, 0.25))
    ax = figure(read_surface(one), "loss_acc", "train_loss", opts).axes[0]
    assert ax.get_ylim() == (0.0, 3.0) and len(ax.lines) == 2  # train and test loss
    code, _, err = _run(capsys, "plot", one, "--kind", "contour")
    assert code == 2 and "2D" in err


def test_seed_123_order_with_a_second_model(tmp_path, capsys):
    # plot_surface.py --model_file a --model_file2 b --y ...: seed 123, build a, build b (setup_direction),
    # x = b - a, then y drawn: from the stream as it is after both models' initializations
    _save_model(tmp_path / "a.pt", seed=1)
    b = _save_model(tmp_path / "b.pt", seed=2)
    torch.manual_seed(123)
    net = get_model("mlp")
    net.load_state_dict(torch.load(tmp_path / "a.pt", weights_only=True))
    get_model("mlp")  # net2's initialization draws
    (want_y,) = _reference_direction(net, torch.get_rng_state())
    code, _, err = _run(capsys, "surface", *SPIRALS, "--model_file", tmp_path / "a.pt", "--model_file2",
                        tmp_path / "b.pt", "--dir_type", "weights", "--x=0:1:2", "--y=-1:1:3", "--ynorm", "filter",
                        "--yignore", "biasbn", "--seed", "123", "--out", tmp_path / "s.h5",
                        "--dir-out", tmp_path / "d.h5")
    assert code == 0, err
    with h5py.File(tmp_path / "d.h5", "r") as f:
        for i, (d, pa, pb) in enumerate(zip(want_y, net.parameters(), b.parameters(), strict=True)):
            np.testing.assert_allclose(f["ydirection"][str(i)][()], d.numpy(), rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(f["xdirection"][str(i)][()], (pb - pa).detach().numpy(), rtol=1e-6, atol=1e-7)


def test_plot_repeats_and_a_projection_alone(tmp_path, capsys):
    # plot_1D.py --prefix P --idx_min 1 --idx_max 2, and plot_2D.py --proj_file F --dir_file D
    for i in (1, 2):
        argv = ["surface", *SPIRALS, "--x=-1:1:4", "--split", "both", "--seed", str(i), "--out", tmp_path / f"r_{i}.h5"]
        assert _run(capsys, *argv)[0] == 0
    code, _, err = _run(capsys, "plot", "--prefix", tmp_path / "r", "--idx_min", "1", "--idx_max", "2")
    assert code == 0, err
    assert Path(f"{tmp_path / 'r'}_1d_loss_err_repeat.pdf").read_bytes()[:4] == b"%PDF"
    proj, dirs = tmp_path / "p.h5", tmp_path / "pca.h5"
    with h5py.File(proj, "w") as f:
        f["proj_xcoord"], f["proj_ycoord"] = np.linspace(0, 1, 5), np.linspace(1, 0, 5) ** 2
    with h5py.File(dirs, "w") as f:
        f["explained_variance_ratio_"] = np.array([0.7, 0.2])
    code, _, err = _run(capsys, "plot", "--proj_file", proj, "--dir_file", dirs, "--format", "pdf")
    assert code == 0 and Path(f"{proj}.pdf").is_file(), err
