"""The batched engine against a plain per-point loop (load weights into the module, ``model(x)``)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lossviz.evaluate import EvalData, Evaluator, as_eval_data
from lossviz.params import ParamSpace


def mlp() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))


class TinyCNN(nn.Module):
    """conv-BN-ReLU x2, global average pool, linear: BatchNorm running statistics matter."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3)
        self.conv2, self.bn2 = nn.Conv2d(3, 4, 3, stride=2, bias=False), nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean(dim=(2, 3)))


def cnn() -> nn.Module:
    torch.manual_seed(2)
    model = TinyCNN()
    model.train()
    with torch.no_grad():
        for _ in range(3):  # non-trivial running statistics
            model(torch.randn(16, 1, 6, 6) * 2 + 0.5)
    return model.eval()


def data_for(name: str, n: int = 37):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(n, 2, generator=g) if name == "mlp" else torch.randn(n, 1, 6, 6, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    return x, y


def points_around(space: ParamSpace, center: torch.Tensor, k: int, scale: float = 0.3) -> torch.Tensor:
    """k points near center; BN running variances are scaled, not shifted, so they stay positive."""
    g = torch.Generator().manual_seed(4)
    noise = torch.randn(k, space.numel, generator=g, dtype=torch.float64).to(center.dtype)
    pts = center + scale * noise
    for e in space.entries:
        if e.name.endswith("running_var"):
            pts[:, e.slice] = center[e.slice] * (1 + 0.5 * noise[:, e.slice].abs())
    return pts


def reference_metrics(model, kind, points, x, y, dtype):
    """Plain loop: load each point into a copy of the module, run it in eval mode."""
    net = copy.deepcopy(model).to(dtype).eval()
    space = ParamSpace(net, kind)
    base = net.state_dict()
    losses, accs = [], []
    for p in points:
        net.load_state_dict(space.state_dict_from(p.to(dtype), base))
        with torch.no_grad():
            out = net(x.to(dtype))
        losses.append(F.cross_entropy(out, y).item())
        accs.append(100.0 * (out.argmax(1) == y).double().mean().item())
    return np.array(losses), np.array(accs)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("strategy", ["vmap", "loop", "auto"])
@pytest.mark.parametrize("kind", ["weights", "states"])
@pytest.mark.parametrize("model_name", ["mlp", "cnn"])
def test_engine_equals_plain_loop(model_name, kind, strategy, dtype, tol):
    model = mlp() if model_name == "mlp" else cnn()
    x, y = data_for(model_name)
    ev = Evaluator(model, (x, y), kind=kind, dtype=dtype, strategy=strategy, batch_size=10)
    points = points_around(ev.space, ev.center, 12)
    got = ev.evaluate(points)
    ref_loss, ref_acc = reference_metrics(model, kind, points, x, y, dtype)
    assert set(got) == {"loss", "acc"}
    np.testing.assert_allclose(got["loss"], ref_loss, rtol=0, atol=tol)
    np.testing.assert_allclose(got["acc"], ref_acc, rtol=0, atol=tol)
    assert ev.strategy_used in ("vmap", "loop")
    if strategy != "auto":
        assert ev.strategy_used == strategy
    else:
        assert len(ev.timings) >= 2  # both strategies were measured
    assert not ev.errors


def test_states_points_move_bn_statistics_but_weights_points_do_not():
    model = cnn()
    x, y = data_for("cnn")
    ev_s = Evaluator(model, (x, y), kind="states", dtype=torch.float64, strategy="vmap")
    stats = ev_s.space.mask("bn_stat")
    pts = ev_s.center.repeat(2, 1)
    pts[1, stats] *= 3.0  # only running statistics change
    res = ev_s.evaluate(pts)
    ref, _ = reference_metrics(model, "states", pts, x, y, torch.float64)
    np.testing.assert_allclose(res["loss"], ref, atol=1e-10)
    assert abs(res["loss"][0] - res["loss"][1]) > 1e-3


def test_uneven_batches_average_over_samples_and_auto_chooses_batch_size():
    model = mlp()
    x, y = data_for("mlp", n=53)
    ev = Evaluator(model, (x, y), dtype=torch.float64)  # batch size left to the engine
    pts = points_around(ev.space, ev.center, 16)
    ref_loss, ref_acc = reference_metrics(model, "weights", pts, x, y, torch.float64)
    for bs in (None, 7):
        ev = Evaluator(model, (x, y), dtype=torch.float64, batch_size=bs)
        got = ev.evaluate(pts)
        np.testing.assert_allclose(got["loss"], ref_loss, atol=1e-10)
        np.testing.assert_allclose(got["acc"], ref_acc, atol=1e-10)
        assert ev.batch_size_used == (bs or ev.batch_size_used) and ev.batch_size_used >= 1


def test_evaluate_one_equals_the_model_as_given():
    model = cnn()
    x, y = data_for("cnn")
    ev = Evaluator(model, (x, y), dtype=torch.float64)
    got = ev.evaluate_one(ev.center)
    with torch.no_grad():
        out = copy.deepcopy(model).double()(x.double())
    assert got["loss"] == pytest.approx(F.cross_entropy(out, y).item(), abs=1e-12)
    assert got["acc"] == pytest.approx(100 * (out.argmax(1) == y).double().mean().item(), abs=1e-12)
    # the caller's model is never modified
    assert all(p.dtype == torch.float32 for p in model.parameters())


def mean_abs_error(out, target):
    return (out - target).abs().mean()


def test_custom_loss_and_extra_metric_without_accuracy():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x = torch.randn(29, 3)
    t = torch.randn(29, 2)
    ev = Evaluator(
        model, (x, t), loss=F.mse_loss, metrics=("loss", "acc", mean_abs_error),
        dtype=torch.float64, strategy="vmap", batch_size=8,
    )
    assert ev.metric_names == ["loss", "mean_abs_error"]  # no accuracy for regression
    pts = points_around(ev.space, ev.center, 5)
    got = ev.evaluate(pts)
    net = copy.deepcopy(model).double()
    for k, p in enumerate(pts):
        ev.space.load_into(net, p)
        with torch.no_grad():
            out = net(x.double())
        assert got["loss"][k] == pytest.approx(F.mse_loss(out, t.double()).item(), abs=1e-12)
        assert got["mean_abs_error"][k] == pytest.approx((out - t.double()).abs().mean().item(), abs=1e-12)


class Fragile(nn.Module):
    """Logits from a linear layer; raises (data-dependent) when its first weight is above 5."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)

    def forward(self, x):
        if self.lin.weight[0, 0] > 5:
            raise RuntimeError("weight too large")
        return self.lin(x)


@pytest.mark.parametrize("strategy", ["vmap", "loop", "auto"])
def test_failures_and_non_finite_values_become_nan_without_exception(strategy):
    torch.manual_seed(6)
    model = Fragile()
    x, _ = data_for("mlp", n=20)
    y = (x[:, 0] > 0).long()
    ev = Evaluator(model, (x, y), dtype=torch.float64, strategy=strategy)
    pts = ev.center.repeat(10, 1)
    pts[:, 1] = torch.linspace(-1, 1, 10, dtype=torch.float64)
    pts[3, 0] = 10.0  # raises
    pts[6, 2] = float("nan")  # NaN weight -> NaN loss
    pts[8, 4] = float("inf")  # inf bias -> non-finite loss
    with pytest.warns(RuntimeWarning, match="weight too large"):
        got = ev.evaluate(pts)
    assert np.isnan(got["loss"][3]) and np.isnan(got["acc"][3])
    assert np.isnan(got["loss"][6])
    assert not np.isfinite(got["loss"][8])
    good = [0, 1, 2, 4, 5, 7, 9]
    net = copy.deepcopy(model).double()
    for k in good:
        ev.space.load_into(net, pts[k])
        with torch.no_grad():
            out = net(x.double())
        assert got["loss"][k] == pytest.approx(F.cross_entropy(out, y).item(), abs=1e-12)
    assert any("weight too large" in e for e in ev.errors)


def test_as_eval_data_accepts_tensors_arrays_datasets_and_loaders():
    x, y = data_for("mlp", n=23)
    ds = TensorDataset(x, y)
    forms = [
        (x, y),
        (x.numpy(), y.numpy()),
        ds,
        DataLoader(ds, batch_size=5),
        [ds[i] for i in range(23)],
        EvalData(x, y),
    ]
    for form in forms:
        d = as_eval_data(form)
        assert torch.equal(d.inputs, x) and torch.equal(d.targets, y)
    d = as_eval_data(DataLoader(ds, batch_size=5), max_samples=7)
    assert len(d) == 7 and torch.equal(d.inputs, x[:7])
    with pytest.raises(TypeError, match="evaluation data"):
        as_eval_data(42)
    with pytest.raises(ValueError, match="targets"):
        as_eval_data((x, y[:5]))


def test_bad_arguments_name_the_problem():
    model = mlp()
    x, y = data_for("mlp")
    with pytest.raises(ValueError, match="integer class labels"):
        Evaluator(model, (x, torch.randn(len(x))))
    with pytest.raises(ValueError, match="strategy"):
        Evaluator(model, (x, y), strategy="fast")
    with pytest.raises(ValueError, match="kind"):
        Evaluator(model, (x, y), kind="buffers")
    with pytest.raises(ValueError, match="cannot run on the evaluation inputs"):
        Evaluator(model, (torch.randn(5, 7), y[:5]))
    ev = Evaluator(model, (x, y))
    with pytest.raises(ValueError, match="shape"):
        ev.evaluate(torch.zeros(3, ev.space.numel + 1))


def test_points_per_call_fits_the_memory_budget_and_can_be_set():
    model = cnn()
    x, y = data_for("cnn")
    pts = None
    ev_big = Evaluator(model, (x, y), dtype=torch.float64, strategy="vmap", batch_size=10)
    per_sample = ev_big._bytes_per_sample  # noqa: SLF001
    # room for ~30 samples of activations at once: 3 points of a 10-sample batch
    ev_small = Evaluator(model, (x, y), dtype=torch.float64, strategy="vmap", batch_size=10,
                         memory_budget=30 * per_sample)
    ev_set = Evaluator(model, (x, y), dtype=torch.float64, strategy="vmap", points_per_call=5)
    pts = points_around(ev_big.space, ev_big.center, 12)
    results = [ev.evaluate(pts)["loss"] for ev in (ev_big, ev_small, ev_set)]
    assert ev_big.points_per_call_used == 12
    assert ev_small.points_per_call_used == 3
    assert ev_set.points_per_call_used == 5
    ref, _ = reference_metrics(model, "weights", pts, x, y, torch.float64)
    for r in results:
        np.testing.assert_allclose(r, ref, atol=1e-10)


def test_accuracy_needs_class_outputs_as_well_as_integer_labels():
    torch.manual_seed(7)
    model = nn.Sequential(nn.Linear(2, 1), nn.Flatten(0))  # one score per sample
    x, _ = data_for("mlp", n=12)
    y = (x[:, 0] > 0).long()

    def hinge(out, target):
        return torch.relu(1 - (2 * target - 1) * out).mean()

    ev = Evaluator(model, (x, y), loss=hinge, dtype=torch.float64)
    assert ev.metric_names == ["loss"]
    with torch.no_grad():
        ref = hinge(copy.deepcopy(model).double()(x.double()), y).item()
    assert ev.evaluate_one(ev.center)["loss"] == pytest.approx(ref, abs=1e-12)
