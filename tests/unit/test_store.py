"""The project store: crash safety under SIGKILL, two writing processes, no unpickling, codecs."""

from __future__ import annotations

import json
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from lossviz.store import Checkpoint, Store, spec_key
from lossviz.training import evaluate_model

PY = sys.executable


# A zygote: imports torch once, then forks one writer per trial (so a trial costs a fork, not an
# interpreter start). Each writer trains a tiny MLP and writes a checkpoint (weights + optimizer
# state + metrics) after every step, as fast as it can, until the test SIGKILLs it.
ZYGOTE = textwrap.dedent(
    """
    import os, sys, torch
    torch.set_num_threads(1)
    from torch import nn
    from lossviz.store import Store
    from lossviz.training import evaluate_model

    def writer(path, seed):
        torch.manual_seed(seed)
        x = torch.randn(128, 2); y = (x[:, 0] * x[:, 1] > 0).long()
        model = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2))
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        store = Store(path)
        last = store.checkpoints()
        parent = last[-1].id if last else None
        print("ready", os.getpid(), flush=True)
        step = 0
        while True:
            opt.zero_grad(); nn.functional.cross_entropy(model(x), y).backward(); opt.step(); step += 1
            m = evaluate_model(model, x, y)
            c = store.add_checkpoint(model.state_dict(), parent=parent, kind="train" if parent else "init",
                                     epoch=step, step=step, metrics={"train_loss": m["loss"], "train_acc": m["acc"]},
                                     hparams={"seed": seed}, optim_state=opt.state_dict())
            parent = c.id

    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "fork":
            pid = os.fork()
            if pid == 0:
                try:
                    writer(args[0], int(args[1]))
                finally:
                    os._exit(1)
        elif cmd == "wait":
            _, status = os.waitpid(int(args[0]), 0)
            print("status", os.WTERMSIG(status) if os.WIFSIGNALED(status) else -1, flush=True)
    """
)


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2))


def _data(seed: int):
    torch.manual_seed(seed)
    x = torch.randn(128, 2)
    return x, (x[:, 0] * x[:, 1] > 0).long()


def _check_project(path: Path) -> tuple[int, list[str]]:
    """Reopen; every listed checkpoint loads, hashes, re-evaluates to its metrics; no leftovers."""
    store = Store(path)
    try:
        cleaned = list(store.cleaned)
        ckpts = store.checkpoints()
        ids = {c.id for c in ckpts}
        for c in ckpts:
            assert store.verify(c.id), f"checkpoint {c.id}: weight file differs from its hash"
            x, y = _data(c.hparams["seed"])
            m = _model()
            m.load_state_dict(store.load_state_dict(c.id))  # strict: complete state dict
            again = evaluate_model(m, x, y)
            assert again["loss"] == c.metrics["train_loss"], (c.id, again, c.metrics)
            assert again["acc"] == c.metrics["train_acc"]
            # an independent evaluation (the functional engine) agrees too
            try:
                from lossviz.evaluate import Evaluator
            except ImportError:  # pragma: no cover
                Evaluator = None
            if Evaluator is not None and c.id == max(ids):
                ev = Evaluator(m, (x, y), strategy="loop").evaluate_one(
                    torch.cat([p.detach().reshape(-1) for p in m.parameters()])
                )
                assert abs(ev["loss"] - c.metrics["train_loss"]) <= 1e-5 * max(1.0, abs(ev["loss"]))
            st = store.load_optim_state(c.id)
            assert int(st["state"][0]["step"]) == c.step
            if c.id == max(ids):
                torch.optim.Adam(m.parameters(), lr=0.01).load_state_dict(st)
        # no temp file, no file without a row
        for sub in ("weights", "optim"):
            names = sorted(p.name for p in (path / sub).iterdir())
            assert all(not n.startswith(".") for n in names), names
            assert {int(n.split(".")[0]) for n in names} == ids, (sub, names, ids)
        # a chain: every parent exists
        for c in ckpts:
            assert c.parent is None or c.parent in ids
        return len(ckpts), cleaned
    finally:
        store.close()


@pytest.mark.system  # starts processes: a system test in the unit file of the module it exercises
def test_sigkill_at_random_moments_never_leaves_a_broken_checkpoint(tmp_path):
    """>= 20 trials: a writer is SIGKILLed 0.1-1.5 s after it is ready; the project stays sound."""
    rng = random.Random(1234)
    script = tmp_path / "zygote.py"
    script.write_text(ZYGOTE)
    zygote = subprocess.Popen([PY, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    trials, orphan_trials, counts = 20, 0, []
    try:
        for trial in range(trials):
            # two kills per project: the second writer reopens a project a kill has just interrupted
            path = tmp_path / f"proj{trial // 2}"
            zygote.stdin.write(f"fork {path} {trial}\n")
            zygote.stdin.flush()
            line = zygote.stdout.readline().split()
            assert line and line[0] == "ready", zygote.stderr.read()
            time.sleep(rng.uniform(0.1, 1.5))
            os.kill(int(line[1]), signal.SIGKILL)
            zygote.stdin.write(f"wait {line[1]}\n")
            zygote.stdin.flush()
            assert zygote.stdout.readline().split() == ["status", str(int(signal.SIGKILL))]
            n, cleaned = _check_project(path)
            orphan_trials += bool(cleaned)
            counts.append(n)
    finally:
        zygote.stdin.close()
        zygote.wait(timeout=30)
    assert all(b >= a for a, b in zip(counts[0::2], counts[1::2], strict=True))  # none vanish on reopening
    assert min(counts) >= 1
    print(f"\nkill trials: {trials}, checkpoints listed: {sum(counts[1::2])}, "
          f"trials that left orphans: {orphan_trials}")


WRITER2 = textwrap.dedent(
    """
    import sys, torch
    torch.set_num_threads(1)
    from lossviz.store import Store
    path, tag, n, root = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    store = Store(path)
    sd = {"w": torch.full((64,), float(len(tag)))}
    print("ready", flush=True)
    sys.stdin.readline()  # start together
    first = store.add_checkpoint(sd, parent=root, branch="auto", note=f"{tag}-0")
    parent = first.id
    for i in range(1, n):
        c = store.add_checkpoint(sd, parent=parent, branch=first.branch, note=f"{tag}-{i}")
        parent = c.id
    print("done", first.branch, flush=True)
    """
)


@pytest.mark.system  # starts processes: a system test in the unit file of the module it exercises
def test_two_processes_write_one_project_without_loss(tmp_path):
    path = tmp_path / "proj"
    store = Store(path)
    root = store.add_checkpoint({"w": torch.zeros(64)}, parent=None, kind="init")
    script = tmp_path / "w2.py"
    script.write_text(WRITER2)
    n = 25
    procs = [
        subprocess.Popen([PY, str(script), str(path), tag, str(n), str(root.id)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for tag in ("a", "bb")
    ]
    for p in procs:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    ckpts = store.checkpoints()
    notes = [c.note for c in ckpts if c.kind == "train"]
    assert len(notes) == 2 * n and len(set(notes)) == 2 * n
    assert set(notes) == {f"{t}-{i}" for t in ("a", "bb") for i in range(n)}
    # both started from the root with branch="auto": exactly one continued branch 1
    kids = [store.checkpoint(i) for i in store.children(root.id)]
    assert len(kids) == 2 and sorted(k.branch for k in kids)[0] == root.branch
    assert len({k.branch for k in kids}) == 2
    for c in ckpts:
        sd = store.load_state_dict(c.id)
        expected = 0.0 if c.kind == "init" else float(len(c.note.split("-")[0]))
        assert torch.equal(sd["w"], torch.full((64,), expected))
    store.close()


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_in_place_of_weights_executes_nothing(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "proj"
    store = Store(path)
    m = _model()
    c = store.add_checkpoint(m.state_dict(), parent=None, kind="init")
    wfile = path / "weights" / f"{c.id}.safetensors"
    # sanity: the payload does run when unpickled (so the test can fail)
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Evil(probe)))
    assert probe.exists()
    for payload in (pickle.dumps(_Evil(marker)), None):
        if payload is None:  # a torch.save zip archive with the same payload
            torch.save({"state_dict": _Evil(marker)}, wfile)
        else:
            wfile.write_bytes(payload)
        with pytest.raises(ValueError, match="not a valid safetensors"):
            store.load_state_dict(c.id)
        assert not store.verify(c.id)
        assert not marker.exists()
    # a pickle under a checkpoint's name that no row names is never read; opening keeps it, for
    # lossviz did not write it (issue 13: cleaning removes only a dead writer's own temporary files)
    planted = pickle.dumps(_Evil(marker))
    (path / "weights" / "99.safetensors").write_bytes(planted)
    store.close()
    store = Store(path)
    assert "weights/99.safetensors" not in store.cleaned
    assert (path / "weights" / "99.safetensors").read_bytes() == planted
    with pytest.raises(KeyError, match="no checkpoint 99"):
        store.load_state_dict(99)
    assert not marker.exists()
    store.close()


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "adagrad", "rmsprop"])
def test_optimizer_state_round_trips_without_pickle(tmp_path, name):
    from lossviz.training import DEFAULT_HPARAMS, make_optimizer, validate_hparams

    h = validate_hparams(dict(DEFAULT_HPARAMS, optimizer=name, lr=0.01,
                              momentum=0.5 if name in ("sgd", "rmsprop") else 0.0))
    torch.manual_seed(0)
    m = _model()
    opt = make_optimizer(m.parameters(), h)
    x, y = _data(0)
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
    store = Store(tmp_path / "p")
    c = store.add_checkpoint(m.state_dict(), parent=None, kind="init", optim_state=opt.state_dict())
    back = store.load_optim_state(c.id)
    ref = opt.state_dict()
    assert back["param_groups"] == ref["param_groups"]
    assert back["state"].keys() == ref["state"].keys()
    for k in ref["state"]:
        for name_, v in ref["state"][k].items():
            if isinstance(v, torch.Tensor):
                assert torch.equal(back["state"][k][name_], v)
            else:
                assert back["state"][k][name_] == v
    # the file holds no pickle: safetensors header + JSON structure
    raw = (tmp_path / "p" / "optim" / f"{c.id}.safetensors").read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    assert header["__metadata__"]["format"] == "lossviz-optimizer"
    store.close()


def test_results_are_keyed_found_again_and_dead_temporaries_cleaned(tmp_path):
    store = Store(tmp_path / "p")
    spec = {"type": "surface", "center": 1, "x": "-1:1:3"}
    key = spec_key(spec)
    assert key == spec_key(dict(reversed(list(spec.items()))))  # order-independent
    assert store.find_result(key) is None
    store.put_result(key, "surface", spec, write=lambda p: Path(p).write_text("partial"), suffix=".txt",
                     complete=False, meta={"n_done": 1})
    r = store.find_result(key)
    assert not r["complete"] and r["path"].read_text() == "partial"
    store.put_result(key, "surface", spec, write=lambda p: Path(p).write_text("full"), suffix=".txt",
                     meta={"n_done": 3})
    r = store.find_result(key)
    assert r["complete"] and r["path"].read_text() == "full" and r["meta"]["n_done"] == 3
    orphan = tmp_path / "p" / "results" / ("f" * 64 + ".h5")
    orphan.write_text("x")
    dead_tmp = tmp_path / "p" / "weights" / ".tmp-999999999-abcdef"
    dead_tmp.write_text("x")
    store.close()
    store = Store(tmp_path / "p")
    assert orphan.read_text() == "x" and not dead_tmp.exists()  # a file lossviz did not write stays
    assert store.find_result(key)["path"].read_text() == "full"
    store.close()


def test_bad_inputs_are_named(tmp_path):
    store = Store(tmp_path / "p")
    with pytest.raises(ValueError, match="kind"):
        store.add_checkpoint({"w": torch.zeros(1)}, parent=None, kind="bogus")
    with pytest.raises(ValueError, match="parent checkpoint 42"):
        store.add_checkpoint({"w": torch.zeros(1)}, parent=42)
    with pytest.raises(KeyError, match="no checkpoint 7"):
        store.checkpoint(7)
    assert store.n_checkpoints() == 0
    assert list((tmp_path / "p" / "weights").iterdir()) == []  # the failed write left nothing
    store.close()
    with pytest.raises(FileNotFoundError):
        Store(tmp_path / "missing", create=False)


# ------------------------------------------------------------------ issue 13: an untrusted folder
def _folder_state(root: Path) -> dict[str, str]:
    """Every file and folder under ``root``: a file by its bytes' sha256 (byte-for-byte)."""
    import hashlib

    return {
        str(p.relative_to(root)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
    }


def _project_with_files(path: Path) -> Store:
    store = Store(path)
    torch.manual_seed(0)
    m = _model()
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    m(torch.randn(4, 2)).sum().backward()
    opt.step()
    c = store.add_checkpoint(m.state_dict(), parent=None, kind="init", optim_state=opt.state_dict())
    store.add_checkpoint(m.state_dict(), parent=c.id)
    store.put_result("a" * 64, "surface", {"x": 1}, write=lambda p: Path(p).write_text("surface"), suffix=".h5")
    return store


def test_opening_removes_only_a_dead_writers_temporaries(tmp_path):
    path = tmp_path / "p"
    store = _project_with_files(path)
    store.close()
    named = "results/" + store_result_file(path)
    kept = {  # files no row names that lossviz did not write: kept, whatever their names
        "weights/7.safetensors": b"w", "optim/7.safetensors": b"o", "results/" + "b" * 64 + ".h5": b"r",
        "weights/.hidden": b"h", "results/notes.txt": b"n",
    }
    for rel, data in kept.items():
        (path / rel).write_bytes(data)
    # a writer killed between its link and its commit: its temporary name and the final name linked to it
    dead = "weights/.tmp-999999999-" + "c" * 32
    (path / dead).write_bytes(b"uncommitted")
    os.link(path / dead, path / "weights" / "3.safetensors")
    # a writer killed after its commit, before removing its temporary name: the final name is a row's
    done = "results/.tmp-999999998-" + "d" * 32 + ".h5"
    os.link(path / named, path / done)
    # a live writer's temporary file (this process)
    live = f"optim/.tmp-{os.getpid()}-" + "e" * 32
    (path / live).write_bytes(b"in progress")
    store = Store(path)
    assert sorted(store.cleaned) == sorted([dead, "weights/3.safetensors", done])
    for rel, data in kept.items():
        assert (path / rel).read_bytes() == data, rel
    assert (path / named).read_text() == "surface" and (path / live).exists()
    assert [c.id for c in store.checkpoints()] == [1, 2]
    for c in store.checkpoints():
        store.load_state_dict(c.id)
        store.load_optim_state(c.id)
    store.close()


def store_result_file(path: Path) -> str:
    """The name of the one result file in ``path``'s results/."""
    (name,) = [p.name for p in (path / "results").iterdir() if not p.name.startswith(".")]
    return name


@pytest.mark.parametrize("damage", ["missing", "empty", "garbage", "no tables"])
def test_a_lost_index_beside_project_files_is_refused_and_nothing_changes(tmp_path, damage):
    import sqlite3

    path = tmp_path / "p"
    _project_with_files(path).close()
    index = path / "index.sqlite"
    for extra in ("index.sqlite-wal", "index.sqlite-shm"):
        (path / extra).unlink(missing_ok=True)
    if damage == "missing":
        index.unlink()
    elif damage == "empty":
        index.write_bytes(b"")
    elif damage == "garbage":
        index.write_bytes(b"half a copy " * 100)
    else:
        index.unlink()
        sqlite3.connect(index).close()
        conn = sqlite3.connect(index)
        conn.execute("CREATE TABLE t(x)")
        conn.execute("DROP TABLE t")
        conn.commit()
        conn.close()
    before = _folder_state(path)
    with pytest.raises(ValueError, match=r"index\.sqlite") as err:
        Store(path)
    assert _folder_state(path) == before
    msg = str(err.value)
    assert "index.sqlite" in msg and "restore index.sqlite from a copy of the project" in msg
    assert "nothing was changed" in msg
    if damage != "garbage":
        assert "weights/1.safetensors" in msg
    assert len(list((path / "weights").iterdir())) == 2 and len(list((path / "results").iterdir())) == 1


def test_a_new_or_emptied_folder_still_becomes_a_project(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "zero").mkdir()
    (tmp_path / "zero" / "index.sqlite").write_bytes(b"")  # nothing beside it to lose
    (tmp_path / "subs" / "weights").mkdir(parents=True)  # empty sub-folders hold nothing to lose
    for name in ("empty", "zero", "subs", "new"):
        store = Store(tmp_path / name)
        store.add_checkpoint({"w": torch.zeros(2)}, parent=None, kind="init")
        store.close()


def _set_row(path: Path, sql: str, args: tuple) -> None:
    import sqlite3

    conn = sqlite3.connect(path / "index.sqlite")
    conn.execute(sql, args)
    conn.commit()
    conn.close()


@pytest.mark.parametrize("rel", ["../victim", "/ABS/victim", "weights/../../victim", "optim/1.safetensors",
                                 "weights/sub/1.safetensors", "weights/..", "link", "", "C:\\victim"])
def test_a_path_from_the_index_is_confined_to_its_sub_folder(tmp_path, rel):
    path = tmp_path / "p"
    victim = tmp_path / "victim"
    victim.write_bytes(b"not the project's")
    _project_with_files(path).close()
    if rel == "link":  # a symbolic link inside weights/ (optim/, results/) that leads out
        for sub in ("weights", "optim", "results"):
            (path / sub / "link.safetensors").symlink_to(victim)
        rel = "weights/link.safetensors"
    rel = rel.replace("/ABS", str(tmp_path))

    def in_(sub: str) -> str:  # the same kind of path for another row (a weights path is no optim path)
        return "weights/1.safetensors" if rel.startswith("optim/") else rel.replace("weights", sub)

    _set_row(path, "UPDATE checkpoints SET weights=?, optim=? WHERE id=1", (rel, in_("optim")))
    _set_row(path, "UPDATE results SET file=?", (in_("results"),))
    store = Store(path)
    for call in (lambda: store.load_state_dict(1), lambda: store.verify(1), lambda: store.weights_path(1)):
        with pytest.raises(ValueError, match=r"checkpoint 1's weights in .*index.sqlite names the file"):
            call()
    with pytest.raises(ValueError, match="checkpoint 1's optim"):
        store.load_optim_state(1)
    with pytest.raises(ValueError, match=f"result {'a' * 64}'s file"):
        store.find_result("a" * 64)
    # computing the result again would remove the file the row names: refused, and nothing is stored
    results = sorted(p.name for p in (path / "results").iterdir())
    with pytest.raises(ValueError, match="only uses files inside the project's results/ folder"):
        store.put_result("a" * 64, "surface", {"x": 1}, write=lambda p: Path(p).write_text("again"), suffix=".h5")
    assert victim.read_bytes() == b"not the project's"
    assert sorted(p.name for p in (path / "results").iterdir()) == results
    store.load_state_dict(2)  # the other rows are fine
    store.close()


def _altered(path: Path, rel: str) -> None:
    """Rewrite a stored safetensors file with the same keys and metadata but other values."""
    from lossviz import files

    tensors, meta = files.read_safetensors(path / rel)
    files.write_safetensors(path / rel, {k: v + 1 if v.is_floating_point() else v for k, v in tensors.items()}, meta)


def test_a_weight_or_optimizer_file_changed_behind_the_index_is_refused_naming_it(tmp_path):
    path = tmp_path / "p"
    store = _project_with_files(path)
    store.load_state_dict(1)
    _altered(path, "weights/1.safetensors")
    _altered(path, "optim/1.safetensors")
    with pytest.raises(ValueError, match=r"weight file of checkpoint 1 .*weights/1\.safetensors was changed"):
        store.load_state_dict(1)
    with pytest.raises(ValueError, match=r"optimizer-state file of checkpoint 1 .*optim/1\.safetensors was changed"):
        store.load_optim_state(1)
    assert not store.verify(1) and store.verify(2)
    store.load_state_dict(2)
    store.close()


@pytest.mark.parametrize("what", ["weights", "result"])
def test_a_failed_transaction_leaves_no_final_name(tmp_path, monkeypatch, what):
    from lossviz import files

    store = _project_with_files(tmp_path / "p")
    before = _folder_state(tmp_path / "p")

    def fail_after_link(folder):  # the folder's fsync after the final name's link
        raise OSError(5, "I/O error after the link")

    monkeypatch.setattr(files, "fsync_dir", fail_after_link)
    if what == "weights":
        def store_it():
            return store.add_checkpoint({"w": torch.zeros(2)}, parent=1)
    else:
        def store_it():
            return store.put_result("f" * 64, "surface", {"x": 2}, write=lambda p: Path(p).write_text("s"),
                                    suffix=".h5")
    with pytest.raises(OSError, match="after the link"):
        store_it()
    after = _folder_state(tmp_path / "p")
    assert {k: v for k, v in after.items() if not k.startswith("index")} == {
        k: v for k, v in before.items() if not k.startswith("index")}
    assert store.n_checkpoints() == 2 and store.find_result("f" * 64) is None
    store.close()


def _killed_at(path: Path, step: int, save) -> bool:
    """Run ``save(store)`` in a forked child that SIGKILLs itself just before its ``step``-th file
    system call (os.link, os.unlink, os.fsync); True when it was killed, False when it finished."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            calls = [0]

            def killing(fn):
                def call(*args, **kwargs):
                    calls[0] += 1
                    if calls[0] == step:
                        os.kill(os.getpid(), signal.SIGKILL)
                    return fn(*args, **kwargs)
                return call

            store = Store(path)
            os.link, os.unlink, os.fsync = killing(os.link), killing(os.unlink), killing(os.fsync)
            save(store)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status)


def test_a_result_stored_again_and_killed_at_any_instant_keeps_one_file_per_key(tmp_path):
    """Kill a re-save of a result before each of its file system calls: the reopened project names
    either the old or the new version, and results/ holds exactly that one file (no leftover
    version, no temporary)."""
    path = tmp_path / "p"
    key, spec = "a" * 64, {"x": 1}
    Store(path).put_result(key, "surface", spec, write=lambda p: Path(p).write_text("v0"), suffix=".h5")
    def save(version: int):
        return lambda s: s.put_result(key, "surface", spec, write=lambda p: Path(p).write_text(f"v{version}"),
                                      suffix=".h5")

    step, seen = 1, set()
    while _killed_at(path, step, save(step)):
        store = Store(path)
        row = store.find_result(key)
        files_left = sorted(p.name for p in (path / "results").iterdir())
        assert files_left == [row["path"].name], (step, files_left, store.cleaned)
        seen.add("new" if row["path"].read_text() == f"v{step}" else "old")
        store.close()
        step += 1
    assert seen == {"old", "new"} and step > 5  # kills landed before and after the commit
    store = Store(path)
    assert store.find_result(key)["path"].read_text() == f"v{step}"
    assert sorted(p.name for p in (path / "results").iterdir()) == [store.find_result(key)["path"].name]
    store.close()


def test_an_io_error_of_sqlite_on_a_disk_with_no_space_is_a_full_disk(tmp_path, monkeypatch):
    import sqlite3

    from lossviz import store as store_mod

    io_error = sqlite3.OperationalError("disk I/O error")
    assert store_mod._disk_full(sqlite3.OperationalError("database or disk is full"), tmp_path)
    assert not store_mod._disk_full(io_error, tmp_path)  # plenty of space: the disk failed otherwise
    monkeypatch.setattr(store_mod, "_free_bytes", lambda folder: 4096)
    assert store_mod._disk_full(io_error, tmp_path)
    assert not store_mod._disk_full(sqlite3.DatabaseError("file is not a database"), tmp_path)


def test_checkpoints_carry_their_projects_identity(tmp_path):
    import shutil

    a = Store(tmp_path / "a")
    b = Store(tmp_path / "b")
    ca = a.add_checkpoint({"w": torch.ones(2)}, parent=None, kind="init")
    cb = b.add_checkpoint({"w": torch.zeros(2)}, parent=None, kind="init")
    assert ca.project == a.project_id != b.project_id == cb.project and len(a.project_id) == 32
    assert a.checkpoint(ca) == ca and a.checkpoint(ca.id) == ca
    with pytest.raises(ValueError, match=rf"checkpoint 1 belongs to another project \(identity {b.project_id[:12]}\), "
                                         r"not to the project .*a: pass an id or one of this project's checkpoints"):
        a.checkpoint(cb)
    made_by_hand = Checkpoint(id=1, parent=None, branch=1, kind="init", epoch=0, step=0)
    assert a.checkpoint(made_by_hand) == ca  # a record without an identity is taken by its id
    a.close()
    shutil.copytree(tmp_path / "a", tmp_path / "copy")
    a, copy = Store(tmp_path / "a"), Store(tmp_path / "copy")
    assert copy.project_id == a.project_id and copy.checkpoint(ca) == ca  # a copy's past is its past
    time.sleep(0.01)
    diverged = copy.add_checkpoint({"w": torch.ones(2)}, parent=1)
    a.add_checkpoint({"w": torch.full((2,), 2.0)}, parent=1)
    with pytest.raises(ValueError, match=r"the checkpoint 2 given is not checkpoint 2 of .*went its own way"):
        a.checkpoint(diverged)
    for s in (a, b, copy):
        s.close()
    assert Store(tmp_path / "a").project_id == copy.project_id  # kept in the index
