"""The batched engine against a plain per-point loop (load weights into the module, ``model(x)``)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lossviz.evaluate import Evaluator, Plan, forget_plans
from lossviz.params import ParamSpace


@pytest.fixture(autouse=True)
def fresh_plans():
    """Every test measures its own plans (the process remembers measured plans otherwise)."""
    forget_plans()
    yield
    forget_plans()


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
    per_sample = ev_big._bytes_per_sample
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


# ---------------------------------------------------------------------------------------- fast paths
BF16_REL_BOUND = 2e-2  # bf16 keeps 8 mantissa bits: ~4e-3 per rounding, averaged over samples


@pytest.mark.parametrize("model_name", ["mlp", "cnn"])
def test_bf16_surface_is_close_to_float32_but_not_identical(model_name):
    from lossviz.landscape import compute_surface

    model = mlp() if model_name == "mlp" else cnn()
    x, y = data_for(model_name, n=64)
    common = dict(x="-1:1:5", y="-1:1:5", progress=False, batch_size=32, strategy="vmap")
    ref = compute_surface(model, (x, y), **common)
    low = compute_surface(model, (x, y), precision="bf16", **common)
    assert low.meta["precision"] == "bf16" and ref.meta["precision"] == "float32"
    a, b = ref.values["train_loss"], low.values["train_loss"]
    assert np.isfinite(a).all() and np.isfinite(b).all()
    rel = np.abs(b - a) / np.abs(a)
    assert rel.max() <= BF16_REL_BOUND
    assert rel.max() > 1e-6  # autocast ran: bf16 rounding shows in the losses
    # float32 itself matches a float64 reference far more closely than bf16 does
    ref64 = compute_surface(model, (x, y), dtype=torch.float64, **common).values["train_loss"]
    assert np.abs(a - ref64).max() < 1e-5 < np.abs(b - ref64).max()


def bf16_by_hand(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """The bf16 loss as the engine defines it, computed directly: convolutions on bf16-rounded
    input/weight/bias with bf16-rounded outputs, the rest under CPU autocast, the loss in float32."""
    net = copy.deepcopy(model).eval()

    def conv_hook(mod, inp, _out):
        bias = mod.bias.bfloat16() if mod.bias is not None else None
        with torch.autocast("cpu", enabled=False):
            return F.conv2d(inp[0].bfloat16(), mod.weight.bfloat16(), bias, mod.stride,
                            mod.padding, mod.dilation, mod.groups).float()

    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(conv_hook)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = net(x)
    return F.cross_entropy(logits.float(), y).item()


@pytest.mark.parametrize("strategy", ["vmap", "loop"])
def test_bf16_runs_convolutions_in_bf16_in_both_strategies(strategy):
    model = cnn()
    x, y = data_for("cnn", n=48)
    ev = Evaluator(model, (x, y), precision="bf16", strategy=strategy, batch_size=48)
    ev32 = Evaluator(model, (x, y), strategy=strategy, batch_size=48)
    pts = points_around(ev.space, ev.center, 6)
    got, ref = ev.evaluate(pts), ev32.evaluate(pts)
    assert not ev.errors  # no vmap call fell back to the loop
    np.testing.assert_allclose(got["loss"], ref["loss"], rtol=BF16_REL_BOUND)
    # accuracy differs only where bf16 flips an argmax: at most a few samples of 48
    assert np.abs(got["acc"] - ref["acc"]).max() <= 100 * 3 / 48
    by_hand = bf16_by_hand(model, x, y)
    at_center, f32 = ev.evaluate_one(ev.center)["loss"], ev32.evaluate_one(ev.center)["loss"]
    if strategy == "loop":  # the same kernels: equal up to float32 summation order
        assert at_center == pytest.approx(by_hand, rel=1e-6)
    else:  # grouped (vmapped) bf16 kernels round differently, by less than bf16 vs float32
        assert abs(at_center - by_hand) < abs(f32 - by_hand)
    assert abs(at_center - f32) > 1e-6 * f32


def test_tf32_on_cpu_equals_float32_exactly_and_leaves_the_flags_alone():
    model = cnn()
    x, y = data_for("cnn")
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    ev32 = Evaluator(model, (x, y), strategy="vmap", batch_size=10)
    ev_tf = Evaluator(model, (x, y), precision="tf32", strategy="vmap", batch_size=10)
    pts = points_around(ev32.space, ev32.center, 8)
    a, b = ev32.evaluate(pts), ev_tf.evaluate(pts)
    np.testing.assert_array_equal(a["loss"], b["loss"])
    np.testing.assert_array_equal(a["acc"], b["acc"])
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == flags


@pytest.mark.parametrize("strategy", ["vmap", "loop"])
@pytest.mark.parametrize("kind", ["weights", "states"])
def test_channels_last_gives_the_same_numbers(strategy, kind):
    model = cnn()
    x, y = data_for("cnn")
    ev = Evaluator(model, (x, y), kind=kind, strategy=strategy, batch_size=10, channels_last=False)
    ev_cl = Evaluator(model, (x, y), kind=kind, strategy=strategy, batch_size=10, channels_last=True)
    assert ev_cl.channels_last and not ev.channels_last
    assert ev_cl.data.inputs.is_contiguous(memory_format=torch.channels_last)
    assert ev_cl.model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    pts = points_around(ev.space, ev.center, 8)
    a, b = ev.evaluate(pts), ev_cl.evaluate(pts)
    np.testing.assert_allclose(b["loss"], a["loss"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(b["acc"], a["acc"], rtol=0, atol=1e-5)
    ref, _ = reference_metrics(model, kind, pts, x, y, torch.float64)
    np.testing.assert_allclose(b["loss"], ref, rtol=0, atol=1e-5)
    assert not ev_cl.errors


@pytest.mark.parametrize("faster", [True, False])
def test_cpu_auto_channels_last_is_measured_with_the_loop_and_kept_only_when_faster(monkeypatch, faster):
    """On CPU, "auto" times single points in both formats once the loop plan is chosen; the timing
    is faked here (channels-last at 0.5x or 1.0x the contiguous time) to check both decisions."""
    torch.manual_seed(0)  # two input channels: with one, both memory formats are the same strides
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Conv2d(4, 3, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    x, y = torch.randn(37, 2, 6, 6), torch.randint(0, 3, (37,))
    ev = Evaluator(model, (x, y), kind="states", strategy="loop", batch_size=10)
    assert not ev.channels_last and ev._measure_channels_last  # undecided until the first chunk
    real_timed = Evaluator._timed

    def fake_timed(self, plan, idx, pts, out, done):
        real_timed(self, plan, idx, pts, out, done)  # evaluates (and keeps) the point as usual
        return 0.5 if (self.channels_last and faster) else 1.0

    monkeypatch.setattr(Evaluator, "_timed", fake_timed)
    pts = points_around(ev.space, ev.center, 8)
    got = ev.evaluate(pts)
    assert ev.channels_last is faster and not ev._measure_channels_last
    assert ev.data.inputs.is_contiguous(memory_format=torch.channels_last) is faster
    assert ev.model[3].weight.is_contiguous(memory_format=torch.channels_last) is faster
    assert ev.model[3].weight.is_contiguous() is not faster
    assert any("channels_last" in k for k in ev.timings)
    ref, _ = reference_metrics(model, "states", pts, x, y, torch.float64)
    np.testing.assert_allclose(got["loss"], ref, rtol=0, atol=1e-5)
    np.testing.assert_allclose(ev.evaluate(pts)["loss"], ref, rtol=0, atol=1e-5)  # after the decision too


def test_cpu_auto_channels_last_is_not_measured_for_vmap_plans_float64_or_without_convolutions():
    x, y = data_for("cnn")
    ev = Evaluator(cnn(), (x, y), strategy="vmap", batch_size=10)
    ev.evaluate(points_around(ev.space, ev.center, 8))
    assert not ev.channels_last and not any("channels_last" in k for k in ev.timings)
    xm, ym = data_for("mlp")
    ev = Evaluator(mlp(), (xm, ym), strategy="loop", batch_size=10)
    assert not ev._measure_channels_last
    ev = Evaluator(cnn().double(), (x.double(), y), strategy="loop", batch_size=10, dtype=torch.float64)
    assert not ev._measure_channels_last  # float64: the same numbers every run


def test_precision_and_channels_last_refuse_bad_values():
    model = mlp()
    x, y = data_for("mlp")
    with pytest.raises(ValueError, match=r"dtype=torch.float32.*precision='float32'"):
        Evaluator(model, (x, y), dtype=torch.float64, precision="bf16")
    with pytest.raises(ValueError, match=r"'float32', 'tf32', 'bf16'"):
        Evaluator(model, (x, y), precision="fp16")
    with pytest.raises(ValueError, match="4-D image inputs"):
        Evaluator(model, (x, y), channels_last=True)
    with pytest.raises(ValueError, match="'auto', True or False"):
        Evaluator(cnn(), data_for("cnn"), channels_last="yes")
    from lossviz.landscape import compute_surface

    with pytest.raises(ValueError, match="unknown precision"):
        compute_surface(model, (x, y), x="-1:1:3", precision="half", progress=False)


# ---------------------------------------------------------------------------------------- plans
def fake_clock(monkeypatch, per_point):
    """``Evaluator._timed`` evaluates (and keeps) the points as usual but reports
    ``per_point(plan) * points`` seconds; returns the list of timed plans."""
    real_timed = Evaluator._timed
    timed = []

    def fake_timed(self, plan, idx, pts, out, done):
        real_timed(self, plan, idx, pts, out, done)
        timed.append(plan)
        return per_point(plan) * len(idx)

    monkeypatch.setattr(Evaluator, "_timed", fake_timed)
    return timed


@pytest.mark.parametrize("rival_speed", [2.0, 0.95])  # twice as slow; 5% faster, within the margin
def test_auto_keeps_the_plain_loop_unless_a_rival_beats_it_by_the_margin(monkeypatch, rival_speed):
    model = mlp()
    x, y = data_for("mlp", n=64)
    ev = Evaluator(model, (x, y), dtype=torch.float64)
    base = ev._loop_plans()[0]
    timed = fake_clock(monkeypatch, lambda plan: 1e-3 if plan == base else rival_speed * 1e-3)
    pts = points_around(ev.space, ev.center, 40)
    got = ev.evaluate(pts, total=400)
    assert ev.plan == base and ev.plan_source == "measured"
    assert timed.count(base) >= 3 and any(p.strategy == "vmap" for p in timed)  # the rivals were timed
    ref_loss, ref_acc = reference_metrics(model, "weights", pts, x, y, torch.float64)
    np.testing.assert_allclose(got["loss"], ref_loss, rtol=0, atol=1e-10)
    np.testing.assert_allclose(got["acc"], ref_acc, rtol=0, atol=1e-10)


def test_auto_chooses_a_rival_only_from_the_median_of_several_interleaved_timings(monkeypatch):
    model = mlp()
    x, y = data_for("mlp", n=64)
    ev = Evaluator(model, (x, y), dtype=torch.float64)
    base = ev._loop_plans()[0]
    noise = iter([0.3] + [1.0] * 1000)  # vmap's first timing is a lucky outlier, the rest are slow

    def per_point(plan):
        return 1e-3 if plan.strategy == "loop" else next(noise) * 1e-3 if plan.points_per_call == 4 else 5e-3

    timed = fake_clock(monkeypatch, per_point)
    ev.evaluate(points_around(ev.space, ev.center, 40), total=4000)  # a budget for several timings
    assert ev.plan == base  # one fast timing of vmap(K=4) is not enough
    assert timed.count(Plan("vmap", 4, ev._vmap_plans(40)[0].batch_size)) >= 3
    forget_plans()
    ev = Evaluator(model, (x, y), dtype=torch.float64)
    fake_clock(monkeypatch, lambda plan: 1e-3 if plan.strategy == "loop" else 0.2e-3)
    got = ev.evaluate(points_around(ev.space, ev.center, 40), total=400)
    assert ev.plan.strategy == "vmap" and ev.plan_source == "measured"
    ref_loss, _ = reference_metrics(model, "weights", points_around(ev.space, ev.center, 40), x, y, torch.float64)
    np.testing.assert_allclose(got["loss"], ref_loss, rtol=0, atol=1e-10)


def test_a_measured_plan_is_remembered_and_reused_without_measuring(monkeypatch):
    model = mlp()
    x, y = data_for("mlp", n=64)
    timed = fake_clock(monkeypatch, lambda plan: 1e-3)
    first = Evaluator(model, (x, y), dtype=torch.float64)
    pts = points_around(first.space, first.center, 16)
    first.evaluate(pts)
    assert first.plan_source == "measured" and timed
    n_timed = len(timed)
    again = Evaluator(copy.deepcopy(model), (x.clone(), y.clone()), dtype=torch.float64)
    got = again.evaluate(pts)
    assert len(timed) == n_timed  # no timing the second time
    assert again.plan == first.plan and again.plan_source == "reused" and again.timings == first.timings
    ref_loss, _ = reference_metrics(model, "weights", pts, x, y, torch.float64)
    np.testing.assert_allclose(got["loss"], ref_loss, rtol=0, atol=1e-10)
    # another data shape, dtype or architecture is measured afresh
    for other in (Evaluator(model, (x[:50], y[:50]), dtype=torch.float64), Evaluator(model, (x, y)),
                  Evaluator(nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 3)), (x, y))):
        other.evaluate(points_around(other.space, other.center, 16))
        assert other.plan_source == "measured"


def test_a_pinned_plan_is_used_as_pinned_without_measuring(monkeypatch):
    model = cnn()
    x, y = data_for("cnn")
    timed = fake_clock(monkeypatch, lambda plan: 1e-3)
    pts = points_around(ParamSpace(model, "weights"), ParamSpace(model, "weights").vector(model), 12)
    for strategy, bs, k in (("loop", 7, None), ("vmap", 5, 3)):
        ev = Evaluator(model, (x, y), dtype=torch.float64, strategy=strategy, batch_size=bs, points_per_call=k,
                       channels_last=False, threads=1)
        got = ev.evaluate(pts)
        assert ev.plan == Plan(strategy, k or 1, bs) and ev.plan_source == "pinned"
        ref_loss, _ = reference_metrics(model, "weights", pts, x, y, torch.float64)
        np.testing.assert_allclose(got["loss"], ref_loss, rtol=0, atol=1e-10)
    assert not timed


class ThreadSpy(nn.Module):
    """An MLP that records torch's intra-op thread count at every forward pass."""

    def __init__(self):
        super().__init__()
        self.net = mlp()
        self.seen: list[int] = []

    def forward(self, x):
        self.seen.append(torch.get_num_threads())
        return self.net(x)


@pytest.fixture
def four_cpus(monkeypatch):
    """A 4-CPU machine as far as the thread rule sees (torch on 4 threads), restored afterwards."""
    import lossviz.plans as plans

    saved = torch.get_num_threads()
    monkeypatch.setattr(plans, "available_cpus", lambda: 4)
    monkeypatch.setattr(plans.os, "getloadavg", lambda: (0.5, 0.5, 0.5))
    torch.set_num_threads(4)
    yield
    torch.set_num_threads(saved)


@pytest.mark.parametrize("many_faster", [True, False])
def test_cpu_threads_are_measured_kept_only_when_faster_and_restored(monkeypatch, four_cpus, many_faster):
    x, y = data_for("mlp", n=64)
    ev = Evaluator(ThreadSpy(), (x, y), dtype=torch.float64)
    assert ev.threads == 4
    fast = 0.5e-3 if many_faster else 2e-3
    fake_clock(monkeypatch, lambda plan: 1e-3 if torch.get_num_threads() == 1 else fast)
    pts = points_around(ev.space, ev.center, 24)
    got = ev.evaluate(pts, total=200)
    assert ev.threads == (4 if many_faster else 1)
    assert {1, 4} <= set(ev.model.seen)  # both counts were timed
    assert torch.get_num_threads() == 4  # the caller's setting is back
    ev.model.seen.clear()
    ev.evaluate(pts)
    assert set(ev.model.seen) == {ev.threads}
    again = Evaluator(ThreadSpy(), (x, y), dtype=torch.float64)
    again.model.seen.clear()  # the set-up's probe ran with the caller's setting
    again.evaluate(pts)
    assert again.plan_source == "reused" and set(again.model.seen) == {ev.threads}
    ref_loss, _ = reference_metrics(ThreadSpy(), "weights", pts, x, y, torch.float64)
    np.testing.assert_allclose(got["loss"], ref_loss, rtol=0, atol=1e-10)


def test_threads_can_be_set_and_the_rule_gives_one_per_parallel_worker(four_cpus):
    from lossviz.evaluate import evaluation_threads

    x, y = data_for("mlp", n=64)
    ev = Evaluator(ThreadSpy(), (x, y), dtype=torch.float64, threads=2)
    ev.model.seen.clear()
    ev.evaluate(points_around(ev.space, ev.center, 12))
    assert ev.threads == 2 and set(ev.model.seen) == {2} and torch.get_num_threads() == 4
    assert not any("threads" in k for k in ev.timings)
    assert evaluation_threads("cpu", workers=3) == 1
    assert evaluation_threads("cpu") == 4
    assert evaluation_threads("cpu", workers=3, threads=3) == 3
    with pytest.raises(ValueError, match="threads"):
        Evaluator(mlp(), (x, y), threads=0)


def test_a_loaded_machine_stays_on_one_thread_without_trying_more(monkeypatch, four_cpus):
    import lossviz.plans as plans

    monkeypatch.setattr(plans.os, "getloadavg", lambda: (3.2, 3.0, 3.0))  # 3 of 4 CPUs busy
    x, y = data_for("mlp", n=64)
    ev = Evaluator(ThreadSpy(), (x, y), dtype=torch.float64)
    ev.model.seen.clear()
    ev.evaluate(points_around(ev.space, ev.center, 24), total=200)
    assert ev.threads == 1 and set(ev.model.seen) == {1} and torch.get_num_threads() == 4
