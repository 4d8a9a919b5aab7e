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

from lossviz.store import (
    Store,
    decode_optimizer_state,
    encode_optimizer_state,
    spec_key,
)
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
    # an orphan pickle under a checkpoint's name is removed on opening, never read
    (path / "weights" / "99.safetensors").write_bytes(pickle.dumps(_Evil(marker)))
    store.close()
    store = Store(path)
    assert "weights/99.safetensors" in store.cleaned
    assert not (path / "weights" / "99.safetensors").exists()
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


def test_optimizer_codec_rejects_unstorable_objects():
    with pytest.raises(TypeError, match="without pickle"):
        encode_optimizer_state({"state": {0: {"f": object()}}, "param_groups": []})
    t, s = encode_optimizer_state({"state": {3: {"b": (1, 2.5), "n": None}}, "param_groups": [{"params": [3]}]})
    assert decode_optimizer_state(t, s) == {"state": {3: {"b": (1, 2.5), "n": None}}, "param_groups": [{"params": [3]}]}


def test_results_are_keyed_found_again_and_orphans_cleaned(tmp_path):
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
    assert not orphan.exists() and not dead_tmp.exists()
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
