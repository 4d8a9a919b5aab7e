"""The Explorer's kernel side on a real (tiny) Session, driven without a browser: projections while a job
trains (one at a time, newest wins, never stale), outlying checkpoints left out, auto surface ranges, critical
points, the project panel, and a surface next to a training job."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lossviz.widget import Explorer  # noqa: E402

# the ``session`` fixture (a small spirals project): tests/unit/conftest.py


def test_projection_payloads_during_training_match_the_dropdown_and_never_go_back(session):
    """100 epochs trained in PCA view (the small spirals mlp, two batches an epoch: seconds): every projection
    sent (each one a frame of the scatter) says PCA, its count of checkpoints never decreases, the last one has
    them all, and no PCA result was stored per arriving checkpoint."""
    session.train(epochs=2).wait(120)
    w = Explorer(session, throttle=0.02, background=True)
    sent: list[dict] = []
    lock = threading.Lock()

    def record(change):
        with lock:
            sent.append({"method": change["new"].get("method"), "count": change["new"].get("count"),
                         "dropdown": w.projection_method, "n": len(change["new"].get("ids", []))})

    try:
        w.projection_method = "pca"
        w.wait_idle(60)
        w.observe(record, names="projection")
        w.handle({"type": "train", "epochs": 100, "hparams": {"lr": 0.05}})
        assert w.error == "", w.error
        session.jobs[-1].wait(300)
        w.wait_idle(120)
        total = len(session.checkpoints())
        assert total == 103
        assert len(sent) >= 2, f"{len(sent)} projection(s) sent while training"
        print(f"100 epochs in PCA view: {len(sent)} projections sent, counts {[p['count'] for p in sent]}")
        assert all(p["method"] == "pca" == p["dropdown"] for p in sent), sent
        counts = [p["count"] for p in sent]
        assert counts == sorted(counts) and counts[-1] == total, counts
        assert all(p["n"] == p["count"] for p in sent)  # nothing is an outlier in a normal run
        # refreshes after new checkpoints are stored nowhere: only the one the user asked for
        assert len(session.store.results("projection")) == 1
        # asking again for what is on screen is answered from the cache, no new job
        n_jobs = len(session.jobs)
        w.projection_method = "layout"
        w.wait_idle(60)
        w.projection_method = "pca"
        w.wait_idle(60)
        assert w.projection["method"] == "pca" and w.projection["count"] == total
        assert len([j for j in session.jobs[n_jobs:] if j.kind == "project"]) == 1  # only the layout's
        assert w.projection["labels"][0].startswith("PC1: ") and w.projection["labels"][0].endswith(" %")
    finally:
        w.close()


def test_switching_method_while_one_computes_shows_only_the_selected_one(session):
    session.train(epochs=3).wait(120)
    w = Explorer(session, throttle=0, background=True)
    try:
        w.wait_idle(60)
        seen = []
        w.observe(lambda ch: seen.append((ch["new"]["method"], w.projection_method)), names="projection")
        w.projection_method = "pca"
        w.projection_method = "tsne"
        w.projection_method = "layout"
        w.wait_idle(60)
        assert w.projection["method"] == "layout"
        assert all(m == d for m, d in seen), seen
    finally:
        w.close()


def test_a_diverged_run_is_left_out_of_pca_and_marked(session):
    """A run at lr 1e6 next to a normal one: by default its checkpoints are outliers, left out of the PCA,
    whose coordinates of the normal points are sklearn's PCA of those points alone; with the toggle on,
    the diverged weights dominate (the 100 % / 0 % picture the default avoids)."""
    from sklearn.decomposition import PCA

    init = session.init()
    normal = session.train(from_=init.id, epochs=5, lr=0.05).wait(120)
    session.train(from_=init.id, epochs=3, lr=1e6).wait(120)
    ids = [c.id for c in session.checkpoints()]
    bad = session.outliers()
    assert bad and init.id not in bad and not set(bad) & {c.id for c in normal}
    norms = {i: session.weight_norm(i) for i in ids}
    assert all(not np.isfinite(norms[i]) or norms[i] > 1e3 * norms[init.id] or
               session.checkpoint(i).status == "diverged" for i in bad)
    w = Explorer(session, throttle=0, background=True)
    try:
        w.projection_method = "pca"
        w.wait_idle(60)
        p = w.projection
        assert sorted(p["outliers"]) == sorted(bad) == sorted(w.outliers)
        assert p["count"] == p["total"] == len(ids)
        kept = [round(i) for i in np.asarray(p["ids"]).tolist()]
        assert sorted(kept) == sorted(set(ids) - set(bad))
        ratio = p["meta"]["explained_variance_ratio"]
        X = np.stack([session.vector(i).double().numpy() for i in kept])
        ref = PCA(2).fit(X)
        got = np.asarray(p["coords"], dtype=np.float64)
        ref_xy = ref.transform(X)
        for k in range(2):  # up to the sign of each component
            sgn = np.sign(got[:, k] @ ref_xy[:, k])
            np.testing.assert_allclose(sgn * got[:, k], ref_xy[:, k], atol=1e-3 * np.abs(ref_xy).max())
        np.testing.assert_allclose(ratio, ref.explained_variance_ratio_, rtol=1e-4)
        w.include_outliers = True
        w.wait_idle(60)
        assert w.projection["outliers"] == [] and w.projection["count"] == len(ids)
        assert w.projection["meta"]["explained_variance_ratio"][0] > 0.999999
        every = np.asarray(w.projection["coords"], dtype=np.float64)
        normal_rows = np.isin(np.asarray(w.projection["ids"]).round(), kept)
        spread = np.ptp(every[normal_rows], axis=0).max() / np.ptp(every, axis=0).max()
        assert spread < 1e-3, spread  # included, the diverged weights squash the normal points into one
        # hiding a branch and a checkpoint leaves them out of the projection
        w.include_outliers = False
        w.hidden = [kept[-1]]
        w.wait_idle(60)
        assert kept[-1] not in np.asarray(w.projection["ids"]).tolist()
    finally:
        w.close()


def _bumpy_surface():
    from lossviz.landscape import Surface

    x = np.linspace(-3, 3, 61)
    y = np.linspace(-3, 3, 61)
    X, Y = np.meshgrid(x, y)
    loss = np.sin(3 * X) * np.sin(3 * Y) + 0.2 * (X**2 + Y**2)  # many minima, saddles and maxima
    return Surface(x=x, y=y, values={"train_loss": loss, "train_acc": 100 - 10 * loss},
                   done=np.ones_like(loss, bool), meta={"center": 0})


def test_critical_points_only_for_losses_capped_by_prominence_with_a_toggle(session):
    from lossviz import figures
    from lossviz.widget import views

    surf = _bumpy_surface()
    z = surf.values["train_loss"]
    every = figures.critical_markers(surf.x, surf.y, z)
    assert len(every) > figures.MAX_CRITICAL_MARKERS
    # prominence by a plain loop: |z_p - mean of the finite others within 2 steps|

    def loop_prominence(i, j):
        others = [z[a, b] for a in range(i - 2, i + 3) for b in range(j - 2, j + 3)
                  if 0 <= a < z.shape[0] and 0 <= b < z.shape[1] and (a, b) != (i, j)]
        return abs(z[i, j] - sum(others) / len(others))

    shown = views.surface_view(surf, "train_loss")["critical"]
    assert len(shown) == figures.MAX_CRITICAL_MARKERS
    proms = [m["prominence"] for m in shown]
    assert proms == sorted(proms, reverse=True)
    assert min(proms) >= max(m["prominence"] for m in every if m not in shown) - 1e-12
    for i, j in [(0, 0), (1, 60), (30, 30), (17, 44), (60, 2)]:  # corners, edges and inside
        assert figures.prominence(z, i, j) == pytest.approx(loop_prominence(i, j), rel=1e-12)
    assert views.surface_view(surf, "train_acc")["critical"] == []  # accuracy: not loss-like
    w = Explorer(session, throttle=0, background=False, surface=surf)
    try:
        assert len(w.surface["critical"]) == figures.MAX_CRITICAL_MARKERS
        w.show_critical = False
        assert w.surface["critical"] == []
        w.vmin, w.vmax = 0.1, 0.5
        w.surface_metric = "train_acc"
        assert w.vmin is None and w.vmax is None  # another metric: its own colour limits
        assert w.surface["metric"] == "train_acc"
    finally:
        w.close()


def test_auto_ranges_fit_the_trajectory_and_pca_axes_carry_explained_variance(session):
    from lossviz import figures
    from lossviz.grid import AUTO_MARGIN, AUTO_SPAN

    run = session.train(epochs=4).wait(120)
    tip = run[-1].id
    surf = session.surface(tip, directions="pca", x="auto:7", y="auto:5")
    coords = np.asarray(surf.meta["trajectory"]["coords"], dtype=np.float64)
    for axis, col, num in ((surf.x, 0, 7), (surf.y, 1, 5)):
        lo, hi = min(coords[:, col].min(), 0.0), max(coords[:, col].max(), 0.0)
        pad = AUTO_MARGIN * (hi - lo)
        assert len(axis) == num
        assert axis[0] == pytest.approx(lo - pad) and axis[-1] == pytest.approx(hi + pad)
    assert surf.x[0] < coords[:, 0].min() and coords[:, 0].max() < surf.x[-1]  # the path is inside the grid
    ratio = surf.meta["explained_variance_ratio"]
    want = f"PC1: {100 * ratio[0]:.1f} %"
    assert figures.surface_axis_labels(surf)[0] == want
    fig = figures.contour_figure(surf)
    assert fig.layout.xaxis.title.text == want
    rnd = session.surface(tip, x="auto:5", y="auto:5")  # random directions: the standard span
    assert (rnd.x[0], rnd.x[-1]) == AUTO_SPAN and (rnd.y[0], rnd.y[-1]) == AUTO_SPAN
    # the Explorer: auto by default, separate x and y ranges, labels in the payload
    w = Explorer(session, throttle=0, background=False)
    try:
        assert w.form["range"] == "auto"
        w.selection = [c.id for c in run]
        w.handle({"type": "surface", "center": tip, "directions": "pca", "resolution": 5, "y_range": "-2:3"})
        assert w.error == "", w.error
        w._surface_job.wait(120)
        got = w._surface_job.result
        assert (got.y[0], got.y[-1]) == (-2.0, 3.0) and got.x[0] < 0 < got.x[-1]
        w._push_surface()
        assert w.surface["labels"][0].startswith("PC1: ")
    finally:
        w.close()


def test_compute_surface_auto_axes_fit_the_given_trajectory():
    import lossviz
    from lossviz.grid import AUTO_MARGIN, AUTO_SPAN

    torch.manual_seed(0)
    model = torch.nn.Linear(2, 2)
    data = (torch.randn(16, 2), torch.randint(0, 2, (16,)))
    traj = np.array([[-3.0, 0.5], [-1.0, 1.5], [0.0, 0.0]])
    s = lossviz.surface(model, data, x="auto:5", y="auto:4", trajectory=traj, progress=False)
    assert s.x[0] == pytest.approx(-3 - AUTO_MARGIN * 3) and s.x[-1] == pytest.approx(AUTO_MARGIN * 3)
    assert s.y[0] == pytest.approx(-AUTO_MARGIN * 1.5) and s.y[-1] == pytest.approx(1.5 + AUTO_MARGIN * 1.5)
    r = lossviz.surface(model, data, x="auto:3", progress=False)
    assert (r.x[0], r.x[-1]) == AUTO_SPAN
    with pytest.raises(ValueError, match="auto:51"):
        lossviz.surface(model, data, x="auto:many", progress=False)


def test_a_surface_is_computed_while_a_training_job_runs(session):
    """The surface queue is not the training queue: a surface asked for while a long training job runs
    finishes while that job is still running."""
    first = session.train(epochs=1).wait(120)
    started = threading.Event()
    unsubscribe = session.subscribe(lambda e: e.get("type") == "checkpoint" and started.set())
    job = session.train(from_=first[-1].id, epochs=400)
    try:
        assert started.wait(60)
        surf_job = session.surface(first[-1].id, x="-1:1:3", y="-1:1:3", wait=False)
        surf_job.wait(60)
        assert surf_job.state == "done", surf_job.error
        assert job.state == "running"  # the training job was still going
    finally:
        unsubscribe()
        job.cancel()
        job.wait(60)


def test_the_explorer_prewarms_torch_dynamo():
    """Opening the Explorer starts the import of torch._dynamo that torch's optimizers do at their first step."""
    import lossviz.training as T

    thread = T.prewarm_optimizers()
    assert thread is T.prewarm_optimizers()  # once per process
    thread.join(120)
    import sys

    assert "torch._dynamo" in sys.modules


def test_deleting_a_branch_asks_first_and_removes_only_the_files_lossviz_wrote(session):
    init = session.init()
    keep = session.train(from_=init.id, epochs=2, lr=0.05).wait(120)
    gone = session.train(from_=init.id, epochs=2, lr=0.1).wait(120)
    branch = gone[0].branch
    w = Explorer(session, throttle=0, background=False)
    try:
        w.handle({"type": "delete", "branch": branch})
        assert w.confirm_delete["ids"] == [c.id for c in gone] and "cannot be undone" in w.confirm_delete["text"]
        assert len(session.checkpoints()) == 5  # nothing deleted before the confirmation
        with pytest.raises(ValueError, match="confirm=True"):
            session.delete([gone[0].id])
        # a parent with a child that stays is refused, nothing changes
        with pytest.raises(ValueError, match="grew from"):
            session.delete([keep[0].id], confirm=True)
        # a weight file changed by someone else is not removed with its row
        stranger = session.store.weights_path(gone[-1].id)
        stranger.write_bytes(b"not ours")
        files_before = {p.name for p in (session.path / "weights").iterdir()}
        w.handle({"type": "delete", "branch": branch, "confirm": True})
        assert w.error == "", w.error
        assert [c.id for c in session.checkpoints()] == [init.id] + [c.id for c in keep]
        left = {p.name for p in (session.path / "weights").iterdir()}
        assert stranger.name in left and session.store.weights_path(keep[0].id).exists()
        assert files_before - left == {session.path.joinpath("weights", f"{gone[0].id}.safetensors").name}
        assert w.confirm_delete == {} and w.checkpoints["n"] == 3
    finally:
        w.close()


def test_requests_arriving_while_one_runs_fold_into_the_newest():
    """A runs; B, C, D arrive meanwhile: only D is computed after A, both shown in order; a known key is
    answered from the cache; another view's result is never shown; after forget() an old result is dropped."""
    from lossviz.widget.projections import ProjectionRequest, ProjectionRequests

    started: list[tuple[ProjectionRequest, object]] = []
    shown: list[tuple[str, tuple]] = []
    view = ["pca"]
    reqs = ProjectionRequests(lambda r, done: started.append((r, done)),
                              lambda r, res: shown.append((r.method, r.ids)),
                              lambda: (view[0], False, None))

    def req(*ids, method="pca"):
        return ProjectionRequest(method, tuple(ids), len(ids))

    reqs.request(req(1, 2))
    for r in (req(1, 2, 3), req(1, 2, 3, 4), req(1, 2, 3, 4, 5)):
        reqs.request(r)
    assert [r.ids for r, _ in started] == [(1, 2)]
    started[0][1]("A")
    assert [r.ids for r, _ in started] == [(1, 2), (1, 2, 3, 4, 5)]
    started[1][1]("D")
    assert shown == [("pca", (1, 2)), ("pca", (1, 2, 3, 4, 5))] and not reqs.busy()
    reqs.request(req(1, 2))  # known: answered from the cache at once, nothing computed
    assert len(started) == 2 and shown[-1] == ("pca", (1, 2))
    view[0] = "tsne"
    reqs.request(req(9, method="pca"))  # its result arrives after the user switched: not shown
    started[-1][1]("late")
    assert shown[-1] == ("pca", (1, 2))
    view[0] = "pca"
    reqs.request(req(7, 8))
    reqs.forget()
    started[-1][1]("old project")
    assert shown[-1] == ("pca", (1, 2))


def _settles(condition, timeout: float = 10.0) -> bool:
    """Whether ``condition()`` holds within ``timeout`` seconds (a job's end event follows its wait)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_the_message_of_a_started_job_says_how_it_ended(session):
    """"training 2 epoch(s)" becomes "training 2 epoch(s): done" when the job ends (it stayed "training"
    after the run was over); the same for a followed job (disturb), a cancelled one says so, and a later
    message is never overwritten by an earlier job's end."""
    w = Explorer(session, throttle=0.02, background=True)
    try:
        w.handle({"type": "train", "epochs": 2, "hparams": {"lr": 0.05}})
        assert w.message == "training 2 epoch(s)", w.message
        session.jobs[-1].wait(120)
        assert _settles(lambda: w.message == "training 2 epoch(s): done"), w.message
        last = session.checkpoints()[-1].id
        w.handle({"type": "disturb", "from": last, "magnitude": 0.1, "seed": 0})
        session.jobs[-1].wait(60)
        assert _settles(lambda: w.message == f"disturbing checkpoint {last} by 0.1: done"), w.message
        w.handle({"type": "train", "epochs": 400, "hparams": {"lr": 0.05}})
        long_job = session.jobs[-1]
        w.handle({"type": "cancel", "job": long_job.id})
        long_job.wait(60)
        assert not _settles(lambda: w.message != "cancelling 1 job(s)", 1.0), w.message  # the cancel's words stay
        w.handle({"type": "train", "epochs": 1, "hparams": {"lr": 0.05}})
        job = session.jobs[-1]
        w.message = "something the user did since"
        job.wait(60)
        assert not _settles(lambda: w.message != "something the user did since", 1.0), w.message
    finally:
        w.close()
