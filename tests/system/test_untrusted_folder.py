"""A project folder is untrusted input (issue 13), from outside the store: a Session opening a folder
whose index was lost changes nothing and says what to do; a writer stopped (SIGSTOP) inside its write
transaction is named by its pid after a bounded wait, and nobody is told the index is damaged."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from lossviz.session import Session
from lossviz.store import ProjectLockedError, Store

PY = sys.executable
SPIRALS = {"n": 100, "n_test": 30}

# A writer that stops itself (SIGSTOP) inside a write transaction, then waits for a line to commit.
STOPPED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    from lossviz.store import Store
    store = Store(sys.argv[1])
    with store.transaction("adding a checkpoint"):
        print("holding", flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)
        sys.stdin.readline()
    print("committed", flush=True)
    """
)


def _folder_state(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
    }


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(") ", 1)[-1][:1] in ("T", "t")


@pytest.mark.parametrize("damage", ["missing", "empty"])
def test_a_session_on_a_folder_whose_index_was_lost_changes_nothing(tmp_path, damage):
    path = tmp_path / "proj"
    s = Session(path, model="mlp", data="spirals", data_kwargs=SPIRALS, hparams={"batch_size": 50, "lr": 0.05})
    job = s.train(epochs=1)
    job.wait(120)
    assert job.state == "done", job.error
    s.surface(job.result[-1].id, x="-1:1:3")
    s.close()
    for name in ("index.sqlite-wal", "index.sqlite-shm"):
        (path / name).unlink(missing_ok=True)
    index = path / "index.sqlite"
    if damage == "missing":
        index.unlink()
    else:
        index.write_bytes(b"")  # a full disk, a partial copy
    before = _folder_state(path)
    for opening in (lambda: Session(path), lambda: Session(path, model="mlp", data="spirals", data_kwargs=SPIRALS)):
        with pytest.raises(ValueError, match=r"restore index\.sqlite from a copy of the project; nothing was changed"):
            opening()
        assert _folder_state(path) == before
    assert any((path / "weights").iterdir()) and any((path / "results").iterdir())


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_a_stopped_writer_is_named_by_its_pid_after_a_bounded_wait(tmp_path):
    path = tmp_path / "proj"
    store = Store(path, timeout=2)
    c = store.add_checkpoint({"w": torch.ones(3)}, parent=None, kind="init")
    script = tmp_path / "writer.py"
    script.write_text(STOPPED_WRITER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[2] / "src"),
                                                       os.environ.get("PYTHONPATH", "")]))
    child = subprocess.Popen([PY, str(script), str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout.readline().strip() == "holding", child.stderr.read()
        deadline = time.monotonic() + 30
        while not _stopped(child.pid):
            assert time.monotonic() < deadline, "the writer did not stop"
            time.sleep(0.05)
        expected = rf"project .*proj is locked by process {child.pid} \(adding a checkpoint, stopped\) for \d+ s: "
        calls = {
            "open": lambda: Store(path, timeout=2),
            "add a checkpoint": lambda: store.add_checkpoint({"w": torch.zeros(3)}, parent=c.id),
            "store a result": lambda: store.put_result("a" * 64, "surface", {"x": 1}),
            "set meta": lambda: store.set_meta("note", "x"),
        }
        for what, call in calls.items():
            t0 = time.monotonic()
            with pytest.raises(ProjectLockedError, match=expected) as err:
                call()
            waited = time.monotonic() - t0
            msg = str(err.value)
            assert "wait for it or stop it" in msg and "damaged" not in msg and "database is locked" not in msg, msg
            assert 1.5 <= waited < 10, (what, waited)
        # reading goes on while the writer is stopped
        assert [k.id for k in store.checkpoints()] == [c.id]
        assert torch.equal(store.load_state_dict(c.id)["w"], torch.ones(3))
    finally:
        os.kill(child.pid, signal.SIGCONT)
        if child.poll() is None:
            child.stdin.write("go\n")
            child.stdin.flush()
        out, err = child.communicate(timeout=60)
    assert child.returncode == 0 and "committed" in out, err
    assert not (path / "index.sqlite-writer").exists()  # removed before the commit
    store.add_checkpoint({"w": torch.zeros(3)}, parent=c.id)  # the lock is free again
    store.close()
    Store(path, timeout=2).close()


def test_a_lock_held_by_a_foreign_program_is_said_so_never_damaged(tmp_path):
    path = tmp_path / "proj"
    Store(path).close()
    other = sqlite3.connect(path / "index.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # a program that is not lossviz (no writer record)
    try:
        with pytest.raises(ProjectLockedError, match=r"by another process for more than 1 s: wait for it") as err:
            Store(path, timeout=1)
        assert "damaged" not in str(err.value) and "not a readable" not in str(err.value)
    finally:
        other.execute("ROLLBACK")
        other.close()
    Store(path, timeout=1).close()


def test_a_writer_killed_in_its_transaction_leaves_a_record_no_one_is_blamed_by(tmp_path):
    path = tmp_path / "proj"
    Store(path).close()
    dead = subprocess.Popen([PY, "-c", "pass"])
    dead.wait()
    (path / "index.sqlite-writer").write_text(f'{{"pid": {dead.pid}, "what": "adding a checkpoint", "since": 0}}')
    other = sqlite3.connect(path / "index.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(ProjectLockedError, match="locked by another process") as err:
            Store(path, timeout=1)
        assert str(dead.pid) not in str(err.value)
    finally:
        other.execute("ROLLBACK")
        other.close()
    store = Store(path, timeout=1)  # the stale record is overwritten by the next writer, then removed
    store.set_meta("x", 1)
    assert not (path / "index.sqlite-writer").exists()
    store.close()
