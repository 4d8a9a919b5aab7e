"""``lossviz surface --mpi`` under Debian's OpenMPI (``mpiexec -n 3``) writes the same file as one
process; ``--mpi`` on a single rank explains itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

ARGS = ["surface", "--model", "mlp", "--model-kwargs", '{"hidden": [8]}', "--data-kwargs", '{"n": 60}',
        "--x=-1:1:7", "--y=-1:1:5", "--dtype", "float64", "--no-progress", "--seed", "4"]


def mpi_env() -> dict[str, str]:
    # OpenMPI refuses root without these, and 3 ranks on a 2-core machine need oversubscription
    return {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
            "OMPI_MCA_rmaps_base_oversubscribe": "1", "OMPI_MCA_btl_vader_single_copy_mechanism": "none"}


def mpiexec() -> str:
    found = shutil.which("mpiexec")
    assert found, "mpiexec not found: install Debian's openmpi-bin libopenmpi-dev (scripts/setup.sh does)"
    return found


def lossviz(*args: str, n: int | None = None, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "lossviz.cli", *args]
    if n is not None:
        cmd = [mpiexec(), "-n", str(n), *cmd]
    return subprocess.run(cmd, cwd=cwd, env=mpi_env(), capture_output=True, text=True, timeout=300)


def datasets(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f}


def test_mpiexec_3_ranks_write_the_same_file_as_one_process(tmp_path):
    one = lossviz(*ARGS, "--out", "one.h5", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    many = lossviz(*ARGS, "--mpi", "--out", "mpi.h5", "--dir-out", "dirs.h5", n=3, cwd=tmp_path)
    assert many.returncode == 0, many.stderr + many.stdout
    assert many.stdout.count("wrote mpi.h5") == 1  # rank 0 alone writes and reports
    a, b = datasets(tmp_path / "one.h5"), datasets(tmp_path / "mpi.h5")
    assert {"xcoordinates", "ycoordinates", "train_loss", "train_acc"} <= set(a)
    assert set(a) == set(b)
    assert a["train_loss"].shape == b["train_loss"].shape == (5, 7)
    for name in ("xcoordinates", "ycoordinates", "train_loss", "train_acc"):
        np.testing.assert_allclose(b[name], a[name], rtol=0, atol=1e-10)
    assert np.isfinite(b["train_loss"]).all() and (tmp_path / "dirs.h5").is_file()


def test_mpi_flag_on_a_single_process_names_the_fix(tmp_path):
    res = lossviz(*ARGS, "--mpi", "--out", "x.h5", cwd=tmp_path)
    assert res.returncode == 2
    assert "at least 2 processes" in res.stderr and "mpiexec -n N" in res.stderr
    assert not (tmp_path / "x.h5").exists()
