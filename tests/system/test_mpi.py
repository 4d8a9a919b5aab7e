"""``lossviz surface --mpi`` under Debian's OpenMPI (``mpiexec -n 3``) writes the same file as one
process, with every rank evaluating (rank 0 too, as in the reference); one rank works as well."""

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
    evaluated = int(many.stderr.split("rank 0 evaluated ")[1].split()[0])
    assert evaluated >= 1  # rank 0 evaluates too, as every rank of the reference does
    a, b = datasets(tmp_path / "one.h5"), datasets(tmp_path / "mpi.h5")
    assert {"xcoordinates", "ycoordinates", "train_loss", "train_acc"} <= set(a)
    assert set(a) == set(b)
    assert a["train_loss"].shape == b["train_loss"].shape == (5, 7)
    for name in ("xcoordinates", "ycoordinates", "train_loss", "train_acc"):
        np.testing.assert_allclose(b[name], a[name], rtol=0, atol=1e-10)
    assert np.isfinite(b["train_loss"]).all() and (tmp_path / "dirs.h5").is_file()


def test_mpi_on_one_rank_evaluates_in_process(tmp_path):
    # the reference's -n 1 works: every rank evaluates, so one rank does it all (also without mpiexec)
    one = lossviz(*ARGS, "--out", "one.h5", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    for n, name in ((1, "n1.h5"), (None, "single.h5")):
        res = lossviz(*ARGS, "--mpi", "--out", name, n=n, cwd=tmp_path)
        assert res.returncode == 0, res.stderr + res.stdout
        a, b = datasets(tmp_path / "one.h5"), datasets(tmp_path / name)
        for key in ("train_loss", "train_acc"):
            np.testing.assert_allclose(b[key], a[key], rtol=0, atol=1e-10)


def test_readme_interpolation_command_under_mpiexec(tmp_path):
    # the README's `mpirun -n 4 python plot_surface.py --mpi ...` as `mpiexec -n 2 lossviz surface --mpi ...`
    # (test-sized: an MLP on spirals, 5 points): the files are named from the flags, every rank evaluates
    import torch

    from lossviz.zoo import get_model

    for seed, folder in ((0, "bs=128"), (1, "bs=8192")):
        torch.manual_seed(seed)
        (tmp_path / "nets" / folder).mkdir(parents=True)
        torch.save(get_model("mlp", hidden=[8]).state_dict(), tmp_path / "nets" / folder / "model_300.t7")
    res = lossviz("surface", "--mpi", "--model", "mlp", "--model-kwargs", '{"hidden": [8]}', "--dataset", "spirals",
                  "--x=-0.5:1.5:5", "--dir_type", "states", "--model_file", "nets/bs=128/model_300.t7",
                  "--model_file2", "nets/bs=8192/model_300.t7", "--no-progress", n=2, cwd=tmp_path)
    assert res.returncode == 0, res.stderr + res.stdout
    surf = tmp_path / "nets/bs=128_model_300.t7_bs=8192_model_300.t7_states.h5_[-0.5,1.5,5].h5"
    assert surf.is_file(), res.stdout
    assert np.isfinite(datasets(surf)["train_loss"]).all()
    assert "2 rank(s)" in res.stderr


def test_rank_executor_gives_rank_0_its_share():
    # rank 0's own worker thread takes tasks too, in proportion to one worker of 1 + remote_workers
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from lossviz.executors import RankExecutor, run_chunks

    def task(spec, chunk):
        time.sleep(0.01)
        return chunk * spec, threading.current_thread().name

    with ThreadPoolExecutor(3, thread_name_prefix="remote") as remote:
        pool = RankExecutor(remote, 3)
        results = {i: fut.result() for i, fut in run_chunks(task, 2, list(range(40)), pool)}
        pool.shutdown()
    assert sorted(results) == list(range(40)) and all(v[0] == 2 * i for i, v in results.items())
    local = sum(name.startswith("lossviz-rank0") for _, name in results.values())
    assert local == pool.local_tasks and 4 <= local <= 20  # about a quarter of the tasks
