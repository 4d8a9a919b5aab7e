"""lossviz.importing and Session.import_checkpoints / ``lossviz import``: every format read without
unpickling, ordered by the epoch or step, sub-folders as branches, bad input named file by file, one
transaction (all or nothing)."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from torch import nn

from lossviz.cli import main
from lossviz.importing import Found, Read, find_checkpoints, plan_import, trainer_hparams
from lossviz.io.checkpoints import save_state_dict
from lossviz.session import Session


def net() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2))


def other() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 5), nn.ReLU(), nn.Linear(5, 2))


def states(n: int, make=net) -> list[dict]:
    torch.manual_seed(0)
    return [make().state_dict() for _ in range(n)]


def same(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def session(tmp_path):
    s = Session(tmp_path / "project", model=net, data=False)
    yield s
    s.close()


def test_reference_folder_with_a_sub_folder_branch(tmp_path, session):
    run = tmp_path / "trained_nets"
    (run / "lr_low").mkdir(parents=True)
    sds = states(6)
    for e in range(4):  # the reference's cifar10/main.py: {'acc', 'epoch', 'state_dict'} as model_{e}.t7
        torch.save({"acc": 50.0 + e, "epoch": e, "state_dict": sds[e]}, run / f"model_{e}.t7")
    torch.save(sds[4], run / "lr_low" / "model_2.pt")  # a branch that left the main run after epoch 1
    torch.save(sds[5], run / "lr_low" / "model_3.pt")
    (run / "notes.txt").write_text("lr 0.1")
    result = session.import_checkpoints(run)
    cks = result.checkpoints
    assert [c.epoch for c in cks] == [0, 1, 2, 3, 2, 3] and all(c.kind == "import" for c in cks)
    assert [c.metrics["acc"] for c in cks[:4]] == [50, 51, 52, 53]
    assert [c.parent for c in cks] == [None, cks[0].id, cks[1].id, cks[2].id, cks[1].id, cks[4].id]
    assert len({c.branch for c in cks[:4]}) == 1 and cks[4].branch == cks[5].branch != cks[0].branch
    notes = {b["id"]: b["note"] for b in session.branches()}
    assert notes[cks[0].branch] == "trained_nets" and notes[cks[4].branch] == "lr_low"
    assert result.ignored == [str(run / "notes.txt")] and not result.refused
    for c, sd in zip(cks, [*sds[:4], sds[4], sds[5]], strict=True):
        assert same(session.store.load_state_dict(c.id), sd)


def test_lightning_ckpt_prefix_removed_and_hyper_parameters(tmp_path, session):
    sds = states(2)
    for i, sd in enumerate(sds):
        torch.save({"epoch": i, "global_step": 8 * (i + 1), "pytorch-lightning_version": "2.6.0",
                    "state_dict": {f"model.{k}": v for k, v in sd.items()},
                    "hyper_parameters": {"lr": 0.05, "hidden": 4, "optimizer": "Adam"},
                    "optimizer_states": [{"state": {}, "param_groups": []}]},
                   tmp_path / f"epoch={i}-step={8 * (i + 1)}.ckpt")
    cks = session.import_checkpoints([tmp_path / "epoch=1-step=16.ckpt", tmp_path / "epoch=0-step=8.ckpt"]).checkpoints
    assert [(c.epoch, c.step) for c in cks] == [(0, 8), (1, 16)]
    assert cks[0].hparams["lr"] == 0.05 and cks[0].hparams["optimizer"] == "adam"
    assert cks[0].hparams["source"] == {"lr": 0.05, "hidden": 4, "optimizer": "Adam"}
    assert same(session.store.load_state_dict(cks[1].id), sds[1])


class _Marker:  # a pickled object whose unpickling would create a file
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_hf_trainer_folder_training_args_never_unpickled(tmp_path, session):
    out = tmp_path / "hf_out"
    sds = states(2)
    marker = tmp_path / "UNPICKLED"
    for i, step in enumerate((4, 8)):
        ck = out / f"checkpoint-{step}"
        ck.mkdir(parents=True)
        save_state_dict(ck / "model.safetensors", sds[i])
        (ck / "trainer_state.json").write_text(json.dumps({
            "global_step": step, "epoch": step / 4, "train_batch_size": 16,
            "log_history": [{"step": s, "loss": 1.0 / s, "learning_rate": 0.01 / s, "epoch": s / 4}
                            for s in (2, 4, 6, 8)]}))
        (ck / "training_args.bin").write_bytes(pickle.dumps(_Marker(str(marker))))
        torch.save({"state": {}}, ck / "optimizer.pt")  # the Trainer's side files are no checkpoints
    cks = session.import_checkpoints(out).checkpoints
    assert not marker.exists()
    assert [(c.epoch, c.step) for c in cks] == [(1, 4), (2, 8)]
    assert cks[0].metrics == {"loss": 0.25, "learning_rate": 0.0025} and cks[1].hparams["batch_size"] == 16
    # the pickled arguments are never read: the rate in force at each step is the last one logged
    assert [c.hparams["lr"] for c in cks] == [pytest.approx(0.0025), pytest.approx(0.00125)]
    assert same(session.store.load_state_dict(cks[1].id), sds[1])


def test_safetensors_and_step_names_order(tmp_path, session):
    sds = states(3)
    for step, sd in zip((1000, 500, 1500), sds, strict=True):
        save_state_dict(tmp_path / f"step_{step}.safetensors", sd)
    cks = session.import_checkpoints(tmp_path).checkpoints
    assert [c.step for c in cks] == [500, 1000, 1500] and [c.epoch for c in cks] == [500, 1000, 1500]
    assert same(session.store.load_state_dict(cks[0].id), sds[1])


def test_empty_and_unrelated_folders(tmp_path, session):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no files"):
        session.import_checkpoints(tmp_path / "empty")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("x")
    (tmp_path / "docs" / "b.csv").write_text("1,2")
    with pytest.raises(ValueError, match=r"no checkpoint files.*a\.txt.*b\.csv"):
        session.import_checkpoints(tmp_path / "docs")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        session.import_checkpoints(tmp_path / "nope")
    assert session.store.n_checkpoints() == 0


def test_other_architecture_corrupt_file_and_clash_named_one_by_one(tmp_path, session):
    run = tmp_path / "run"
    run.mkdir()
    good = states(3)
    torch.save(good[0], run / "model_0.pt")
    (run / "model_1.pt").write_bytes(b"PK\x03\x04 truncated")  # a corrupt file in the middle
    torch.save(good[1], run / "model_2.pt")
    torch.save(states(1, other)[0], run / "model_3.pt")  # another architecture
    torch.save(good[2], run / "model_4.pt")
    torch.save(good[2], run / "epoch_4.pt")  # claims epoch 4 too
    with pytest.raises(ValueError, match="nothing was imported") as err:
        session.import_checkpoints(run, strict=True)
    text = str(err.value)
    assert "nothing was imported" in text and "strict=True" in text
    assert "model_1.pt" in text and "not a readable PyTorch checkpoint" in text
    assert "model_3.pt" in text and "'0.weight' has shape [5, 2] in the checkpoint but [4, 2]" in text
    assert f"{run / 'epoch_4.pt'} and {run / 'model_4.pt'} both claim epoch 4" in text
    assert session.store.n_checkpoints() == 0 and not list((session.path / "weights").iterdir())
    result = session.import_checkpoints(run)
    assert [c.epoch for c in result.checkpoints] == [0, 2]
    assert {r.path.rsplit("/", 1)[-1] for r in result.refused} == {"model_1.pt", "model_3.pt", "model_4.pt",
                                                                    "epoch_4.pt"}
    assert "refused" in str(result) and "model_3.pt" in str(result)
    assert result.checkpoints[1].parent == result.checkpoints[0].id  # the refused ones are skipped over


def test_only_other_architecture_refused_with_the_tensor(tmp_path, session):
    for e, sd in enumerate(states(2, other)):
        torch.save(sd, tmp_path / f"model_{e}.pt")
    refused = r"(?s)2 of 2 checkpoint file\(s\) refused.*model_0\.pt.*'0\.weight'.*model_1\.pt"
    with pytest.raises(ValueError, match=refused):
        session.import_checkpoints(tmp_path)


def test_an_import_is_one_transaction(tmp_path, session, monkeypatch):
    """A failure while the files are written (here: the third) leaves the project as it was."""
    for e, sd in enumerate(states(4)):
        torch.save(sd, tmp_path / f"model_{e}.pt")
    from lossviz import store as store_module

    real = store_module.files.write_durably
    calls = {"n": 0}

    def failing(path, data):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk on fire")
        return real(path, data)

    monkeypatch.setattr(store_module.files, "write_durably", failing)
    with pytest.raises(OSError, match="disk on fire"):
        session.import_checkpoints(tmp_path)
    monkeypatch.undo()
    assert session.store.n_checkpoints() == 0 and session.branches() == []
    assert not list((session.path / "weights").iterdir())
    assert len(session.import_checkpoints(tmp_path).checkpoints) == 4


def test_import_evaluates_with_data(tmp_path):
    x = torch.randn(32, 2)
    y = (x[:, 0] > 0).long()
    sd = states(1)[0]
    torch.save(sd, tmp_path / "model_1.pt")
    with Session(tmp_path / "p", model=net, data=(x, y)) as s:
        c = s.import_checkpoints(tmp_path / "model_1.pt").checkpoints[0]
        m = net()
        m.load_state_dict(sd)
        expected = nn.functional.cross_entropy(m(x), y).item()
        assert c.metrics["train_loss"] == pytest.approx(expected, rel=1e-5)


def test_plan_import_orders_and_forks():
    def f(name, branch=""):
        return Found(__import__("pathlib").Path(name), branch, "torch")

    read = [(f("b/3", "b"), Read(epoch=3.0)), (f("a1"), Read(epoch=1.0)), (f("a0"), Read(epoch=0.0)),
            (f("x/y/1", "x/y"), Read(step=7)), (f("a2"), Read(epoch=2.0))]
    planned, refused = plan_import(read)
    assert not refused
    names = [p.found.path.name for p in planned]
    assert names == ["a0", "a1", "a2", "3", "1"]
    assert [p.parent_entry for p in planned] == [None, 0, 1, 2, 2]  # b and x/y fork from the top after epoch 2
    assert [p.new_branch for p in planned] == [True, False, False, True, True]
    _, refused = plan_import([(f("u"), Read()), (f("v"), Read(epoch=1.0))])
    assert [r.path for r in refused] == ["u"] and "neither its content nor its name" in refused[0].reason


def test_trainer_hparams_map_to_lossviz_names():
    hp = trainer_hparams({"learning_rate": 3e-4, "per_device_train_batch_size": 8, "optim": "adamw_torch",
                          "seed": 42, "weight_decay": -1.0})
    assert hp["lr"] == 3e-4 and hp["batch_size"] == 8 and hp["optimizer"] == "adamw" and hp["seed"] == 42
    assert "weight_decay" not in hp and hp["source"]["weight_decay"] == -1.0  # invalid for lossviz: kept aside


def test_find_checkpoints_hf_folder_given_directly(tmp_path):
    ck = tmp_path / "checkpoint-12"
    ck.mkdir()
    save_state_dict(ck / "model.safetensors", states(1)[0])
    torch.save({}, ck / "rng_state.pth")
    found, ignored = find_checkpoints(ck)
    assert [(x.path.name, x.kind) for x in found] == [("model.safetensors", "hf")] and ignored == []


def test_cli_import(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    for e, sd in enumerate(states(3)):
        torch.save(sd, run / f"model_{e}.pt")
    project = tmp_path / "p"
    assert main(["import", str(run), "--project", str(project), "--model", "tests.unit.test_importing:net"]) == 0
    assert "imported 3 checkpoint(s) in 1 branch(es)" in capsys.readouterr().out
    (tmp_path / "bad").mkdir()
    torch.save(states(1, other)[0], tmp_path / "bad" / "model_0.pt")
    # an existing project's index names its factory, but code named by a folder is never imported on its
    # say: the user names it again
    assert main(["import", str(tmp_path / "bad"), "--project", str(project), "--strict",
                 "--model", "tests.unit.test_importing:net"]) == 2
    err = capsys.readouterr().err
    assert "model_0.pt" in err and "does not fit the model" in err
    with Session(project, model=net) as s:
        assert s.store.n_checkpoints() == 3
    assert main(["import", str(run), "--project", str(tmp_path / "new")]) == 2
    assert "give --model" in capsys.readouterr().err and not (tmp_path / "new").exists()


def test_hf_save_pretrained_with_tied_weights(tmp_path):
    """``save_pretrained`` leaves out ``lm_head.weight`` (tied to the embedding): it is restored."""
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=16, n_positions=8, eos_token_id=0,
                                     bos_token_id=0)

    def lm() -> nn.Module:
        return transformers.GPT2LMHeadModel(config)

    torch.manual_seed(0)
    trained = lm()
    ck = tmp_path / "out" / "checkpoint-10"
    trained.save_pretrained(ck)
    with Session(tmp_path / "p", model=lm, data=False) as s:
        c = s.import_checkpoints(tmp_path / "out").checkpoints[0]
        back = s.model(c.id)
        assert c.step == 10
        assert torch.equal(back.lm_head.weight, trained.transformer.wte.weight)
        assert all(torch.equal(v, back.state_dict()[k]) for k, v in trained.state_dict().items())


IMPORTER = """
import sys, time
from torch import nn
from lossviz import files
from lossviz.session import Session
real = files.write_durably
def slow(path, data):  # widen the window: each staged file takes 30 ms
    time.sleep(0.03)
    real(path, data)
files.write_durably = slow
with Session(sys.argv[1], model=lambda: nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2)), data=False) as s:
    print("importing", flush=True)
    s.import_checkpoints(sys.argv[2])
    print("done", flush=True)
"""


@pytest.mark.system
@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.05, 0.4, 0.9])
def test_a_killed_import_leaves_all_or_nothing(tmp_path, delay):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    run = tmp_path / "run"
    run.mkdir()
    for e, sd in enumerate(states(20)):
        torch.save(sd, run / f"model_{e}.pt")
    project = tmp_path / "p"
    Session(project, model=net, data=False).close()
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", IMPORTER, str(project), str(run)], env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "importing"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)
    with Session(project, model=net, data=False) as s:
        n = s.store.n_checkpoints()
        assert n in (0, 20)
        files_left = sorted(p.name for p in (project / "weights").iterdir())
        assert len(files_left) == n  # the killed writer's staged files and links are cleaned at opening
        assert all(s.store.verify(c.id) for c in s.checkpoints())


def test_sharded_hf_checkpoint_and_an_index_leading_out(tmp_path, session):
    sd = states(1)[0]
    ck = tmp_path / "out" / "checkpoint-3"
    ck.mkdir(parents=True)
    names = list(sd)
    save_state_dict(ck / "model-00001-of-00002.safetensors", {k: sd[k] for k in names[:2]})
    save_state_dict(ck / "model-00002-of-00002.safetensors", {k: sd[k] for k in names[2:]})
    weight_map = {k: f"model-0000{1 + (i >= 2)}-of-00002.safetensors" for i, k in enumerate(names)}
    (ck / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    c = session.import_checkpoints(tmp_path / "out").checkpoints[0]
    assert c.step == 3 and same(session.store.load_state_dict(c.id), sd)
    (ck / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {names[0]: "../../secret.safetensors"}}))
    with pytest.raises(ValueError, match="not a file beside it"):
        session.import_checkpoints(tmp_path / "out")
