"""Surfaces through Dask, generic process pools and per-device threads equal the in-process surface;
the spec reaches each worker once; a killed Dask worker's chunk is recomputed; cancel stops."""

from __future__ import annotations

import multiprocessing
import os
import threading
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lossviz.executors import DeviceExecutor, SpecMissing, run_chunks, run_with_cached_spec
from lossviz.landscape import compute_surface
from lossviz.zoo.data import make_spirals
from lossviz.zoo.models import MLP

distributed = pytest.importorskip("distributed")  # a test extra: always installed by scripts/setup.sh

KW = dict(x="-1:1:7", y="-1:1:6", dtype=torch.float64, progress=False, chunk_size=6)


def small_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return MLP(2, (8,), 2).double()


def small_data():
    return make_spirals(40, seed=3)


class CountingSpec:
    """A spec that leaves a file ``<pid>-<random>`` in ``folder`` each time it is unpickled."""

    def __init__(self, folder: str, factor: float):
        self.folder, self.factor, self.token = folder, factor, uuid.uuid4().hex

    def __getstate__(self):
        return {"folder": self.folder, "factor": self.factor, "token": self.token}

    def __setstate__(self, state):
        self.__dict__.update(state)
        Path(self.folder, f"{os.getpid()}-{uuid.uuid4().hex}").touch()


def scaled_chunk(spec: CountingSpec, chunk):
    """A chunk task: (the worker's pid, factor · chunk)."""
    return os.getpid(), [spec.factor * c for c in chunk]


def unpickles_per_pid(folder: Path) -> Counter:
    return Counter(p.name.split("-")[0] for p in folder.iterdir())


class DiesOnce(nn.Module):
    """The small MLP; in a process other than ``home_pid`` its forward exits the process (as a
    crashed worker would) if it can claim the file ``trigger`` (renamed atomically: one claim)."""

    def __init__(self, inner: nn.Module, trigger: str, home_pid: int):
        super().__init__()
        self.inner, self.trigger, self.home_pid = inner, trigger, home_pid

    def forward(self, x):
        if os.getpid() != self.home_pid and os.path.exists(self.trigger):
            try:
                os.rename(self.trigger, f"{self.trigger}.{os.getpid()}")
            except OSError:
                pass  # another worker claimed it
            else:
                os._exit(1)
        return self.inner(x)


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                           silence_logs=40)
    c = Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


@pytest.fixture(scope="module")
def reference():
    model, data = small_model(), small_data()
    return model, data, compute_surface(model, data, **KW)


# ---------------------------------------------------------------------------------------- dask
def test_dask_client_gives_the_in_process_surface_and_streams_progress(client, reference):
    model, data, local = reference
    seen = []
    surf = compute_surface(model, data, executor=client,
                           callback=lambda s, n, t: seen.append((n, t)), **KW)
    assert surf.complete
    for name in local.metrics:
        np.testing.assert_allclose(surf.values[name], local.values[name], rtol=0, atol=1e-6)
    # one callback per chunk of 6 points, counts rising to the total
    assert [n for n, _ in seen] == sorted(n for n, _ in seen)
    assert seen[-1] == (42, 42) and len(seen) == 7


def _allocator_state() -> tuple[str | None, bool]:
    import lossviz.executors as ex

    return os.environ.get("MALLOC_TRIM_THRESHOLD_"), ex._ALLOCATOR_RELAXED


def test_dask_workers_get_their_allocator_relaxed_for_forward_passes(client, reference):
    """Dask starts workers with MALLOC_TRIM_THRESHOLD_ set, which made CPU forward passes 2.5x slower
    (benchmarks/scaling.py); the first evaluation on a worker undoes it there."""
    model, data, _ = reference
    compute_surface(model, data, executor=client, **KW)
    states = client.run(_allocator_state)
    assert states and all(env is not None and relaxed for env, relaxed in states.values()), states


def test_relax_malloc_trim_acts_only_where_dask_set_the_variable():
    import subprocess
    import sys

    code = "from lossviz.executors import relax_malloc_trim as r; print(r(), r())"
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_TRIM_THRESHOLD_"}
    plain = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    dask_like = subprocess.run([sys.executable, "-c", code], env={**env, "MALLOC_TRIM_THRESHOLD_": "65536"},
                               capture_output=True, text=True, check=True)
    assert plain.stdout.split() == ["False", "False"]
    assert dask_like.stdout.split() == ["True", "False"]  # once per process


def test_dask_spec_is_scattered_once_per_worker(client, tmp_path):
    spec = CountingSpec(str(tmp_path), 3.0)
    chunks = [[float(i), float(i) + 0.5] for i in range(12)]
    out = {i: f.result() for i, f in run_chunks(scaled_chunk, spec, chunks, client)}
    assert [out[i][1] for i in range(12)] == [[3.0 * c for c in ch] for ch in chunks]
    workers = {pid for pid, _ in out.values()}
    counts = unpickles_per_pid(tmp_path)
    assert set(counts) >= {str(p) for p in workers}
    assert all(n == 1 for n in counts.values()), counts  # once per worker, not once per chunk


def _cached_spec_tokens() -> list[str]:
    from lossviz import executors

    return list(executors._SPECS)


def test_dask_workers_forget_the_spec_after_the_run(client, reference):
    """Each worker keeps the unpickled spec (model and data) for the run's chunks only."""
    import time

    model, data, _ = reference
    compute_surface(model, data, executor=client, **KW)
    deadline = time.monotonic() + 10
    while any(client.run(_cached_spec_tokens).values()) and time.monotonic() < deadline:
        time.sleep(0.05)  # forgetting is sent without waiting for the workers
    assert not any(client.run(_cached_spec_tokens).values())


def test_dask_cancel_cancels_outstanding_chunks(client, reference):
    model, data, local = reference
    cancel = threading.Event()

    def stop_after_first(surface, n_done, n_total):
        cancel.set()

    surf = compute_surface(model, data, executor=client, cancel=cancel, callback=stop_after_first, **KW)
    assert surf.meta["cancelled"] and 0 < surf.n_done < surf.done.size
    np.testing.assert_allclose(surf.values["train_loss"][surf.done], local.values["train_loss"][surf.done],
                               rtol=0, atol=1e-6)
    assert np.isnan(surf.values["train_loss"][~surf.done]).all()


def test_a_killed_dask_worker_loses_only_its_chunk_which_is_recomputed(client, reference, tmp_path):
    _, data, local = reference
    trigger = tmp_path / "kill-one-worker"
    model = DiesOnce(small_model(), str(trigger), os.getpid())
    pids_before = set(client.run(os.getpid).values())

    # armed before the run: arming it from the progress callback raced with the last chunks (a tiny
    # grid can be finished before the callback runs), so no worker died and the test failed at random
    trigger.touch()  # the first chunk a worker starts kills that worker
    kw = {**KW, "kind": "weights"}
    surf = compute_surface(model, data, executor=client, **kw)
    claimed = list(tmp_path.glob("kill-one-worker.*"))
    assert len(claimed) == 1 and int(claimed[0].suffix[1:]) in pids_before  # a worker did die
    assert surf.complete and not surf.meta.get("errors")
    for name in local.metrics:
        np.testing.assert_allclose(surf.values[name], local.values[name], rtol=0, atol=1e-6)
    client.wait_for_workers(2, timeout=60)  # the nanny restarts it


class DiesInEach(nn.Module):
    """The small MLP; its first forward in each process of ``pids`` exits that process."""

    def __init__(self, inner: nn.Module, marker: str, pids: set[int]):
        super().__init__()
        self.inner, self.marker, self.pids = inner, marker, set(pids)

    def forward(self, x):
        if os.getpid() in self.pids:
            try:
                os.close(os.open(f"{self.marker}.{os.getpid()}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass
            else:
                os._exit(1)
        return self.inner(x)


def test_a_spec_lost_with_every_worker_is_scattered_again(client, reference, tmp_path):
    """Scattered data cannot be recomputed: when every worker holding the spec dies, the chunks
    that needed it come back cancelled; they must run again on a fresh copy, not end as NaN."""
    _, data, local = reference
    client.wait_for_workers(2, timeout=60)
    pids_before = set(client.run(os.getpid).values())
    model = DiesInEach(small_model(), str(tmp_path / "died"), pids_before)
    surf = compute_surface(model, data, executor=client, **{**KW, "kind": "weights"})
    died = {int(p.suffix[1:]) for p in tmp_path.glob("died.*")}
    assert died == pids_before  # both original workers died on their first chunk
    assert surf.complete and not surf.meta.get("errors")
    for name in local.metrics:
        np.testing.assert_allclose(surf.values[name], local.values[name], rtol=0, atol=1e-6)
    client.wait_for_workers(2, timeout=60)


MAIN_MODULE_SCRIPT = """
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import torch
from torch import nn
from distributed import Client, LocalCluster
from lossviz.landscape import compute_surface
from lossviz.zoo.data import make_spirals

class NotebookNet(nn.Module):  # defined in __main__, as in a notebook: not importable by workers
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        return self.fc(x)

if __name__ == "__main__":
    torch.manual_seed(0)
    model, data = NotebookNet().double(), make_spirals(20, seed=1)
    kw = dict(x="-1:1:3", y="-1:1:3", dtype=torch.float64, progress=False, chunk_size=3)
    with LocalCluster(n_workers=1, processes=True, threads_per_worker=1, dashboard_address=None,
                      silence_logs=40) as cluster, Client(cluster) as client:
        on_dask = compute_surface(model, data, executor=client, **kw)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        on_pool = compute_surface(model, data, executor=pool, **kw)
    local = compute_surface(model, data, **kw)
    for remote in (on_dask, on_pool):
        assert remote.complete and not remote.meta.get("errors"), remote.meta.get("errors")
        print(float(abs(remote.values["train_loss"] - local.values["train_loss"]).max()))
"""


def test_a_model_class_defined_in_main_reaches_dask_and_pool_workers(tmp_path):
    """Models written in a notebook live in ``__main__``, which a worker cannot import: the spec
    must travel by value (cloudpickle), not by reference."""
    import subprocess
    import sys

    # through -c, as a kernel runs cells: a spawned worker has no main file to import the class from
    run = subprocess.run([sys.executable, "-c", MAIN_MODULE_SCRIPT], capture_output=True, text=True,
                         timeout=240, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    diffs = [float(v) for v in run.stdout.split()]
    assert len(diffs) == 2 and max(diffs) < 1e-12, run.stdout


# ---------------------------------------------------------------------------------------- pools
def test_process_pool_gets_the_spec_once_per_worker_and_the_same_surface(tmp_path, reference):
    model, data, local = reference
    spec = CountingSpec(str(tmp_path), -2.0)
    chunks = [[float(i)] for i in range(16)]
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        out = {i: f.result() for i, f in run_chunks(scaled_chunk, spec, chunks, pool)}
        surf = compute_surface(model, data, executor=pool, **KW)
    assert [out[i][1] for i in range(16)] == [[-2.0 * c[0]] for c in chunks]
    counts = unpickles_per_pid(tmp_path)
    assert set(counts) == {str(pid) for pid, _ in out.values()}
    assert all(n == 1 for n in counts.values()), counts
    for name in local.metrics:
        np.testing.assert_allclose(surf.values[name], local.values[name], rtol=0, atol=1e-12)


def test_cached_spec_task_asks_for_the_spec_on_a_miss():
    token = uuid.uuid4().hex
    missing = run_with_cached_spec(scaled_chunk, token, None, [1.0])
    assert missing == SpecMissing(token, os.getpid())
    import pickle

    spec = CountingSpec.__new__(CountingSpec)
    spec.__dict__.update(folder="/nonexistent-never-unpickled", factor=5.0, token=token)
    payload = pickle.dumps({"not": "used"})  # a hit never looks at the payload
    from lossviz import executors

    executors._SPECS[token] = spec
    try:
        assert run_with_cached_spec(scaled_chunk, token, payload, [2.0]) == (os.getpid(), [10.0])
    finally:
        executors._SPECS.pop(token, None)


# ---------------------------------------------------------------------------------------- devices
class DeviceSpy:
    """A spec that records the device each worker bound it to."""

    def __init__(self):
        self.device = None
        self.barrier = threading.Barrier(2, timeout=30)

    def on_device(self, device):
        bound = DeviceSpy.__new__(DeviceSpy)
        bound.device, bound.barrier = device, self.barrier
        return bound


def device_task(spec: DeviceSpy, chunk):
    spec.barrier.wait()  # both workers must hold a task at once: each device gets one
    return str(spec.device), threading.get_ident(), chunk


def test_device_executor_runs_one_worker_per_device_with_the_spec_moved_there(reference):
    ex = DeviceExecutor(["cpu", "cpu:0"])
    try:
        got = [f.result() for _, f in run_chunks(device_task, DeviceSpy(), [[0], [1]], ex)]
        assert sorted(d for d, _, _ in got) == ["cpu", "cpu:0"]
        assert len({t for _, t, _ in got}) == 2
        model, data, local = reference
        surf = compute_surface(model, data, executor=ex, **KW)
    finally:
        ex.shutdown()
    assert sum(ex.chunks_per_device.values()) == 2 + 7
    for name in local.metrics:
        np.testing.assert_allclose(surf.values[name], local.values[name], rtol=0, atol=1e-12)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            DeviceExecutor()
