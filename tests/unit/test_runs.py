"""Session.log (lossviz.session.runs): checkpoints from any loop, this process or another one; projects
without data; branching from a logged run with lossviz's trainer; the Explorer's live store watch."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from lossviz.session import Session

SRC = str(Path(__file__).resolve().parents[2] / "src")


def net() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2))


def data(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 2, generator=g)
    return x, (x[:, 0] > 0).long()


WRITER = textwrap.dedent("""
    import sys, time, torch
    from torch import nn
    from lossviz.session import Session
    path, n, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    torch.manual_seed(int(sys.argv[4]))
    with Session(path, model=lambda: nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2)), data=False) as s:
        model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2))
        for i in range(n):
            time.sleep(pause)
            with torch.no_grad():
                model[0].weight.add_(0.01)
            s.log(model, step=100 * (i + 1), metrics={"loss": 1.0 / (i + 1)})
""")


def writer(path: Path, n: int, pause: float, seed: int = 0) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n), str(pause), str(seed)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_log_without_data_stores_what_is_given_and_invents_nothing(tmp_path):
    with Session(tmp_path / "p", model=net, data=False) as s:
        assert not s.has_data
        model = net()
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        made = [s.log(model, metrics={"loss": torch.tensor(1.0 / (e + 1))}, optimizer=opt) for e in range(3)]
        assert [c.epoch for c in made] == [0, 1, 2] and [c.parent for c in made] == [None, made[0].id, made[1].id]
        assert len({c.branch for c in made}) == 1
        assert [c.metrics for c in made] == [{"loss": 1.0}, {"loss": 0.5}, {"loss": pytest.approx(1 / 3)}]
        assert made[0].hparams["optimizer"] == "sgd" and made[0].hparams["lr"] == 0.05
        assert s.store.load_optim_state(made[0].id)["param_groups"][0]["momentum"] == 0.9
        loaded = s.store.load_state_dict(made[-1].id)
        assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())
        with pytest.raises(ValueError, match=r"does not fit the model.*'0\.weight' has shape"):
            s.log(nn.Sequential(nn.Linear(2, 5), nn.ReLU(), nn.Linear(5, 2)))
        with pytest.raises(TypeError, match="metric 'acc' is str"):
            s.log(model, metrics={"acc": "high"})
        with pytest.raises(ValueError, match="step must be"):
            s.log(model, step=-1)
        with pytest.raises(ValueError, match="epoch must be"):
            s.log(model, epoch=float("nan"))
        assert s.store.n_checkpoints() == 3


def test_steps_make_a_path_and_wrapper_prefixes_are_removed(tmp_path):
    """100 k steps logged every 500 steps: a path of 200 points, ordered by step."""
    with Session(tmp_path / "p", model=net, data=False) as s:
        model = net()
        for step in range(500, 100_001, 500):
            s.log({f"model.{k}": v for k, v in model.state_dict().items()}, step=step)  # a LightningModule's keys
        cks = s.checkpoints()
        assert len(cks) == 200 and [c.step for c in cks] == list(range(500, 100_001, 500))
        assert len(s.branches()) == 1 and s.project(method="layout").coords.shape == (200, 2)
        assert sorted(s.project(method="layout").coords[:, 0]) == list(s.project(method="layout").coords[:, 0])


def test_log_evaluates_the_metrics_not_given(tmp_path):
    x, y = data()
    with Session(tmp_path / "p", model=net, data=(x, y)) as s:
        model = net()
        c = s.log(model, epoch=1.5, step=30, metrics={"train_loss": 9.0, "mine": 1})
        with torch.no_grad():
            out = model(x)
        assert c.metrics["train_loss"] == 9.0 and c.metrics["mine"] == 1.0  # given: stored as given
        assert c.metrics["train_acc"] == pytest.approx(100.0 * (out.argmax(1) == y).float().mean().item())
        assert (c.epoch, c.step) == (1.5, 30)


def test_log_keeps_the_loops_random_stream(tmp_path):
    with Session(tmp_path / "p", model=net, data=data()) as s:
        model = net()
        torch.manual_seed(3)
        a = [torch.rand(1).item(), torch.rand(1).item()]
        torch.manual_seed(3)
        first = torch.rand(1).item()
        s.log(model)  # builds a model from the factory and evaluates: the loop's RNG is untouched
        assert [first, torch.rand(1).item()] == a


def test_named_branches_resume_and_parents_fork(tmp_path):
    path = tmp_path / "p"
    with Session(path, model=net, data=False) as s:
        a = s.log(net(), epoch=1, branch="lr0.1")
        b = s.log(net(), epoch=2, branch="lr0.1")
        fork = s.log(net(), epoch=2, parent=a, branch="lr0.01")
    with Session(path, model=net, data=False) as s:  # a restarted script resumes its branch by name
        c = s.log(net(), epoch=3, branch="lr0.1")
        d = s.log(net(), epoch=4, branch=fork.branch)
        assert (c.parent, c.branch) == (b.id, a.branch) and b.parent == a.id and b.branch == a.branch
        assert fork.parent == a.id and fork.branch != a.branch and (d.parent, d.branch) == (fork.id, fork.branch)
        assert {x["note"] for x in s.branches()} == {"lr0.1", "lr0.01"}
        with pytest.raises(ValueError, match="branch 99 does not exist"):
            s.log(net(), branch=99)


def test_a_project_without_data_does_all_but_training_then_branches_with_data(tmp_path):
    path = tmp_path / "p"
    with Session(path, model=net, data=False) as s:
        model = net()
        for e in range(4):
            with torch.no_grad():
                model[0].weight.mul_(0.9)
            s.log(model, epoch=e)
        with pytest.raises(ValueError, match="training with lossviz's trainer needs a model factory, data and a loss"):
            s.train(epochs=1)
        with pytest.raises(ValueError, match="opened without data"):
            s.surface(s.checkpoints()[-1], x="-1:1:3")
        assert s.project(method="pca").coords.shape == (4, 2)
        assert s.distance(1, 2) > 0
        assert s.disturb(4, 0.1, seed=0).metrics == {}  # everything but training and surfaces: no metrics invented
        assert [c.metrics for c in s.interpolate(1, 4, 3)] == [{}, {}, {}]
        from lossviz.widget import Explorer

        w = Explorer(s, throttle=0, background=False)
        try:
            assert w.checkpoints["n"] == 8
            w.handle({"type": "train", "from": 4, "epochs": 1, "hparams": {}})  # Train says what is missing
            assert "needs a model factory, data and a loss" in w.error and "opened without data" in w.error
        finally:
            w.close()
    with Session(path, model=net) as s:  # reopened without data= again: the project has none
        assert not s.has_data
    with Session(path, model=net, data=data()) as s:  # "what if I had lowered the lr at epoch 2"
        start = s.checkpoints()[2]
        job = s.train(from_=start, epochs=2, lr=0.01)  # a logged checkpoint of a loop that had no data
        made = job.wait(120)
        assert job.state == "done", job.error
        assert [c.epoch for c in made] == [3.0, 4.0] and made[0].parent == start.id
        assert made[0].branch != start.branch and made[0].hparams["lr"] == 0.01 and "train_loss" in made[0].metrics


def test_new_project_without_data_still_asks_for_it(tmp_path):
    with pytest.raises(ValueError, match=r"pass data=.*data=False"):
        Session(tmp_path / "p", model=net)
    assert not (tmp_path / "p").exists()


def test_two_sessions_on_one_folder_hold_no_lock_between_calls(tmp_path):
    path = tmp_path / "p"
    a = Session(path, model=net, data=False)
    b = Session(path, model=net, data=False)
    try:
        a.store.timeout = b.store.timeout = 2.0
        ca = a.log(net())
        cb = b.log(net())
        ca2 = a.log(net())
        assert [c.id for c in b.checkpoints()] == [ca.id, cb.id, ca2.id]
        assert ca2.parent == ca.id and cb.branch != ca.branch
    finally:
        a.close()
        b.close()


@pytest.mark.system
@pytest.mark.slow
def test_two_processes_log_into_one_project_at_once(tmp_path):
    path = tmp_path / "p"
    with Session(path, model=net, data=False) as s:
        procs = [writer(path, 15, 0.0, seed) for seed in (1, 2)]
        for i in range(15):
            s.log(net(), epoch=i)
        outs = [p.communicate(timeout=300) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
        cks = s.checkpoints()
        assert len(cks) == 45 and len(s.branches()) == 3
        assert sorted(b["n"] for b in s.branches()) == [15, 15, 15]


@pytest.mark.system
@pytest.mark.slow
def test_the_explorer_shows_checkpoints_another_process_logs_within_2_s(tmp_path):
    from lossviz.widget import Explorer

    path = tmp_path / "p"
    with Session(path, model=net, data=False) as s:
        s.log(net())
        w = Explorer(s, throttle=0.25)
        try:
            assert w.checkpoints["n"] == 1
            proc = writer(path, 4, 1.0)
            seen: dict[int, float] = {}
            deadline = time.monotonic() + 120
            while len(seen) < 4 and time.monotonic() < deadline:
                n = s.store.n_checkpoints()
                for k in range(2, n + 1):
                    seen.setdefault(k, time.monotonic())  # when the k-th checkpoint was committed
                shown = int(w.checkpoints.get("n", 0))
                late = [k for k, t in seen.items() if k > shown and time.monotonic() - t > 2.0]
                assert not late, f"checkpoint(s) {late} not shown within 2 s (shown {shown})"
                time.sleep(0.05)
            proc.communicate(timeout=120)
            assert proc.returncode == 0
            t_end = time.monotonic() + 2.0
            while int(w.checkpoints.get("n", 0)) < 5 and time.monotonic() < t_end:
                time.sleep(0.05)
            assert w.checkpoints["n"] == 5
        finally:
            w.close()


def test_store_watch_calls_on_new_checkpoints_only(tmp_path):
    """Another connection's checkpoints wake the watch; a stored result (a projection) does not."""
    from lossviz.widget.live import StoreWatch

    path = tmp_path / "p"
    with Session(path, model=net, data=False) as mine, Session(path, model=net, data=False) as theirs:
        for _ in range(3):
            mine.log(net())
        calls: list[float] = []
        watch = StoreWatch(lambda: calls.append(time.monotonic()), interval=0.05)
        watch.watch(path)
        try:
            time.sleep(0.3)
            calls.clear()  # the first poll's count is a change
            n_results = len(mine.store.results())
            mine.project(method="pca")
            assert len(mine.store.results()) == n_results + 1  # a write, but no checkpoint
            time.sleep(0.3)
            assert calls == []
            t0 = time.monotonic()
            theirs.log(net())
            deadline = t0 + 2.0
            while not calls and time.monotonic() < deadline:
                time.sleep(0.02)
            assert calls and calls[0] - t0 < 2.0
        finally:
            watch.stop()
        n = len(calls)
        theirs.log(net())
        time.sleep(0.3)
        assert len(calls) == n  # stopped
    StoreWatch(lambda: None).watch(tmp_path / "not_a_project")  # no index: nothing to watch, no error
