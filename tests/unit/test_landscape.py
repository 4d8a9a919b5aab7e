"""Surfaces against analytic values, interpolation, progress/cancel/resume, NaNs, executors."""

from __future__ import annotations

import copy
import json
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lossviz
from lossviz.directions import DirectionSet
from lossviz.grid import SurfaceGrid
from lossviz.jobs import JobCancelled
from lossviz.landscape import Surface, compute_surface, evaluate_chunk, interpolate, plane_points
from lossviz.params import ParamSpace


# ---------------------------------------------------------------------------------------- models
class Quadratic(nn.Module):
    """L(θ) = ½ (θ-θ*)ᵀ A (θ-θ*) + c with θ = (weight, bias); forward returns L for every sample."""

    def __init__(self, seed: int = 0, c: float = 0.75):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(3, 2, generator=g, dtype=torch.float64))
        self.bias = nn.Parameter(torch.randn(3, generator=g, dtype=torch.float64))
        m = torch.randn(9, 9, generator=g, dtype=torch.float64)
        self.register_buffer("A", m @ m.T + torch.eye(9, dtype=torch.float64))
        self.register_buffer("theta_star", torch.randn(9, generator=g, dtype=torch.float64))
        self.c = c

    def forward(self, x):
        v = torch.cat([self.weight.reshape(-1), self.bias]) - self.theta_star
        value = 0.5 * v @ self.A @ v + self.c
        return value.expand(x.shape[0])


def mean_output(out, target):
    """The loss of :class:`Quadratic`: the per-sample value, averaged."""
    return out.mean()


def quadratic_truth(model: Quadratic, d1: np.ndarray, d2: np.ndarray | None, xs, ys=None):
    """Analytic L(θ₀ + a d1 + b d2) on the grid, values[i, j] = L(x[j], y[i])."""
    theta0 = np.concatenate([model.weight.detach().numpy().ravel(), model.bias.detach().numpy()])
    A, ts = model.A.numpy(), model.theta_star.numpy()

    def L(a, b):
        v = theta0 - ts + a * d1 + (b * d2 if d2 is not None else 0.0)
        return 0.5 * v @ A @ v + model.c

    if ys is None:
        return np.array([L(a, 0.0) for a in xs])
    return np.array([[L(a, b) for a in xs] for b in ys])


def quad_data(n: int = 5):
    return torch.zeros(n, 1, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)


class BNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3)
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        return self.fc(F.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


def bn_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = BNNet().train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(12, 1, 5, 5) * (1 + seed) + seed)
    return model.eval()


def image_data(n: int = 24, seed: int = 9):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 5, 5, generator=g), torch.randint(0, 3, (n,), generator=g)


def own_loss(model: nn.Module, x, y) -> float:
    with torch.no_grad():
        out = copy.deepcopy(model).double().eval()(x.double())
    return F.cross_entropy(out, y).item()


# ---------------------------------------------------------------------------------------- analytic
def test_quadratic_1d_and_2d_surfaces_equal_the_analytic_values():
    model = Quadratic()
    space = ParamSpace(model)
    g = torch.Generator().manual_seed(1)
    d1 = torch.randn(space.numel, generator=g, dtype=torch.float64)
    d2 = torch.randn(space.numel, generator=g, dtype=torch.float64)
    kw = dict(loss=mean_output, dtype=torch.float64, progress=False)

    line = compute_surface(model, quad_data(), d1, x="-1.5:2:15", **kw)
    assert line.shape == (15,) and line.complete and line.metrics == ["train_loss"]
    truth = quadratic_truth(model, d1.numpy(), None, line.x)
    np.testing.assert_allclose(line.values["train_loss"], truth, rtol=0, atol=1e-10)

    # non-square grid: rows are y, columns are x
    plane = compute_surface(model, quad_data(), (d1, d2), x="-1:1:7", y="-2:0.5:5", **kw)
    assert plane.shape == (5, 7)
    truth = quadratic_truth(model, d1.numpy(), d2.numpy(), plane.x, plane.y)
    np.testing.assert_allclose(plane.values["train_loss"], truth, rtol=0, atol=1e-10)
    assert np.isclose(plane.values["train_loss"][0, 6], quadratic_truth(
        model, d1.numpy(), d2.numpy(), [1.0], [-2.0])[0, 0], atol=1e-10)


def test_quadratic_random_filter_normalized_directions_match_analytic_values():
    model = Quadratic(seed=3)
    surf = compute_surface(
        model, quad_data(), "random", x="-1:1:5", y="-1:1:5", loss=mean_output,
        dtype=torch.float64, seed=7, progress=False,
    )
    d1, d2 = (v.numpy() for v in surf.directions.vectors)
    assert surf.directions.method == "random" and surf.meta["seed"] == 7
    assert np.all(d1[6:] == 0)  # biasbn: the bias part is zero
    truth = quadratic_truth(model, d1, d2, surf.x, surf.y)
    np.testing.assert_allclose(surf.values["train_loss"], truth, rtol=0, atol=1e-10)
    json.dumps(surf.meta)  # metadata is json-able


def test_direction_forms_give_the_same_surface_and_mismatches_are_explained():
    model = bn_net(0)
    x, y = image_data()
    space = ParamSpace(model)
    g = torch.Generator().manual_seed(2)
    d1, d2 = torch.randn(2, space.numel, generator=g)
    kw = dict(x="-1:1:3", y="-1:1:3", progress=False)
    base = compute_surface(model, (x, y), (d1, d2), **kw)
    as_set = compute_surface(model, (x, y), DirectionSet([d1, d2], kind="weights", method="custom"), **kw)
    as_dicts = compute_surface(model, (x, y), (space.unflatten(d1), space.unflatten(d2)), **kw)
    as_matrix = compute_surface(model, (x, y), torch.stack([d1, d2]), **kw)
    for other in (as_set, as_dicts, as_matrix):
        np.testing.assert_allclose(other.values["train_loss"], base.values["train_loss"], atol=1e-6)
    with pytest.raises(ValueError, match="2 direction"):
        compute_surface(model, (x, y), (d1, d2), x="-1:1:3", progress=False)
    with pytest.raises(ValueError, match="kind="):
        compute_surface(model, (x, y), DirectionSet([d1], kind="weights"), x="-1:1:3", kind="states")
    with pytest.raises(ValueError, match="malformed"):
        compute_surface(model, (x, y), x="-1:1", progress=False)


def test_test_data_adds_test_metrics_named_like_the_reference_files():
    model = bn_net(0)
    x, y = image_data()
    xt, yt = image_data(10, seed=11)
    surf = compute_surface(model, (x, y), x="-1:1:3", test_data=(xt, yt), progress=False,
                           dtype=torch.float64)
    assert surf.metrics == ["train_loss", "train_acc", "test_loss", "test_acc"]
    mid = 1  # x = 0 is the model itself
    assert surf.values["train_loss"][mid] == pytest.approx(own_loss(model, x, y), abs=1e-10)
    assert surf.values["test_loss"][mid] == pytest.approx(own_loss(model, xt, yt), abs=1e-10)
    assert lossviz.surface is compute_surface


# ---------------------------------------------------------------------------------------- interpolation
def test_interpolation_ends_are_the_two_models_and_midpoint_is_the_averaged_state_dict():
    a, b = bn_net(0), bn_net(1)
    x, y = image_data()
    surf = interpolate(a, b, (x, y), x="0:1:3", dtype=torch.float64, progress=False)
    assert surf.shape == (3,) and surf.meta["kind"] == "states" and surf.meta["method"] == "target"
    loss = surf.values["train_loss"]
    assert loss[0] == pytest.approx(own_loss(a, x, y), abs=1e-10)
    assert loss[2] == pytest.approx(own_loss(b, x, y), abs=1e-10)
    avg = bn_net(0).double()  # the average taken in float64, like the surface
    sa, sb = a.state_dict(), b.state_dict()
    avg.load_state_dict(
        {k: (sa[k].double() + sb[k].double()) / 2 if sa[k].is_floating_point() else sa[k] for k in sa}
    )
    assert loss[1] == pytest.approx(own_loss(avg, x, y), abs=1e-10)
    # with "weights" the BN statistics stay A's, so the end point is not model B
    w = interpolate(a, b, (x, y), x="0:1:3", kind="weights", dtype=torch.float64, progress=False)
    assert abs(w.values["train_loss"][2] - own_loss(b, x, y)) > 1e-4


def test_interpolate_rejects_models_of_different_architectures():
    x, y = image_data()
    with pytest.raises(ValueError, match="different architectures"):
        interpolate(bn_net(0), nn.Sequential(nn.Flatten(), nn.Linear(25, 3)), (x, y), progress=False)


# ---------------------------------------------------------------------------------------- progress
def _run(model, data, **kw):
    return compute_surface(model, data, x="-1:1:9", y="-1:1:7", dtype=torch.float64,
                           strategy="loop", progress=False, **kw)


def test_callback_sees_coarse_to_fine_partial_surfaces():
    model = bn_net(0)
    data = image_data()
    seen = []

    def callback(surface, n_done, n_total):
        assert isinstance(surface, Surface) and n_total == 63
        finite = np.isfinite(surface.values["train_loss"])
        assert np.array_equal(finite, surface.done)  # values exactly where done
        seen.append((n_done, surface.done.copy()))

    surf = _run(model, data, callback=callback, chunk_size=10)
    assert [n for n, _ in seen] == [10, 20, 30, 40, 50, 60, 63]
    order = SurfaceGrid.from_specs("-1:1:9", "-1:1:7").order()
    for n_done, done in seen:
        expected = np.zeros(63, dtype=bool)
        expected[order[:n_done]] = True
        assert np.array_equal(done.ravel(), expected)
    assert seen[0][1][0, 0] and seen[0][1][-1, -1]  # corners come first
    assert surf.complete


def test_cancel_stops_between_chunks_and_resume_completes_like_an_uninterrupted_run():
    model = bn_net(0)
    data = image_data()
    full = _run(model, data)
    cancel = threading.Event()

    def stop_after_two(surface, n_done, n_total):
        if n_done >= 16:
            cancel.set()

    part = _run(model, data, chunk_size=8, callback=stop_after_two, cancel=cancel)
    assert part.done.sum() == 16 and not part.complete and part.meta["cancelled"]
    for name in part.metrics:
        assert np.array_equal(np.isnan(part.values[name]), ~part.done)
        np.testing.assert_array_equal(part.values[name][part.done], full.values[name][part.done])

    calls = []
    resumed = _run(model, data, chunk_size=8, resume=part,
                   callback=lambda s, n, t: calls.append(n))
    assert calls[0] == 24  # the 16 finished points were skipped
    assert resumed.complete and not resumed.meta["cancelled"]
    for name in full.metrics:
        np.testing.assert_allclose(resumed.values[name], full.values[name], rtol=0, atol=1e-12)

    with pytest.raises(ValueError, match="grid"):
        compute_surface(model, data, x="-1:1:5", y="-1:1:7", resume=part, progress=False)
    with pytest.raises(ValueError, match="other directions"):
        compute_surface(model, data, x="-1:1:9", y="-1:1:7", seed=1, resume=part, progress=False)


class LogWeight(nn.Module):
    """Logits scaled by log(w): NaN where w < 0."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([0.5]))
        self.lin = nn.Linear(2, 2)

    def forward(self, x):
        return self.lin(x) * torch.log(self.w)


def test_nan_points_are_nan_in_the_surface_without_exception():
    model = LogWeight()
    torch.manual_seed(0)
    x, y = torch.randn(16, 2), torch.randint(0, 2, (16,))
    direction = torch.zeros(ParamSpace(model).numel)
    direction[0] = 1.0  # moves w only
    surf = compute_surface(model, (x, y), direction, x="-1:1:9", dtype=torch.float64, progress=False)
    loss = surf.values["train_loss"]
    ws = 0.5 + surf.x
    assert surf.complete
    assert np.all(np.isnan(loss[ws < 0]))
    assert np.all(np.isfinite(loss[ws > 0]))
    net = copy.deepcopy(model).double()
    for k in np.flatnonzero(ws > 0):
        with torch.no_grad():
            net.w.fill_(ws[k])
            ref = F.cross_entropy(net(x.double()), y).item()
        assert loss[k] == pytest.approx(ref, abs=1e-12)


# ---------------------------------------------------------------------------------------- executors
@pytest.mark.system  # starts processes: a system test in the unit file of the module it exercises
def test_thread_and_process_executors_give_the_in_process_surface():
    model = bn_net(0)
    data = image_data()
    kw = dict(x="-1:1:5", y="-1:1:4", dtype=torch.float64, progress=False, chunk_size=6, kind="states")
    local = compute_surface(model, data, **kw)
    with ThreadPoolExecutor(max_workers=2) as pool:
        threaded = compute_surface(model, data, executor=pool, **kw)
    # spawn, not fork: a forked child of a process whose torch thread pool has run can deadlock
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        spawned = compute_surface(model, data, executor=pool, **kw)
    for other in (threaded, spawned):
        assert other.complete
        for name in local.metrics:
            np.testing.assert_allclose(other.values[name], local.values[name], rtol=0, atol=1e-12)


def test_parallel_workers_get_several_chunks_and_the_plan_measured_once(monkeypatch):
    """A pool of 2: chunks sized to about 4 per worker, the plan measured once in-process on the first
    chunk and pinned for the workers (none measures again), the values those of the in-process surface."""
    from lossviz.evaluate import Evaluator, forget_plans

    measured = []
    choose = Evaluator._choose_plan

    def counting(self, trial):
        if self.strategy == "auto":  # a pinned strategy takes its one plan, unmeasured
            measured.append(threading.get_ident())
        return choose(self, trial)

    monkeypatch.setattr(Evaluator, "_choose_plan", counting)
    model, data = bn_net(0), image_data()
    kw = dict(x="-1:1:9", y="-1:1:7", dtype=torch.float64, progress=False)
    forget_plans()
    local = compute_surface(model, data, **kw)
    forget_plans()
    measured.clear()
    sizes = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        shared = compute_surface(model, data, executor=pool, callback=lambda s, n, t: sizes.append(n), **kw)
    assert shared.meta["plan_shared"] and shared.meta["plan"] == "measured"
    assert measured == [threading.get_ident()]  # once, here; the workers' evaluators were pinned
    assert len(sizes) >= 4 * 2 and sizes[-1] == 63  # 63 points in at least 8 chunks
    for name in local.metrics:
        np.testing.assert_allclose(shared.values[name], local.values[name], rtol=0, atol=1e-12)


def test_a_failing_executor_task_leaves_points_undone_and_nan():
    class FlakyExecutor(ThreadPoolExecutor):
        calls = 0

        def submit(self, fn, *args, **kwargs):
            FlakyExecutor.calls += 1
            if FlakyExecutor.calls == 2:
                def boom(*_a):
                    raise OSError("worker lost")
                return super().submit(boom, *args)
            return super().submit(fn, *args, **kwargs)

    model = bn_net(0)
    with FlakyExecutor(max_workers=1) as pool, pytest.warns(RuntimeWarning, match="worker lost"):
        surf = compute_surface(model, image_data(), x="-1:1:12", chunk_size=4, executor=pool,
                               progress=False)
    assert surf.done.sum() == 8 and np.isnan(surf.values["train_loss"][~surf.done]).all()
    assert np.isfinite(surf.values["train_loss"][surf.done]).all()
    assert "worker lost" in surf.meta["errors"][0]
    assert evaluate_chunk.__module__ == "lossviz.landscape"  # the task is a top-level function


def test_run_chunks_seam_in_process_order_cancel_and_bad_executors():
    from lossviz.executors import InProcessExecutor, run_chunks

    def square(spec, chunk):
        return [spec * v * v for v in chunk]

    chunks = [[1, 2], [3], [4, 5]]
    got = [(i, f.result()) for i, f in run_chunks(square, 10, chunks)]
    assert got == [(0, [10, 40]), (1, [90]), (2, [160, 250])]

    cancel = threading.Event()
    seen = []
    for i, _ in run_chunks(square, 1, chunks, InProcessExecutor(), cancel=cancel):
        seen.append(i)
        cancel.set()  # no chunk is submitted after this
    assert seen == [0]

    failing = list(run_chunks(lambda s, c: 1 / 0, None, [[1]]))
    assert isinstance(failing[0][1].exception(), ZeroDivisionError)
    with pytest.raises(TypeError, match=r"concurrent\.futures\.Executor"):
        list(run_chunks(square, 1, chunks, executor="dask"))
    fork_pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork"))
    with pytest.warns(RuntimeWarning, match="spawn"):
        assert list(run_chunks(square, 1, [], fork_pool)) == []  # no worker is started
    fork_pool.shutdown()


def test_surface_meta_says_whether_the_plan_was_measured_reused_or_pinned():
    from lossviz.evaluate import forget_plans

    forget_plans()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 6), nn.Tanh(), nn.Linear(6, 3))
    x, y = torch.randn(40, 2), torch.randint(0, 3, (40,))
    first = compute_surface(model, (x, y), x="-1:1:5", y="-1:1:5", progress=False, dtype=torch.float64)
    again = compute_surface(model, (x, y), x="-1:1:5", y="-1:1:5", progress=False, dtype=torch.float64)
    pinned = compute_surface(model, (x, y), x="-1:1:5", y="-1:1:5", progress=False, dtype=torch.float64,
                             strategy="loop", batch_size=7)
    assert (first.meta["plan"], again.meta["plan"], pinned.meta["plan"]) == ("measured", "reused", "pinned")
    assert again.meta["strategy"] == first.meta["strategy"] and again.meta["batch_size"] == first.meta["batch_size"]
    assert (pinned.meta["strategy"], pinned.meta["batch_size"]) == ("loop", 7)
    np.testing.assert_allclose(again.values["train_loss"], first.values["train_loss"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(pinned.values["train_loss"], first.values["train_loss"], rtol=0, atol=1e-12)
    forget_plans()


def test_plane_points_built_in_blocks_match_float64_and_stop_on_cancel(monkeypatch):
    """``center + coeffs @ directions`` a block of rows at a time equals the float64 product; a set cancel
    raises JobCancelled before the first block (a chunk of a big model is gigabytes to build)."""
    import lossviz.landscape as landscape

    g = torch.Generator().manual_seed(0)
    center, dirs = torch.randn(1000, generator=g), torch.randn(2, 1000, generator=g)
    coeffs = torch.rand(37, 2, generator=g) * 2 - 1
    monkeypatch.setattr(landscape, "POINTS_BLOCK_BYTES", 5 * 1000 * 4)  # 5 rows a block: 8 blocks, the last short
    want = center.double() + coeffs.double() @ dirs.double()
    got = plane_points(center, coeffs, dirs)
    assert got.shape == (37, 1000) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
    cancel = threading.Event()
    torch.testing.assert_close(plane_points(center, coeffs, dirs, cancel), got, rtol=0, atol=0)
    cancel.set()
    with pytest.raises(JobCancelled, match="0 of 37 built"):
        plane_points(center, coeffs, dirs, cancel)
