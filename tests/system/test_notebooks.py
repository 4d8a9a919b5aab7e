"""The notebooks: each executed top to bottom (nbclient, LOSSVIZ_FAST=1, cwd a temporary folder), its
results checked; and the committed files stripped of outputs and widget state."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import h5py
import nbformat
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
NAMES = ["quickstart", "li_workflows", "optimizers", "sharpness", "bring_your_own", "language_model"]
CELL_TIMEOUT_S = 300
LI_DATASETS = {"xcoordinates", "ycoordinates", "train_loss", "train_acc", "test_loss", "test_acc", "dir_file"}
TIMES: dict[str, float] = {}


@pytest.fixture(scope="module")
def kernel_name(tmp_path_factory, monkeypatch_module) -> str:
    """A kernelspec running this interpreter (the venv with lossviz), found through JUPYTER_PATH."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / "lossviz-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "lossviz test", "language": "python",
    }))
    monkeypatch_module.setenv("JUPYTER_PATH", str(root))
    monkeypatch_module.setenv("LOSSVIZ_FAST", "1")
    monkeypatch_module.setenv("MPLBACKEND", "Agg")
    return "lossviz-test"


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def execute(name: str, cwd: Path, kernel_name: str) -> nbformat.NotebookNode:
    """Execute a copy of notebook ``name`` with ``cwd`` as the kernel's working folder."""
    from nbclient import NotebookClient

    src = NOTEBOOKS / f"{name}.ipynb"
    shutil.copy(src, cwd / src.name)
    nb = nbformat.read(cwd / src.name, as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name=kernel_name,
                            resources={"metadata": {"path": str(cwd)}}, allow_errors=False)
    t0 = time.perf_counter()
    client.execute()
    TIMES[name] = time.perf_counter() - t0
    print(f"{name}: executed in {TIMES[name]:.1f} s")
    nbformat.write(nb, cwd / f"{name}.executed.ipynb")
    return nb


def outputs(nb: nbformat.NotebookNode) -> list[dict]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def text_of(nb: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in outputs(nb) if o.output_type == "stream")


def check_common(nb: nbformat.NotebookNode) -> None:
    outs = outputs(nb)
    assert not [o for o in outs if o.output_type == "error"]
    assert not re.search(r"Traceback \(most recent call last\)", text_of(nb))
    mimes = {m for o in outs for m in o.get("data", {})}
    assert "application/vnd.jupyter.widget-view+json" in mimes, "the Explorer was not displayed"
    assert "application/vnd.plotly.v1+json" in mimes, "no plotly figure was shown"


def open_session(path: Path):
    from lossviz.session import Session

    return Session(path)


@pytest.mark.timeout(600)
def test_quickstart(tmp_path, kernel_name):
    nb = execute("quickstart", tmp_path, kernel_name)
    check_common(nb)
    s = open_session(tmp_path / "runs" / "quickstart")
    try:
        cks = s.checkpoints()
        branches = s.branches()
        assert len(branches) == 3  # main, lower-lr branch, disturbed + trained
        main = s.checkpoints(branch=branches[0]["id"])
        assert main[-1].metrics["train_loss"] < 0.8 * main[0].metrics["train_loss"]
        assert {c.kind for c in cks} >= {"init", "train", "disturb"}
        low_lr = s.checkpoints(branch=branches[1]["id"])
        assert low_lr[0].hparams["lr"] == pytest.approx(0.02) and branches[1]["parent"] == main[3].id
        surfaces = [r for r in s.surfaces() if r["complete"]]
        assert len(surfaces) >= 2  # random and PCA
    finally:
        s.close()
    assert "explained variance ratio" in text_of(nb)


@pytest.mark.timeout(600)
def test_li_workflows(tmp_path, kernel_name):
    nb = execute("li_workflows", tmp_path, kernel_name)
    check_common(nb)
    root = tmp_path / "runs" / "li"
    with h5py.File(root / "resnet20_surface.h5", "r") as f:
        assert set(f) >= LI_DATASETS
        nx, ny = len(f["xcoordinates"]), len(f["ycoordinates"])
        assert f["train_loss"].shape == (ny, nx) and np.isfinite(f["train_loss"][()]).all()
        assert f["train_acc"][()].min() >= 0 and f["train_acc"][()].max() <= 100
        dir_file = f["dir_file"][()].decode() if isinstance(f["dir_file"][()], bytes) else str(f["dir_file"][()])
    with h5py.File(root / "resnet20_dirs.h5", "r") as f:
        assert {"xdirection", "ydirection"} <= set(f)
        assert len(f["xdirection"]) == 65  # resnet20's parameter tensors
    assert Path(dir_file).name == "resnet20_dirs.h5"
    # the surfaces of the two architectures differ
    from lossviz.io.h5 import read_surface

    a = read_surface(root / "resnet20_surface.h5")
    vtp = root / "resnet20_surface.h5_train_loss_log.vtp"
    piece = ET.parse(vtp).getroot().find("PolyData/Piece")
    assert int(piece.get("NumberOfPoints")) == nx * ny and int(piece.get("NumberOfPolys")) == (nx - 1) * (ny - 1)
    z = np.array(piece.find("PointData/DataArray[@Name='zvalue']").text.split(), dtype=float)
    assert np.allclose(z, np.log(a.values["train_loss"].ravel() + 0.1))
    line = read_surface(root / "interpolation_small_large.h5")
    assert line.ndim == 1 and line.x[0] == pytest.approx(-0.5) and line.x[-1] == pytest.approx(1.5)
    between = (line.x >= 0) & (line.x <= 1)  # outside, extrapolated BN variances may be negative: NaN
    assert np.isfinite(line.values["train_loss"][between]).all()
    assert re.search(r"\d+ of \d+ points have a negative extrapolated BN variance", text_of(nb))
    assert "read back: same coordinates, values and directions" in text_of(nb)


@pytest.mark.timeout(600)
def test_optimizers(tmp_path, kernel_name):
    from PIL import Image

    nb = execute("optimizers", tmp_path, kernel_name)
    check_common(nb)
    s = open_session(tmp_path / "runs" / "optimizers")
    try:
        branches = s.branches()
        # the first run continues the init's branch, the other three fork from the init
        opts = sorted(s.checkpoints(branch=b["id"])[-1].hparams["optimizer"] for b in branches)
        n_points = len(s.checkpoints(branch=branches[0]["id"]))  # the init and one checkpoint per epoch
    finally:
        s.close()
    assert opts == ["adagrad", "adam", "rmsprop", "sgd"]
    assert all(b["parent"] == 1 for b in branches[1:])  # all from the one initialization
    gif = tmp_path / "runs" / "optimizers" / "optimizers.gif"
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == n_points  # one frame per epoch
        im.seek(im.n_frames - 1)
        assert im.info["duration"] == 250  # fps=4
    assert any("image/gif" in o.get("data", {}) for o in outputs(nb))


@pytest.mark.timeout(600)
def test_sharpness(tmp_path, kernel_name):
    nb = execute("sharpness", tmp_path, kernel_name)
    check_common(nb)
    text = text_of(nb)
    m = re.search(r"λ1 \(Lanczos\) = ([\d.]+), second difference of the loss along v1 = ([\d.]+)", text)
    assert m, text
    lam, fd = float(m.group(1)), float(m.group(2))
    assert lam > 0 and abs(fd - lam) < 0.05 * lam
    rows = re.findall(r"epoch\s+[\d.]+: λ1 =\s+([-\d.]+)\s+λ2 =\s+([-\d.]+)\s+trace =\s+([-\d.]+)", text)
    assert len(rows) >= 3
    for l1, l2, tr in rows:
        assert float(l1) >= float(l2) and float(tr) > float(l1)  # the trace sums all eigenvalues (PSD here)
    s = open_session(tmp_path / "runs" / "sharpness")
    try:
        stored = s.store.results("hessian")
        assert len(stored) >= len(rows) + 2
    finally:
        s.close()


@pytest.mark.timeout(600)
def test_bring_your_own(tmp_path, kernel_name):
    from lossviz.io.h5 import read_surface

    nb = execute("bring_your_own", tmp_path, kernel_name)
    check_common(nb)
    root = tmp_path / "runs" / "byo"
    with h5py.File(root / "digits_surface.h5", "r") as f:
        assert set(f) >= LI_DATASETS
    with h5py.File(root / "digits_dirs.h5", "r") as f:
        assert {"xdirection", "ydirection"} <= set(f) and len(f["xdirection"]) == 4  # 2 Linear layers
    surf = read_surface(root / "digits_surface.h5")
    assert surf.shape == (9, 9) and surf.complete
    # the centre is the saved checkpoint: its train and test losses equal a plain float64 loop over the data
    import torch
    from torch import nn

    from lossviz.zoo import get_data

    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))  # my_models.digits_mlp
    net.load_state_dict(torch.load(root / "digits_mlp.pt", weights_only=True))
    net = net.double().eval()
    for split, data in zip(("train", "test"), get_data("digits"), strict=True):
        xs, ys = zip(*(data[i] for i in range(len(data))), strict=True)
        with torch.no_grad():
            want = float(nn.functional.cross_entropy(net(torch.stack(xs).double()), torch.as_tensor(ys)))
        assert surf.values[f"{split}_loss"][4, 4] == pytest.approx(want, rel=1e-4), split
    assert np.nanmax(surf.values["train_loss"]) > surf.values["train_loss"][4, 4]  # the grid leaves the centre
    s = open_session_regression(root / "regression")
    try:
        final = s.checkpoints()[-1]
        assert final.metrics["train_loss"] < 0.05 and "train_mae" in final.metrics
    finally:
        s.close()


@pytest.mark.timeout(600)
def test_language_model(tmp_path, kernel_name):
    nb = execute("language_model", tmp_path, kernel_name)
    check_common(nb)
    text = text_of(nb)
    m = re.search(r"train loss ([\d.]+) -> ([\d.]+), test next-token accuracy ([\d.]+)% -> ([\d.]+)% "
                  r"\(chance: ([\d.]+)%\)", text)
    assert m, text
    loss0, loss1, _, acc1, chance = map(float, m.groups())
    assert loss1 < 0.8 * loss0 and acc1 > 2 * chance  # it learned the corpus
    m = re.search(r"centre: loss ([\d.]+), perplexity ([\d.]+) \(exp of the loss: ([\d.]+)\)", text)
    assert m, text
    loss, ppl, exp_loss = map(float, m.groups())
    assert ppl == pytest.approx(np.exp(loss), rel=1e-3) and ppl == pytest.approx(exp_loss, rel=1e-6)
    m = re.search(r"perplexity at α = 1: ([\d.]+) \(the surface's centre: ([\d.]+)\)", text)
    assert m and float(m.group(1)) == pytest.approx(float(m.group(2)), rel=1e-4), text  # the same weights
    m = re.search(r"λ1 = ([-\d.]+) \(converged", text)
    assert m and float(m.group(1)) > 0, text
    m = re.search(r"the session's surface holds: ([\w, ]+)", text)
    assert m and "train_perplexity" in m.group(1).split(", "), text
    s = open_session(tmp_path / "runs" / "language_model")
    try:
        cks = s.checkpoints()
        assert len(cks) >= 4 and "train_acc" in cks[-1].metrics
        # the named metric, stored in the project: exp of each checkpoint's own mean token loss
        assert s.metric_names == ("perplexity",)
        for c in cks:
            assert c.metrics["train_perplexity"] == pytest.approx(np.exp(c.metrics["train_loss"]), rel=1e-9)
        assert any(r["complete"] for r in s.surfaces())  # the PCA surface is stored
    finally:
        s.close()
    assert TIMES["language_model"] < 120  # ~60 s on two loaded cores with LOSSVIZ_FAST=1


def open_session_regression(path: Path):
    """The regression project was made with a factory and datasets: reopen it with stand-ins of the same
    architecture (only the stored checkpoints and metrics are read)."""
    import torch
    from torch import nn

    from lossviz.session import Session

    def make():
        return nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1))

    data = (torch.zeros(4, 1), torch.zeros(4, 1))
    return Session(path, model=make, data=data, loss="mse")


def load_strip_script():
    spec = importlib.util.spec_from_file_location("strip_notebooks", REPO / "scripts" / "strip_notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_notebooks_are_stripped():
    strip = load_strip_script()
    found = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    assert found == sorted(NAMES)
    for name in NAMES:
        nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        nbformat.validate(nb)
        assert strip.problems(nb) == [], name
        assert all(c.outputs == [] and c.execution_count is None for c in nb.cells if c.cell_type == "code")
        assert "widgets" not in nb.metadata
        assert nb.metadata["kernelspec"]["name"] == "python3"
        src = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        assert 'os.environ.get("LOSSVIZ_FAST"' in src  # the size switch the tests use


def test_strip_script_strips_an_executed_notebook(tmp_path):
    strip = load_strip_script()
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# t"),
        nbformat.v4.new_code_cell("1 + 1", execution_count=3, outputs=[
            nbformat.v4.new_output("execute_result", data={"text/plain": "2"}, execution_count=3)],
            metadata={"execution": {"iopub.status.busy": "x"}, "tags": ["keep"]}),
    ])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    assert strip.main([str(path), "--check"]) == 1
    assert strip.main([str(path)]) == 0
    back = nbformat.read(path, as_version=4)
    assert strip.problems(back) == [] and back.cells[1].source == "1 + 1"
    assert back.cells[1].metadata == {"tags": ["keep"]} and back.cells[0].source == "# t"
    assert strip.main([str(path), "--check"]) == 0
