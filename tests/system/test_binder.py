"""Binder's files, tested the only way possible without Binder: a fresh venv built from ``binder/`` alone
(a copy of the repository without any build output, ``pip install -r binder/requirements.txt`` from its
root as repo2docker runs it, then ``binder/postBuild``), and the quickstart executed in that venv.

Slow (a new venv with torch, and the front end built by npm): one venv for the whole test; pip's and
npm's caches are reused.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[2]
BINDER = REPO / "binder"


def run(cmd: list[str], cwd: Path, env: dict, timeout: int) -> str:
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"{' '.join(cmd)} failed ({p.returncode}):\n{out[-6000:]}"
    return out


def repository_files() -> list[str]:
    """What a clone would hold: tracked files and untracked ones git does not ignore (no .venv, no
    node_modules, no built front end)."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                         capture_output=True, check=True).stdout.decode()
    return [f for f in out.split("\0") if f and (REPO / f).is_file()]


def test_binder_files_are_complete():
    req = (BINDER / "requirements.txt").read_text().splitlines()
    lines = [line.strip() for line in req if line.strip() and not line.lstrip().startswith("#")]
    assert "." in lines  # lossviz itself, from the repository
    assert any(line.startswith("torch==") and line.endswith("+cpu") for line in lines)  # CPU-only torch
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines
    assert (BINDER / "runtime.txt").read_text().strip() == "python-{}.{}".format(*sys.version_info[:2])
    assert os.access(BINDER / "postBuild", os.X_OK)
    assert "urlpath=lab/tree/notebooks/quickstart.ipynb" in (BINDER / "README.md").read_text()
    assert (REPO / "notebooks" / "quickstart.ipynb").is_file()


@pytest.mark.timeout(1500)
def test_fresh_venv_from_binder_files_runs_the_quickstart(tmp_path):
    src = tmp_path / "repo"
    for f in repository_files():
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, src / f)
    assert not (src / "src" / "lossviz" / "static" / "widget.js").exists()
    assert not (src / "node_modules").exists()

    venv = tmp_path / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH", "JUPYTER"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["LOSSVIZ_FAST"] = "1"
    env["MPLBACKEND"] = "Agg"

    # as repo2docker does: pip install -r binder/requirements.txt from the repository root. "--retries 0":
    # PyTorch's CPU index is unreachable here, so each lookup there fails at once instead of retrying; pip
    # finds the pinned wheels in its other indexes and wheel folders.
    run([str(py), "-m", "pip", "install", "--retries", "0", "-r", "binder/requirements.txt"], src, env, 1200)
    run(["bash", "binder/postBuild"], src, env, 300)

    probe = run([str(py), "-c", (
        "import json, pathlib, torch, lossviz; "
        "p = pathlib.Path(lossviz.__file__).parent / 'static' / 'widget.js'; "
        "print(json.dumps({'torch': torch.__version__, 'lossviz': lossviz.__file__, 'js': p.stat().st_size}))"
    )], tmp_path, env, 120)
    info = json.loads(probe.strip().splitlines()[-1])
    assert info["torch"].endswith("+cpu")
    assert Path(info["lossviz"]).is_relative_to(venv)  # installed into the venv, not the editable checkout
    assert info["js"] > 10_000  # the front end was built by the install

    out = tmp_path / "executed"
    out.mkdir()
    run([str(venv / "bin" / "jupyter"), "nbconvert", "--to", "notebook", "--execute",
         "--ExecutePreprocessor.timeout=300", "--output-dir", str(out), "notebooks/quickstart.ipynb"],
        src, env, 600)
    nb = nbformat.read(out / "quickstart.ipynb", as_version=4)
    outs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outs if o.output_type == "error"]
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outs)
    text = "".join(o.get("text", "") for o in outs if o.output_type == "stream")
    assert "checkpoints; final: epoch" in text and "explained variance ratio" in text
