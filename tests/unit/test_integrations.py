"""lossviz.integrations: the Lightning Callback and the HF TrainerCallback, each with the real package
on the CPU and a tiny model, logging into a project every N steps / epochs."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from lossviz.session import Session


def points(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 2, generator=g)
    return x, (x[:, 0] > 0).long()


def test_lightning_callback_logs_every_n_steps_and_epochs(tmp_path):
    pl = pytest.importorskip("lightning.pytorch")
    from lossviz.integrations.lightning import LossvizCallback

    class Lit(pl.LightningModule):
        def __init__(self, lr: float = 0.1):
            super().__init__()
            self.save_hyperparameters()
            self.net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2))

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = nn.functional.cross_entropy(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    torch.manual_seed(0)
    callback = LossvizCallback(tmp_path / "lit", every_n_steps=2, module="net")
    saver = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpts", every_n_epochs=1, save_top_k=-1)
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, callbacks=[callback, saver],
                         enable_progress_bar=False, enable_model_summary=False)
    lit = Lit()
    trainer.fit(lit, DataLoader(TensorDataset(*points()), batch_size=16))  # 4 steps an epoch
    made = callback.checkpoints
    assert [c.step for c in made] == [0, 2, 4, 6, 8] and [c.epoch for c in made] == [0, 0.5, 1, 1.5, 2]
    assert all("train_loss" in c.metrics for c in made[1:]) and made[0].metrics == {}
    assert made[1].hparams["lr"] == 0.1 and made[1].hparams["optimizer"] == "sgd"
    with Session(tmp_path / "lit", model=lambda: nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2))) as s:
        assert [c.id for c in s.checkpoints()] == [c.id for c in made] and len(s.branches()) == 1
        last = s.store.load_state_dict(made[-1].id)
        assert all(torch.equal(last[k], v) for k, v in lit.net.state_dict().items())
        # the .ckpt files Lightning saved, imported: the same points (epoch, step, weights) as logged
        imported = s.import_checkpoints(tmp_path / "ckpts").checkpoints
        assert [(c.epoch, c.step) for c in imported] == [(1.0, 4), (2.0, 8)]
        assert imported[0].hparams["lr"] == 0.1
        for c in imported:
            logged = next(m for m in made if m.step == c.step)
            a, b = s.store.load_state_dict(c.id), s.store.load_state_dict(logged.id)
            assert all(torch.equal(a[k], b[k]) for k in a)


class Pairs(Dataset):
    def __init__(self):
        self.x, self.y = points()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "labels": self.y[i]}


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2))

    def forward(self, x, labels=None):
        logits = self.net(x)
        return {"logits": logits, "loss": nn.functional.cross_entropy(logits, labels)}


def test_hf_trainer_callback_logs_every_n_steps_with_the_logged_values(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from lossviz.integrations.transformers import LossvizCallback

    torch.manual_seed(0)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=8, logging_steps=2, report_to=[],
        use_cpu=True, per_device_train_batch_size=16, learning_rate=0.05, disable_tqdm=True, save_steps=4)
    callback = LossvizCallback(tmp_path / "hf", every_n_steps=4)
    model = Tiny()
    transformers.Trainer(model=model, args=args, train_dataset=Pairs(), callbacks=[callback]).train()
    made = callback.checkpoints
    assert [(c.epoch, c.step) for c in made] == [(0, 0), (1, 4), (2, 8)]
    assert {"loss", "learning_rate"} <= set(made[1].metrics) and not any("runtime" in k for k in made[2].metrics)
    assert made[1].hparams["lr"] == 0.05 and made[1].hparams["batch_size"] == 16
    with Session(tmp_path / "hf", model=Tiny) as s:
        last = s.store.load_state_dict(made[-1].id)
        assert all(torch.equal(last[k], v) for k, v in model.state_dict().items())
        # the Trainer's checkpoint-N/ folders, imported: the same points as logged, with the logged values
        imported = s.import_checkpoints(tmp_path / "out").checkpoints
        assert [(c.epoch, c.step) for c in imported] == [(1.0, 4), (2.0, 8)]
        for c, logged in zip(imported, made[1:], strict=True):
            a, b = s.store.load_state_dict(c.id), s.store.load_state_dict(logged.id)
            assert all(torch.equal(a[k], b[k]) for k in a)
            assert c.metrics["loss"] == pytest.approx(logged.metrics["loss"])
        # training_args.bin is a pickled TrainingArguments: skipped, so the hparams are trainer_state.json's,
        # the lr the scheduled rate the Trainer logged at that step (linear decay from 0.05)
        assert imported[0].hparams["batch_size"] == 16
        for c, logged in zip(imported, made[1:], strict=True):
            assert c.hparams["lr"] == pytest.approx(logged.metrics["learning_rate"])
            assert c.hparams["lr"] < 0.05
    with pytest.raises(ValueError, match="every_n_steps or every_n_epochs"):
        LossvizCallback(tmp_path / "x")
