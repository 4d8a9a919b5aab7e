"""Load (issue 7): two kernels (processes) train into one project from the same checkpoint while a third
reads it (opens it, lists and loads checkpoints, lists projects and surfaces), all at once. No checkpoint
is lost or duplicated, every one the readers listed was complete, and no "database is locked" (nor any
other error) reaches a user."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap

from lossviz.session import Session
from lossviz.store import Store

PY = sys.executable
SPIRALS = {"n": 120, "n_test": 40}
EPOCHS = 12

WRITER = textwrap.dedent(
    """
    import json, sys, torch
    torch.set_num_threads(1)
    from lossviz.session import Session
    path, start, lr = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    s = Session(path)
    print("ready", flush=True)
    sys.stdin.readline()
    jobs = [s.train(from_=start, epochs=%(epochs)d, lr=lr)]
    # and a second run from the tip of the first, as a user continuing their branch
    jobs[0].wait()
    jobs.append(s.train(from_=jobs[0].result[-1].id, epochs=2, lr=lr))
    jobs[1].wait()
    print(json.dumps({"states": [j.state for j in jobs], "errors": [j.error for j in jobs],
                      "ids": [[c.id for c in j.result] for j in jobs],
                      "branches": [[c.branch for c in j.result] for j in jobs]}), flush=True)
    s.close()
    """
) % {"epochs": EPOCHS}

READER = textwrap.dedent(
    """
    import json, sys, time, torch
    torch.set_num_threads(1)
    from lossviz.session import Session
    path, root = sys.argv[1], sys.argv[2]
    print("ready", flush=True)
    sys.stdin.readline()
    seen, reads, errors = [], 0, []
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            s = Session(path)
            ids = [c.id for c in s.checkpoints()]
            for i in ids[-3:]:
                s.model(i)  # loads (strictly) the newest ones
                assert s.store.verify(i)
            s.branches(); s.surfaces()
            listed = Session.list_projects(root)
            assert [p["name"] for p in listed] == ["proj"], listed
            seen.append(len(ids))
            s.close()
            reads += 1
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        if len(seen) and seen[-1] >= int(sys.argv[3]):
            break
    print(json.dumps({"reads": reads, "seen": seen, "errors": errors}), flush=True)
    """
)


def test_two_writers_and_a_reader_at_once(tmp_path):
    path = tmp_path / "proj"
    s = Session(path, model="mlp", data="spirals", data_kwargs=SPIRALS, hparams={"batch_size": 40, "lr": 0.05})
    first = s.train(epochs=1)
    first.wait(120)
    assert first.state == "done"
    tip = first.result[-1]
    n_before = len(s.checkpoints())
    s.close()
    expected = n_before + 2 * (EPOCHS + 2)
    (tmp_path / "w.py").write_text(WRITER)
    (tmp_path / "r.py").write_text(READER)
    procs = [subprocess.Popen([PY, str(tmp_path / "w.py"), str(path), str(tip.id), lr], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for lr in ("0.05", "0.02")]
    procs.append(subprocess.Popen([PY, str(tmp_path / "r.py"), str(path), str(tmp_path), str(expected)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
    for p in procs:  # start together
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
        assert "locked" not in out + err and "Traceback" not in err, err[-3000:]
    writers = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs[:2]]
    reader = json.loads(outs[2][0].strip().splitlines()[-1])
    for w in writers:
        assert w["states"] == ["done", "done"], w["errors"]
    # no lost, no duplicated checkpoints
    made = [i for w in writers for run in w["ids"] for i in run]
    assert len(made) == len(set(made)) == 2 * (EPOCHS + 2)
    store = Store(path)
    ckpts = store.checkpoints()
    assert len(ckpts) == expected and {c.id for c in ckpts} >= set(made)
    by_id = {c.id for c in ckpts}
    assert len(by_id) == len(ckpts)
    for c in ckpts:
        assert store.verify(c.id)
    # from one checkpoint at once: one run continued the branch, the other started its own; the
    # continuations stayed on their runs' branches, epochs consecutive
    heads = [store.checkpoint(w["ids"][0][0]) for w in writers]
    assert all(h.parent == tip.id for h in heads)
    assert sorted(h.branch == tip.branch for h in heads) == [False, True]
    for w in writers:
        first_run, second_run = w["ids"]
        assert len(set(w["branches"][0] + w["branches"][1])) == 1
        epochs = [store.checkpoint(i).epoch for i in first_run + second_run]
        assert epochs == [tip.epoch + k for k in range(1, EPOCHS + 3)]
        chain = [tip.id, *first_run, *second_run]
        assert all(store.checkpoint(b).parent == a for a, b in itertools.pairwise(chain))
    store.close()
    # the reader never failed, saw the project grow, never saw a checkpoint it could not load
    assert reader["errors"] == [] and reader["reads"] >= 3
    assert reader["seen"] == sorted(reader["seen"]) and reader["seen"][-1] <= expected
    print(f"\nload: {len(made)} checkpoints from 2 writers, {reader['reads']} reads, "
          f"counts seen grew {reader['seen'][0]} -> {reader['seen'][-1]}")
