"""Session.surface: adaptive refinement per call (stored under its own key, found again, equal to
refine_surface called directly) and throttled partial saves (counted store writes, events per chunk,
a partial kept on cancel and on failure)."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from lossviz.refine import refine_surface
from lossviz.session import Session

surface_mod = importlib.import_module("lossviz.landscape")  # the module (lossviz.surface is also a function)
SPIRALS = {"n": 120, "n_test": 40}
HP = {"batch_size": 60, "lr": 0.05}
GRID = "-1:1:21"
OPTIONS = {"budget": 0.35, "batch": 0.03}


def _session(path):
    return Session(path, model="mlp", data="spirals", data_kwargs=SPIRALS, device="cpu", hparams=HP)


@pytest.fixture
def counted(monkeypatch):
    """Grid points evaluated (all chunks, any caller), counted at the engine's chunk task."""
    points: list[int] = []
    original = surface_mod.evaluate_chunk

    def counting(spec, coeffs):
        points.append(len(coeffs))
        return original(spec, coeffs)

    monkeypatch.setattr(surface_mod, "evaluate_chunk", counting)
    return points


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A project with a 3-epoch branch (4 checkpoints, init included): its path and the tip's id."""
    path = tmp_path_factory.mktemp("proj") / "p"
    s = _session(path)
    job = s.train(epochs=3)
    job.wait(120)
    assert job.state == "done", job.error
    tip = job.result[-1].id
    s.close()
    return path, tip


def _assert_same(a, b, tol=1e-10):
    assert set(a.values) == set(b.values) and set(a.errors) == set(b.errors)
    for k in a.values:
        np.testing.assert_allclose(a.values[k], b.values[k], rtol=tol, atol=tol, err_msg=k)
    for k in a.errors:
        np.testing.assert_allclose(a.errors[k], b.errors[k], rtol=tol, atol=tol, err_msg=k)
    assert a.meta["adaptive"]["evaluated"] == b.meta["adaptive"]["evaluated"]


# ----------------------------------------------------------------------------------------- adaptive
def test_adaptive_surface_equals_refine_surface_is_found_again_and_differs_from_the_full_one(trained, counted):
    path, tip = trained
    s = _session(path)
    try:
        events = []
        unsub = s.subscribe(lambda ev: events.append(ev) if ev["type"] == "surface" else None)
        surf = s.surface(tip, x=GRID, y=GRID, seed=4, adaptive=OPTIONS, dtype=torch.float64)
        unsub()
        n_adaptive = sum(counted)
        ref = refine_surface(
            s.model(tip), s.eval_data()["train"], "random", GRID, GRID, seed=4, **OPTIONS,
            test_data=s.eval_data()["test"], dtype=torch.float64,
        )
        _assert_same(surf, ref)
        n_eval = surf.meta["adaptive"]["n_evaluated"]
        # the refinement really saved work, and only the evaluated points were computed
        assert n_adaptive == n_eval < 0.5 * 21 * 21
        assert surf.errors["train_loss"].max() > 0 and surf.meta["center"] == tip
        # one "surface" event and one progress step per round
        rounds = surf.meta["adaptive"]["rounds"]
        assert len(events) == rounds >= 2
        job = events[-1]["job"]
        assert job.state == "done" and job.done == n_eval

        # found again: no evaluation, the same key, values and errors read back from the file
        counted.clear()
        again = s.surface(tip, x=GRID, y=GRID, seed=4, adaptive=OPTIONS, dtype=torch.float64)
        assert sum(counted) == 0 and again.meta["key"] == surf.meta["key"]
        _assert_same(again, surf, tol=0)
        assert again.meta["adaptive"]["n_evaluated"] == n_eval
        # default options fill in: adaptive=True and {} are one result, another rtol is another
        from lossviz.session.surfaces import _adaptive_options
        assert _adaptive_options(True) == _adaptive_options({}) != _adaptive_options({"rtol": 0.01})

        # the full surface of the same grid is a different stored result, computed in full
        counted.clear()
        full = s.surface(tip, x=GRID, y=GRID, seed=4, dtype=torch.float64)
        assert sum(counted) == 21 * 21 and full.meta["key"] != surf.meta["key"] and not full.errors
        rows = {r["key"]: r for r in s.surfaces()}
        assert {surf.meta["key"], full.meta["key"]} <= set(rows)
        assert rows[surf.meta["key"]]["complete"] and rows[full.meta["key"]]["complete"]
        assert rows[surf.meta["key"]]["spec"]["adaptive"]["budget"] == OPTIONS["budget"]
        assert "adaptive" not in rows[full.meta["key"]]["spec"]
        assert rows[surf.meta["key"]]["meta"]["n_evaluated"] == n_eval
        # the evaluated points are the full surface's values (ground truth), exactly
        ev = np.asarray(surf.meta["adaptive"]["evaluated"])
        for k in full.values:
            np.testing.assert_allclose(surf.values[k].ravel()[ev], full.values[k].ravel()[ev], rtol=1e-10, atol=1e-12)
        # and the interpolated picture is close to it (the refinement's purpose)
        rel = np.abs(surf.values["train_loss"] / full.values["train_loss"] - 1)
        assert rel.max() < 0.05
    finally:
        s.close()


def test_adaptive_pca_surface_evaluates_the_trajectory(trained, counted):
    path, tip = trained
    s = _session(path)
    try:
        opts, g = {"budget": 0.3, "coarse_step": 5, "near_min": 1}, "-0.1:0.1:21"
        surf = s.surface(tip, directions="pca", x=g, y=g, adaptive=opts, dtype=torch.float64)
        coords = np.asarray(surf.meta["trajectory"]["coords"])
        assert coords.shape == (4, 2) and (np.abs(coords) <= 0.1).all()  # the path lies in the grid
        ref = refine_surface(
            s.model(tip), s.eval_data()["train"], surf.directions, g, g, **opts,
            trajectory=coords, test_data=s.eval_data()["test"], dtype=torch.float64,
        )
        _assert_same(surf, ref)
        # every trajectory point has its nearest grid point evaluated
        nodes = {int(np.abs(surf.y - b).argmin() * len(surf.x) + np.abs(surf.x - a).argmin()) for a, b in coords}
        assert nodes <= set(surf.meta["adaptive"]["evaluated"])
        # which refinement without the trajectory would not all have chosen (the argument mattered)
        plain = refine_surface(
            s.model(tip), s.eval_data()["train"], surf.directions, g, g, **opts,
            test_data=s.eval_data()["test"], dtype=torch.float64,
        )
        assert not nodes <= set(plain.meta["adaptive"]["evaluated"])
    finally:
        s.close()


def test_cancelled_adaptive_surface_is_stored_partial_and_recomputed_from_scratch(trained, counted):
    path, tip = trained
    s = _session(path)
    try:
        def cancel_first(ev):
            if ev["type"] == "surface":
                ev["job"].cancel()

        unsub = s.subscribe(cancel_first)
        job = s.surface(tip, x=GRID, y=GRID, seed=5, adaptive=OPTIONS, wait=False)
        job.wait(120)
        unsub()
        assert job.state == "cancelled"
        assert job.result.meta["adaptive"]["rounds"] == 1  # stopped after the coarse round
        n_coarse = sum(counted)
        rows = [r for r in s.surfaces() if r["spec"].get("seed") == 5]
        assert len(rows) == 1 and not rows[0]["complete"]
        # asked again: computed from scratch (the coarse round again), not resumed
        counted.clear()
        done = s.surface(tip, x=GRID, y=GRID, seed=5, adaptive=OPTIONS)
        ref = refine_surface(s.model(tip), s.eval_data()["train"], "random", GRID, GRID, seed=5, **OPTIONS,
                             test_data=s.eval_data()["test"])
        assert sum(counted) == 2 * ref.meta["adaptive"]["n_evaluated"]  # the session's run + this one
        assert ref.meta["adaptive"]["n_evaluated"] > n_coarse
        _assert_same(done, ref, tol=1e-6)
        rows = [r for r in s.surfaces() if r["spec"].get("seed") == 5]
        assert len(rows) == 1 and rows[0]["complete"]
    finally:
        s.close()


@pytest.mark.parametrize(
    "adaptive, error, words",
    [
        ({"rtl": 0.01, "budget": 0.1}, ValueError, ["'rtl'", "rtol", "coarse_step", "spacing"]),
        ({"budget": 0.0}, ValueError, ["budget", "(0, 1]"]),
        ({"budget": 1.5}, ValueError, ["budget"]),
        ({"batch": -0.1}, ValueError, ["batch"]),
        ({"rtol": 0}, ValueError, ["rtol", "positive"]),
        ({"rtol": float("nan")}, ValueError, ["rtol", "finite"]),
        ({"coarse_step": 0}, ValueError, ["coarse_step", ">= 1"]),
        ({"coarse_step": 2.5}, ValueError, ["coarse_step", "integer"]),
        ({"near_min": -1}, ValueError, ["near_min"]),
        ({"spacing": True}, ValueError, ["spacing"]),
        ("yes", TypeError, ["adaptive", "dict"]),
    ],
)
def test_bad_adaptive_options_raise_before_any_job(trained, adaptive, error, words):
    path, tip = trained
    s = _session(path)
    try:
        n_jobs, n_results = len(s.jobs), len(s.surfaces())
        with pytest.raises(error) as info:
            s.surface(tip, x="-1:1:5", y="-1:1:5", adaptive=adaptive)
        for w in words:
            assert w in str(info.value), (w, str(info.value))
        assert len(s.jobs) == n_jobs and len(s.surfaces()) == n_results
    finally:
        s.close()


@pytest.mark.parametrize("bad", [-1, float("nan"), "2", True])
def test_bad_save_interval_raises(trained, bad):
    path, tip = trained
    s = _session(path)
    try:
        with pytest.raises(ValueError, match="save_every_s"):
            s.surface(tip, x="-1:1:5", y="-1:1:5", save_every_s=bad)
    finally:
        s.close()


# ----------------------------------------------------------------------------------------- saves
def _count_saves(s, monkeypatch):
    saves: list[tuple[int, bool]] = []
    original = s.store.put_result

    def counting(key, kind, spec, **kw):
        if kind == "surface":
            saves.append((kw["meta"]["n_done"], kw["complete"]))
        return original(key, kind, spec, **kw)

    monkeypatch.setattr(s.store, "put_result", counting)
    return saves


@pytest.mark.parametrize("every_s, n_saves", [(1e9, 1), (0, 9)])
def test_partial_saves_are_throttled_and_events_still_come_per_chunk(trained, monkeypatch, every_s, n_saves):
    path, tip = trained
    s = _session(path)
    try:
        saves = _count_saves(s, monkeypatch)
        events = []
        unsub = s.subscribe(lambda ev: events.append(ev["surface"].n_done) if ev["type"] == "surface" else None)
        seed = 10 + int(every_s > 0)
        surf = s.surface(tip, x="-1:1:7", y="-1:1:7", seed=seed, chunk_size=6, save_every_s=every_s)
        unsub()
        assert surf.complete
        chunks = -(-49 // 6)  # 9 chunks: one event each, whatever the saving
        assert events == [min(49, 6 * (k + 1)) for k in range(chunks)]
        # large interval: the final save only; 0: a save per chunk (the last one is the final save)
        assert len(saves) == n_saves
        assert saves[-1] == (49, True) and all(not complete for _, complete in saves[:-1])
        if every_s == 0:
            assert [n for n, _ in saves] == events
        stored = s.load_surface(surf.meta["key"])
        for k in surf.values:
            np.testing.assert_array_equal(stored.values[k], surf.values[k])
    finally:
        s.close()


def test_a_partial_is_saved_on_cancel_and_on_failure_despite_a_long_interval(trained, monkeypatch, counted):
    path, tip = trained
    s = _session(path)
    try:
        saves = _count_saves(s, monkeypatch)

        # cancel after the second chunk: one save, the partial, and it resumes from there
        def cancel_second(ev):
            if ev["type"] == "surface" and ev["surface"].n_done >= 12:
                ev["job"].cancel()

        unsub = s.subscribe(cancel_second)
        job = s.surface(tip, x="-1:1:7", y="-1:1:7", seed=20, chunk_size=6, save_every_s=1e9, wait=False)
        job.wait(120)
        unsub()
        assert job.state == "cancelled" and saves == [(12, False)]
        counted.clear()
        done = s.surface(tip, x="-1:1:7", y="-1:1:7", seed=20, chunk_size=6, save_every_s=1e9)
        assert done.complete and sum(counted) == 49 - 12

        # a failure (an exception out of the engine) in the fourth chunk: the three chunks before are kept
        saves.clear()
        original = surface_mod.evaluate_chunk  # the counting wrapper of the fixture
        calls = []

        class Boom(BaseException):
            pass

        def failing(spec, coeffs):
            calls.append(1)
            if len(calls) == 4:
                raise Boom("the machine fell over")
            return original(spec, coeffs)

        monkeypatch.setattr(surface_mod, "evaluate_chunk", failing)
        job = s.surface(tip, x="-1:1:7", y="-1:1:7", seed=21, chunk_size=6, save_every_s=1e9, wait=False)
        job.wait(120)
        assert job.state == "failed" and "fell over" in job.error
        assert saves == [(18, False)]
        monkeypatch.setattr(surface_mod, "evaluate_chunk", original)  # the counting one again
        counted.clear()
        done = s.surface(tip, x="-1:1:7", y="-1:1:7", seed=21, chunk_size=6)
        assert done.complete and sum(counted) == 49 - 18
        ref = surface_mod.compute_surface(
            s.model(tip), s.eval_data()["train"], "random", "-1:1:7", "-1:1:7", seed=21,
            test_data=s.eval_data()["test"], progress=False,
        )
        for k in ref.values:
            np.testing.assert_allclose(done.values[k], ref.values[k], rtol=1e-5, atol=1e-6)
    finally:
        s.close()
