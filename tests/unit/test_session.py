"""Session: branching and inheritance, exact continuation, divergence, disturb, interpolate,
distances, stored/resumable surfaces, reopening, events."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from torch import nn

from lossviz.directions import random_direction
from lossviz.params import ParamSpace
from lossviz.session import Session

surface_mod = importlib.import_module("lossviz.landscape")  # the module (lossviz.surface is also a function)
SPIRALS = {"n": 200, "n_test": 60}
HP = {"batch_size": 50, "lr": 0.05}


def _session(path, **kw):
    kw.setdefault("hparams", HP)
    return Session(path, model="mlp", data="spirals", data_kwargs=SPIRALS, device="cpu", **kw)


def _wait(job, timeout=120):
    job.wait(timeout)
    return job


def test_branching_inherits_hyperparameters_and_continuation_is_bit_exact(tmp_path):
    s = _session(tmp_path / "a")
    job = _wait(s.train(epochs=5, lr=0.07, momentum=0.8, seed=3))
    assert job.state == "done", job.error
    main = job.result
    assert [c.epoch for c in main] == [1.0, 2.0, 3.0, 4.0, 5.0]
    init = s.checkpoints()[0]
    assert init.kind == "init" and main[0].parent == init.id and main[0].branch == init.branch
    e2 = main[1]
    # 3 epochs from epoch 2 of the 5-epoch branch: a new branch whose parent is epoch 2
    br = _wait(s.train(from_=e2.id, epochs=3, lr=0.01))
    new = br.result
    assert br.state == "done" and [c.epoch for c in new] == [3.0, 4.0, 5.0]
    assert new[0].parent == e2.id and new[0].branch != e2.branch
    assert {c.branch for c in new} == {new[0].branch}
    h = new[0].hparams
    assert h["lr"] == 0.01 and h["momentum"] == 0.8 and h["seed"] == 3 and h["batch_size"] == 50
    branches = {b["id"]: b for b in s.branches()}
    assert branches[new[0].branch]["parent"] == e2.id and branches[new[0].branch]["n"] == 3
    # from the last checkpoint of a branch: the branch continues
    cont = _wait(s.train(from_=new[-1].id, epochs=1)).result
    assert cont[0].branch == new[0].branch and cont[0].parent == new[-1].id and cont[0].epoch == 6.0

    # same seed, interrupted after 2 epochs and continued, reproduces the uninterrupted run exactly
    s2 = _session(tmp_path / "b")
    first = _wait(s2.train(epochs=2, lr=0.07, momentum=0.8, seed=3)).result
    rest = _wait(s2.train(from_=first[-1].id, epochs=3)).result
    assert rest[0].branch == first[0].branch  # continued, not branched
    for a, b in zip(main, first + rest, strict=True):
        sa, sb = s.store.load_state_dict(a.id), s2.store.load_state_dict(b.id)
        assert all(torch.equal(sa[k], sb[k]) for k in sa), (a.epoch, b.epoch)
        assert a.metrics == b.metrics
    # the branch with another lr really differs (the comparison can fail)
    assert not torch.equal(s.vector(new[-1].id), s.vector(main[-1].id))
    s.close()
    s2.close()


def test_bad_hyperparameters_raise_before_anything_starts(tmp_path):
    s = _session(tmp_path / "p")
    n_jobs = len(s.jobs)
    for kw, field in [({"lr": -1.0}, "lr"), ({"lr": float("nan")}, "lr"), ({"momentum": 2.0}, "momentum"),
                      ({"batch_size": 0}, "batch_size"), ({"optimizer": "foo"}, "optimizer"),
                      ({"epochs": 0}, "epochs")]:
        with pytest.raises(ValueError, match=field):
            s.train(**kw)
    assert len(s.jobs) == n_jobs
    s.close()


def test_a_diverging_run_is_recorded_and_the_session_lives_on(tmp_path):
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    y = x @ torch.tensor([[1.0], [-2.0]])
    s = Session(tmp_path / "p", model=lambda: nn.Linear(2, 1), data=(x, y), loss="mse",
                hparams={"lr": 0.01, "momentum": 0.0, "batch_size": 16})
    events = []
    s.subscribe(events.append)
    job = _wait(s.train(epochs=30, lr=100.0))
    assert job.state == "failed"
    assert "nan" in job.error or "inf" in job.error
    last = s.checkpoints()[-1]
    assert last.status == "diverged" and last.note == job.error
    assert any(e["type"] == "error" for e in events)
    with pytest.raises(ValueError, match="diverged"):
        s.train(from_=last.id)
    # the worker is alive: the next job runs
    ok = _wait(s.train(from_=s.checkpoints()[0].id, epochs=2))
    assert ok.state == "done" and ok.result[-1].metrics["train_loss"] < s.checkpoints()[0].metrics["train_loss"]
    s.close()


def test_an_exception_in_a_job_fails_it_without_killing_the_worker(tmp_path):
    calls = {"n": 0}

    def flaky_loss(out, target):
        calls["n"] += 1
        if calls["n"] > 8:  # after evaluating init and a few steps
            raise RuntimeError("boom in the loss")
        return nn.functional.cross_entropy(out, target)

    s = Session(tmp_path / "p", model="mlp", data="spirals", data_kwargs=SPIRALS, loss=flaky_loss, hparams=HP)
    job = _wait(s.train(epochs=3))
    assert job.state == "failed" and "boom in the loss" in job.error
    calls["n"] = -10_000
    assert _wait(s.train(epochs=1)).state == "done"
    s.close()


def test_disturb_moves_by_magnitude_along_a_filter_normalized_direction(tmp_path):
    s = _session(tmp_path / "p")
    src = _wait(s.train(epochs=2)).result[-1]
    c = s.disturb(src.id, 0.3, seed=5)
    assert c.kind == "disturb" and c.parent == src.id and c.branch != src.branch
    model = s.model(src.id)
    space = ParamSpace(model, "weights")
    center = space.vector(model)
    d = random_direction(space, center, seed=5, normalization="filter", ignore="biasbn")
    assert s.distance(src.id, c.id) == pytest.approx(0.3 * float(torch.linalg.norm(d.double())), rel=1e-6)
    assert torch.allclose(s.vector(c.id), center + 0.3 * d, atol=1e-6)
    for e, part_d, part_w in zip(space.entries, space.split(d), space.split(center), strict=True):
        if e.dim > 1:  # each filter (row) of d has the norm of the weight's filter
            assert torch.allclose(part_d.norm(dim=1), part_w.norm(dim=1), rtol=1e-5)
        else:  # biases are not moved
            assert torch.count_nonzero(part_d) == 0
    assert c.metrics == pytest.approx(s.evaluate(s.model(c.id)))
    # training from the disturbed root continues its branch
    more = _wait(s.train(from_=c.id, epochs=1)).result
    assert more[0].branch == c.branch
    s.close()


class _BNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.bn, self.fc2 = nn.Linear(2, 8), nn.BatchNorm1d(8), nn.Linear(8, 2)

    def forward(self, x):
        return self.fc2(torch.relu(self.bn(self.fc1(x))))


def test_interpolate_distances_and_batchnorm_statistics(tmp_path):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(120, 2, generator=g)
    train = torch.utils.data.TensorDataset(x, (x.sum(1) > 0).long())
    s = Session(tmp_path / "p", model=_BNNet, data=train, hparams={"batch_size": 40, "lr": 0.1})
    a = _wait(s.train(epochs=2)).result[-1]
    b = _wait(s.train(from_=s.checkpoints()[0].id, epochs=2, lr=0.3, seed=9)).result[-1]
    line = s.interpolate(a.id, b.id, 5)
    assert [c.kind for c in line] == ["interpolate"] * 5 and line[0].parent == a.id
    sa, sb = s.store.load_state_dict(a.id), s.store.load_state_dict(b.id)
    s0, s4 = s.store.load_state_dict(line[0].id), s.store.load_state_dict(line[-1].id)
    for k in sa:
        assert torch.equal(s0[k], sa[k]) and torch.equal(s4[k], sb[k]), k
    assert not torch.equal(sa["bn.running_mean"], sb["bn.running_mean"])
    mid = s.store.load_state_dict(line[2].id)
    for k in ("fc1.weight", "bn.running_mean", "bn.running_var"):
        assert torch.allclose(mid[k].double(), 0.5 * (sa[k].double() + sb[k].double()), atol=1e-6), k
    for c in line:
        assert c.metrics == pytest.approx(s.evaluate(s.model(c.id)))
    ids = [a.id, b.id, line[1].id, line[2].id]
    D = s.distances(ids)
    assert np.array_equal(D, D.T) and np.all(np.diag(D) == 0)
    for i, p in enumerate(ids):
        for j, q in enumerate(ids):
            ref = float(torch.linalg.norm(s.vector(p) - s.vector(q)))
            assert D[i, j] == pytest.approx(ref, rel=1e-5, abs=1e-7)
    # points on the segment: d(a, t) = t * d(a, b) in weight space
    assert D[0, 3] == pytest.approx(0.5 * D[0, 1], rel=1e-5)
    s.close()


def test_surface_is_stored_found_again_and_resumes_after_cancel(tmp_path, monkeypatch):
    evaluated = []
    original = surface_mod.evaluate_chunk

    def counting(spec, coeffs):
        evaluated.append(len(coeffs))
        return original(spec, coeffs)

    monkeypatch.setattr(surface_mod, "evaluate_chunk", counting)
    s = _session(tmp_path / "p")
    center = _wait(s.train(epochs=2)).result[-1]

    first = s.surface(center.id, x="-1:1:5", y="-1:1:5", seed=1, chunk_size=8)
    assert first.complete and sum(evaluated) == 25 and first.meta["center"] == center.id
    assert len(s.surfaces()) == 1 and s.surfaces()[0]["complete"]
    evaluated.clear()
    again = s.surface(center.id, x="-1:1:5", y="-1:1:5", seed=1)
    assert sum(evaluated) == 0
    for k in first.values:
        np.testing.assert_array_equal(again.values[k], first.values[k])
    # the center is the grid's middle point: its loss is the checkpoint's own train loss
    assert again.values["train_loss"][2, 2] == pytest.approx(center.metrics["train_loss"], rel=1e-5)

    # cancel after the first chunk, then resume: only the missing points are evaluated
    evaluated.clear()
    stop = []

    def on_event(ev):
        if ev["type"] == "surface" and not stop:
            stop.append(ev["surface"].n_done)
            ev["job"].cancel()

    unsub = s.subscribe(on_event)
    job = s.surface(center.id, x="-1:1:7", y="-1:1:7", seed=2, wait=False, chunk_size=6)
    job.wait(120)
    unsub()
    assert job.state == "cancelled"
    partial = job.result
    n_partial = partial.n_done
    assert 0 < n_partial < 49 and sum(evaluated) == n_partial
    stored = [r for r in s.surfaces() if not r["complete"]]
    assert len(stored) == 1 and stored[0]["meta"]["n_done"] == n_partial
    evaluated.clear()
    done = s.surface(center.id, x="-1:1:7", y="-1:1:7", seed=2, chunk_size=6)
    assert done.complete and sum(evaluated) == 49 - n_partial
    # against an independent one-go computation with the engine
    ref = surface_mod.compute_surface(
        s.model(center.id), s.eval_data()["train"], "random", "-1:1:7", "-1:1:7", seed=2,
        test_data=s.eval_data()["test"], progress=False,
    )
    for k in ref.values:
        np.testing.assert_allclose(done.values[k], ref.values[k], rtol=1e-5, atol=1e-6)
    s.close()


def test_pca_surface_carries_the_trajectory(tmp_path):
    from lossviz.projection import onto_plane

    s = _session(tmp_path / "p")
    traj = _wait(s.train(epochs=4)).result
    surf = s.surface(traj[-1].id, directions="pca", x="-1:1:3", y="-1:1:3")
    t = surf.meta["trajectory"]
    ids = t["ids"]
    assert ids == [s.checkpoints()[0].id] + [c.id for c in traj]
    d1, d2 = surf.directions.vectors
    ref = onto_plane(torch.stack([s.vector(i) for i in ids]), s.vector(traj[-1].id), d1, d2)
    np.testing.assert_allclose(np.asarray(t["coords"]), ref, atol=1e-5)
    assert t["coords"][-1] == pytest.approx([0.0, 0.0], abs=1e-6)
    proj = s.project(method="surface", surface=surf)
    np.testing.assert_allclose(proj.coords, ref, atol=1e-5)
    s.close()


def test_reopening_listing_and_events(tmp_path):
    s = _session(tmp_path / "zoo")
    events = []
    unsub = s.subscribe(events.append)
    _wait(s.train(epochs=2))
    kinds = {e["type"] for e in events}
    assert {"checkpoint", "job"} <= kinds
    states = [e["state"] for e in events if e["type"] == "job"]
    assert states[-1] == "done" and "running" in states
    unsub()
    n = len(events)
    s.disturb(s.checkpoints()[-1].id, 0.1, seed=0)
    assert len(events) == n
    s.close()
    again = Session(tmp_path / "zoo")  # zoo names stored: no arguments needed
    assert len(again.checkpoints()) == 4 and again.defaults["batch_size"] == 50
    again.close()
    Session(tmp_path / "fac", model=lambda: nn.Linear(2, 2), data=(torch.randn(10, 2), torch.zeros(10).long())).close()
    with pytest.raises(ValueError, match="pass it again"):
        Session(tmp_path / "fac")
    with pytest.raises(ValueError, match="architecture"):
        Session(tmp_path / "zoo", model=lambda: nn.Linear(2, 2))
    listed = {p["name"]: p for p in Session.list_projects(tmp_path)}
    assert listed["zoo"]["model"] == "mlp" and listed["zoo"]["data"] == "spirals"
    assert listed["zoo"]["n_checkpoints"] == 4 and listed["fac"]["model"] is None


def test_malicious_weight_file_is_refused_by_the_session(tmp_path):
    import os
    import pickle

    marker = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    s = _session(tmp_path / "p")
    c = s.init()
    (tmp_path / "p" / "weights" / f"{c.id}.safetensors").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ValueError, match="safetensors"):
        s.model(c.id)
    job = _wait(s.train(from_=c.id, epochs=1))
    assert job.state == "failed" and "safetensors" in job.error
    assert not marker.exists()
    s.close()


def test_hessian_delegation_matches_the_full_hessian_and_is_found_again(tmp_path, monkeypatch):
    import lossviz.hessian as H

    g = torch.Generator().manual_seed(2)
    x = torch.randn(60, 2, generator=g)
    y = (x[:, 0] > 0).long()
    s = Session(tmp_path / "p", model=lambda: nn.Linear(2, 2), data=(x, y))
    c = s.init()
    res = s.hessian(c.id, k=2)
    # ground truth: the full Hessian of the mean cross-entropy, float64
    m = s.model(c.id).double()
    space = ParamSpace(m, "weights")
    theta = space.vector(m)

    def loss_of(vec):
        out = torch.func.functional_call(m, space.unflatten(vec), (x.double(),))
        return nn.functional.cross_entropy(out, y)

    full = torch.autograd.functional.hessian(loss_of, theta)
    ev = torch.linalg.eigvalsh(full).flip(0).numpy()
    np.testing.assert_allclose(res["eigenvalues"], ev[:2], rtol=1e-3, atol=1e-6)
    assert res["trace"] == pytest.approx(float(full.trace()), rel=0.3)  # Hutchinson estimate
    calls = []
    monkeypatch.setattr(H, "top_eigenpairs", lambda *a, **k: calls.append(1))
    again = s.hessian(c.id, k=2)  # stored: not recomputed
    assert not calls and again["eigenvalues"] == res["eigenvalues"]
    assert all(torch.equal(a, b) for a, b in zip(again["eigenvectors"], res["eigenvectors"], strict=True))
    s.close()


def _stored_surface_with_directions(path):
    from lossviz.directions import DirectionSet
    from lossviz.landscape import Surface

    x, y = np.linspace(-1, 1, 4), np.linspace(0, 1, 3)
    X, Y = np.meshgrid(x, y)
    vecs = torch.arange(10, dtype=torch.float32).reshape(2, 5) / 7
    dirs = DirectionSet(list(vecs), kind="weights", normalization="filter", ignore="biasbn", seed=4,
                        method="random", meta={"center": 3})
    surf = Surface(x, y, {"train_loss": 1 + X + 3 * Y}, np.ones((3, 4), bool), dirs)
    Session._write_surface(path, surf)
    return surf


@pytest.mark.parametrize("damage,words", [
    ("{not json", "not valid JSON"),
    (np.void(b"\x80\x04opaque bytes"), "not JSON text"),
    ('["kind", "weights"]', "must be a JSON object"),
    ('{"kind": "weights"}', "lacks"),
])
def test_a_damaged_direction_set_attribute_is_named_with_its_file(tmp_path, damage, words):
    import h5py

    p = tmp_path / "surface.h5"
    surf = _stored_surface_with_directions(p)
    intact = Session._read_surface(p)  # the undamaged file reads back the same directions
    np.testing.assert_array_equal(intact.directions.stacked().numpy(), surf.directions.stacked().numpy())
    assert (intact.directions.seed, intact.directions.meta["center"]) == (4, 3)
    with h5py.File(p, "r+") as f:
        f.attrs["lossviz_direction_set"] = damage
    with pytest.raises(ValueError, match=words) as info:
        Session._read_surface(p)
    message = str(info.value)
    assert str(p) in message and "lossviz_direction_set" in message
    assert "re-create" in message or "compute the surface again" in message


# ------------------------------------------------------------------ quick jobs and opening as a job
def test_quick_jobs_give_what_the_blocking_calls_give_with_progress_and_events(tmp_path):
    import threading

    s = _session(tmp_path / "q")
    try:
        main = _wait(s.train(epochs=3, seed=1)).result
        a, b = s.checkpoints()[0], main[-1]
        events = []
        s.subscribe(events.append)
        # a job on the main queue that holds it: the quick jobs must not wait behind it
        gate = threading.Event()
        blocker = s._submit(s._job("train", lambda j: gate.wait(60), "holds the main queue"))
        try:
            job = s.disturb(b.id, 0.3, seed=5, wait=False)
            assert job.wait(60).kind == "disturb" and job.state == "done" and blocker.state == "running"
            blocking = s.disturb(b.id, 0.3, seed=5)
            assert torch.equal(s.vector(job.result.id), s.vector(blocking.id))
            assert job.result.metrics == blocking.metrics and job.result.hparams == blocking.hparams

            line_job = s.interpolate(a.id, b.id, 5, wait=False)
            line = line_job.wait(60)
            assert line_job.state == "done" and (line_job.done, line_job.total) == (5, 5)
            assert line_job.message == "5/5 points" and blocker.state == "running"
            line2 = s.interpolate(a.id, b.id, 5)
            assert len(line) == len(line2) == 5 and line[0].parent == a.id
            for c1, c2 in zip(line, line2, strict=True):
                assert torch.equal(s.vector(c1.id), s.vector(c2.id)) and c1.metrics == c2.metrics

            ids = [c.id for c in s.checkpoints()]
            d_job = s.distances(ids, wait=False)
            D = d_job.wait(60)
            assert d_job.state == "done" and (d_job.done, d_job.total) == (len(ids), len(ids))
            np.testing.assert_array_equal(D, s.distances(ids))
            assert D[0, 1] == pytest.approx(s.distance(ids[0], ids[1]), rel=1e-12) and D[0, 1] > 0

            p_job = s.project(ids, method="pca", wait=False)
            proj = p_job.wait(60)
            assert p_job.state == "done" and "checkpoints read" in p_job.message
            again = s.project(ids, method="pca")  # found stored: the job stored what it computed
            np.testing.assert_array_equal(proj.coords, again.coords)
            assert proj.ids == ids and proj.coords.shape == (len(ids), 2)
            layout = s.project(method="layout", wait=False).wait(60)
            np.testing.assert_array_equal(layout.coords, s.project(method="layout").coords)
            assert blocker.state == "running"
        finally:
            gate.set()
        blocker.wait(60)
        for quick in (job, line_job, d_job, p_job):
            states = [e["state"] for e in events if e["type"] == "job" and e["job"] is quick]
            assert states[0] == "queued" and "running" in states and states[-1] == "done", states
        # bad arguments raise here, before any job
        n_jobs = len(s.jobs)
        with pytest.raises(ValueError, match="n must be an integer >= 2"):
            s.interpolate(a.id, b.id, 1, wait=False)
        with pytest.raises(ValueError, match="magnitude"):
            s.disturb(b.id, float("nan"), wait=False)
        with pytest.raises(ValueError, match="'umap'"):
            s.project(method="umap", wait=False)
        assert len(s.jobs) == n_jobs
    finally:
        s.close()


def test_a_cancelled_interpolation_stops_between_points_and_keeps_them(tmp_path):
    import threading

    s = _session(tmp_path / "c")
    try:
        main = _wait(s.train(epochs=1)).result
        a, b = s.checkpoints()[0], main[-1]
        n_before = len(s.checkpoints())
        holder, ready = {"seen": []}, threading.Event()

        def cancel_after_two(event):  # runs on the worker, between two points
            if event["type"] == "checkpoint" and event["checkpoint"].kind == "interpolate":
                holder["seen"].append(event["checkpoint"].id)
                if len(holder["seen"]) == 2:
                    ready.wait(10)
                    holder["job"].cancel()

        s.subscribe(cancel_after_two)
        job = s.interpolate(a.id, b.id, 6, wait=False)
        holder["job"] = job
        ready.set()
        job.wait(60)
        assert job.state == "cancelled" and job.error == "cancelled after 2/6 points"
        assert [c.id for c in job.result] == holder["seen"] and len(s.checkpoints()) == n_before + 2
        # a cancelled distances job before it starts: nothing computed
        d = s.distances([a.id, b.id], wait=False)
        d.cancel()
        d.wait(60)
        assert d.state == "cancelled"
    finally:
        s.close()


def test_opening_a_session_as_a_job(tmp_path):
    first = _session(tmp_path / "zoo")
    _wait(first.train(epochs=1))
    ids = [c.id for c in first.checkpoints()]
    first.close()
    events = []
    job = Session.opening(tmp_path / "zoo", device="cpu", on_event=events.append)
    opened = job.wait(120)
    try:
        assert job.state == "done" and isinstance(opened, Session)
        assert [c.id for c in opened.checkpoints()] == ids and opened.defaults["batch_size"] == 50
        states = [e["state"] for e in events if e["type"] == "job" and e["job"] is job]
        assert "running" in states and states[-1] == "done"
        n = len(events)
        opened.disturb(ids[-1], 0.1, seed=0)  # once opened, on_event gets the session's events
        assert any(e["type"] == "checkpoint" for e in events[n:])
    finally:
        opened.close()
    # a failed opening ends the job failed with the reason, and leaves no new project behind
    bad = Session.opening(tmp_path / "new", model="mlp")
    assert bad.wait(120) is None and bad.state == "failed" and "pass data=" in bad.error
    assert not (tmp_path / "new").exists()
    wrong = Session.opening(tmp_path / "zoo", model=lambda: nn.Linear(2, 2))
    wrong.wait(120)
    assert wrong.state == "failed" and "architecture" in wrong.error
