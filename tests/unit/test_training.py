"""The training loop: hyperparameter validation, schedules, bit-exact resumption, divergence, cancel."""

from __future__ import annotations

import copy
import math
import threading

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lossviz.store import decode_optimizer_state, encode_optimizer_state
from lossviz.training import (
    DEFAULT_HPARAMS,
    epoch_seed,
    evaluate_model,
    lr_at,
    normalize_schedule,
    train,
    validate_hparams,
)


def _data(n=160, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    return torch.utils.data.TensorDataset(x, (x[:, 0] * x[:, 1] > 0).long())


def _model(seed=0):
    torch.manual_seed(seed)
    # dropout: global-RNG use inside the model, which resumption must reproduce too
    return nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Dropout(0.2), nn.Linear(16, 2))


def _h(**kw):
    return validate_hparams({**DEFAULT_HPARAMS, "batch_size": 32, "lr": 0.05, **kw})


@pytest.mark.parametrize(
    "field,value",
    [("lr", -0.1), ("lr", float("nan")), ("lr", 0), ("momentum", 1.5), ("momentum", float("inf")),
     ("weight_decay", -1.0), ("batch_size", 0), ("batch_size", 2.5), ("seed", -1),
     ("optimizer", "lbfgs"), ("nesterov", "yes"), ("schedule", "sometimes")],
)
def test_bad_hyperparameters_name_the_field(field, value):
    with pytest.raises(ValueError, match=field if field != "optimizer" else "optimizer"):
        validate_hparams(dict(DEFAULT_HPARAMS, **{field: value}))


def test_nesterov_needs_sgd_with_momentum():
    with pytest.raises(ValueError, match="nesterov"):
        validate_hparams(dict(DEFAULT_HPARAMS, nesterov=True, momentum=0.0))
    with pytest.raises(ValueError, match="nesterov"):
        validate_hparams(dict(DEFAULT_HPARAMS, nesterov=True, optimizer="adam"))


def test_schedules_follow_their_formulas():
    cifar = normalize_schedule("cifar")
    # the CIFAR preset: 0.1, then x0.1 at epochs 150, 225, 275 (as torch's MultiStepLR)
    for e, want in [(0, 0.1), (149, 0.1), (150, 0.01), (224, 0.01), (225, 0.001), (275, 0.0001), (300, 0.0001)]:
        assert lr_at(0.1, cifar, e) == pytest.approx(want, rel=1e-12)
    ref = torch.optim.lr_scheduler.MultiStepLR(
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), milestones=[150, 225, 275], gamma=0.1
    )
    for e in range(300):
        assert lr_at(0.1, cifar, e) == pytest.approx(ref.get_last_lr()[0], rel=1e-9)
        ref.optimizer.step()
        ref.step()
    step = normalize_schedule("step:10:0.5")
    assert [lr_at(1.0, step, e) for e in (0, 9, 10, 25)] == [1.0, 1.0, 0.5, 0.25]
    assert normalize_schedule("multistep:3,1:0.1")["milestones"] == [1, 3]
    cos = normalize_schedule({"name": "cosine", "t_max": 10, "eta_min": 0.01})
    assert lr_at(1.0, cos, 0) == pytest.approx(1.0)
    assert lr_at(1.0, cos, 5) == pytest.approx(0.01 + 0.99 * 0.5)
    assert lr_at(1.0, cos, 10) == pytest.approx(0.01)
    assert lr_at(1.0, normalize_schedule("constant"), 123) == 1.0


def test_epoch_seed_depends_on_seed_and_epoch_only():
    assert epoch_seed(3, 5) == epoch_seed(3, 5.0)
    assert len({epoch_seed(s, e) for s in range(4) for e in range(10)}) == 40


def test_evaluate_model_matches_a_float64_reference():
    ds = _data(100)
    m = _model()
    got = evaluate_model(m, *ds.tensors, batch_size=33)  # uneven batches: weighted mean
    m64 = copy.deepcopy(m).double().eval()
    with torch.no_grad():
        out = m64(ds.tensors[0].double())
    assert got["loss"] == pytest.approx(float(F.cross_entropy(out, ds.tensors[1])), rel=1e-5)
    assert got["acc"] == pytest.approx(100.0 * float((out.argmax(1) == ds.tensors[1]).double().mean()), abs=1e-4)
    assert m.training  # mode restored


@pytest.mark.parametrize(
    "opt", [dict(optimizer="sgd", momentum=0.9, nesterov=True), dict(optimizer="adam", momentum=0.0),
            dict(optimizer="adamw", momentum=0.0, weight_decay=0.01), dict(optimizer="adagrad", momentum=0.0),
            dict(optimizer="rmsprop", momentum=0.5)],
)
def test_resuming_from_a_checkpoint_reproduces_the_uninterrupted_run_bit_for_bit(opt):
    ds = _data()
    h = _h(schedule="step:2:0.5", seed=7, **opt)
    seen = {}

    def keep(**kw):
        seen[kw["epoch"]] = (
            copy.deepcopy(kw["model"].state_dict()),
            encode_optimizer_state(copy.deepcopy(kw["optimizer"].state_dict())),
            kw["step"],
        )

    full = _model()
    out = train(full, ds, hparams=h, epochs=4, on_checkpoint=keep)
    assert out.status == "done" and sorted(seen) == [1.0, 2.0, 3.0, 4.0]
    sd2, (tensors, structure), step2 = seen[2.0]
    resumed = _model(seed=99)  # other initial weights: everything must come from the checkpoint
    resumed.load_state_dict(sd2)
    out2 = train(resumed, ds, hparams=h, epochs=2, start_epoch=2.0, start_step=step2,
                 optim_state=decode_optimizer_state(tensors, structure))
    assert out2.step == out.step
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    # and the run is not trivially constant: another seed gives other weights
    other = _model()
    train(other, ds, hparams=_h(schedule="step:2:0.5", seed=8, **opt), epochs=4)
    assert not torch.equal(other[0].weight, full[0].weight)


def test_without_the_optimizer_state_resumption_differs():
    """The test above can fail: dropping the momentum buffers changes the weights."""
    ds = _data()
    h = _h(optimizer="sgd", momentum=0.9)
    seen = {}
    full = _model()
    train(full, ds, hparams=h, epochs=3,
          on_checkpoint=lambda **kw: seen.setdefault(kw["epoch"], copy.deepcopy(kw["model"].state_dict())))
    resumed = _model()
    resumed.load_state_dict(seen[1.0])
    train(resumed, ds, hparams=h, epochs=2, start_epoch=1.0)
    assert not torch.equal(full[0].weight, resumed[0].weight)


def test_a_diverging_run_ends_with_the_nan_recorded_and_no_exception():
    x = torch.randn(64, 2)
    ds = torch.utils.data.TensorDataset(x, x @ torch.tensor([[1.0], [-2.0]]))
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    reports = []
    out = train(model, ds, hparams=_h(lr=100.0, momentum=0.0), epochs=50, loss="mse",
                evaluate=lambda m: evaluate_model(m, x, ds.tensors[1], loss="mse"),
                on_checkpoint=lambda **kw: reports.append(kw))
    assert out.status == "diverged"
    assert "nan" in out.reason or "inf" in out.reason
    assert "lower the learning rate" in out.reason
    last = reports[-1]
    assert last["status"] == "diverged" and last["optimizer"] is None
    assert math.isnan(last["metrics"]["loss"]) or last["metrics"]["loss"] > 1e30
    assert all(r["status"] == "ok" for r in reports[:-1])


def test_cancel_stops_before_the_next_step():
    ds = _data()
    ev = threading.Event()
    calls = []

    def progress(done, total, msg):
        calls.append(done)
        if done == 3:
            ev.set()

    out = train(_model(), ds, hparams=_h(), epochs=5, cancel=ev, progress=progress)
    assert out.status == "cancelled" and out.step == 3 and calls[-1] == 3
