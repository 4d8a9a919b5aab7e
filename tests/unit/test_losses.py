"""lossviz.losses: every loss name means one thing in the engine, training, the Hessian and the CLI.

Ground truth: ``torch.nn.functional`` in float64, and the reference's softmax-MSE written out by hand
(``mean((softmax(z) - onehot(y))^2)``) for ``"mse"`` on class labels; the token losses against
``F.cross_entropy`` on the flattened (and, for ``causal_lm``, shifted) tokens with ``ignore_index=-100``.
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lossviz.evaluate import Evaluator
from lossviz.hessian import HessianOperator
from lossviz.losses import LOSS_NAMES, resolve_loss, resolve_metrics, scalar_value
from lossviz.params import ParamSpace
from lossviz.training import DEFAULT_HPARAMS, evaluate_model, train, validate_hparams

N, D_IN, C = 40, 3, 4
T = 5  # tokens per sequence of the "tokens" cases (x: (N, T, D_IN), y: (N, T))


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(D_IN, C).double()


def _softmax_mse_by_hand(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    onehot = torch.zeros_like(z)
    onehot[torch.arange(len(y)), y] = 1.0
    return ((torch.softmax(z, dim=1) - onehot) ** 2).mean()


def _token_ce_reference(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(z.flatten(0, 1), y.flatten(), ignore_index=-100)


def _causal_reference(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Hugging Face GPT-2's shift: logits of positions 0..T-2 predict the labels of 1..T-1."""
    return F.cross_entropy(z[:, :-1].flatten(0, 1), y[:, 1:].flatten(), ignore_index=-100)


# name -> (targets kind, float64 reference of the batch mean)
CASES = {
    "cross_entropy": ("labels", F.cross_entropy),
    "ce": ("labels", F.cross_entropy),
    "nll": ("labels", F.nll_loss),
    "mse": ("floats", F.mse_loss),
    "mse on labels": ("labels", _softmax_mse_by_hand),
    "l1": ("floats", F.l1_loss),
    "huber": ("floats", F.huber_loss),
    "bce": ("multilabel", F.binary_cross_entropy_with_logits),
    "token_cross_entropy": ("tokens", _token_ce_reference),
    "causal_lm": ("tokens", _causal_reference),
}


def _data(kind: str):
    """``"tokens"``: (N, T, D_IN) inputs (nn.Linear acts per token) and (N, T) labels, a varying number
    of them -100 per sequence (so token means differ from sequence means)."""
    g = torch.Generator().manual_seed(1)
    if kind == "tokens":
        x = torch.randn(N, T, D_IN, generator=g, dtype=torch.float64)
        y = torch.randint(0, C, (N, T), generator=g)
        y[torch.rand(N, T, generator=g) < 0.3] = -100
        return x, y
    x = torch.randn(N, D_IN, generator=g, dtype=torch.float64)
    if kind == "labels":
        return x, torch.randint(0, C, (N,), generator=g)
    if kind == "multilabel":
        return x, (torch.rand(N, C, generator=g) < 0.4).double()
    return x, 2 * torch.randn(N, C, generator=g, dtype=torch.float64)  # both Huber branches


def _name(case: str) -> str:
    return case.split()[0]


def test_every_name_has_a_case():
    assert {_name(c) for c in CASES} == set(LOSS_NAMES)
    assert isinstance(LOSS_NAMES, tuple)


@pytest.mark.parametrize("case", sorted(CASES))
def test_engine_training_and_hessian_give_the_reference_value(case):
    kind, reference = CASES[case]
    name = _name(case)
    model = _model()
    x, y = _data(kind)
    with torch.no_grad():
        want = float(reference(model(x), y))
    space = ParamSpace(model)
    for strategy in ("loop", "vmap"):
        for batch_size in (None, 7):  # 7: uneven data batches, summed by the engine
            ev = Evaluator(model, (x, y), loss=name, dtype=torch.float64, strategy=strategy, points_per_call=4,
                           batch_size=batch_size)
            got = ev.evaluate(space.vector(model)[None].repeat(4, 1))["loss"]
            np.testing.assert_allclose(got, want, rtol=1e-13, atol=0)
    assert evaluate_model(model, x, y, loss=name)["loss"] == pytest.approx(want, rel=1e-13)
    op = HessianOperator(model, (x, y), loss=name, dtype=torch.float64, batch_size=None)
    assert op.loss() == pytest.approx(want, rel=1e-13)
    # one function per name: the engine and the Hessian call the same object
    assert ev.loss.mean is op.loss_fn is resolve_loss(name, y).mean
    # the per-sample terms average to the batch mean (token losses: each sequence's own mean), and
    # (sum, count) gives it for any union of batches
    with torch.no_grad():
        z = model(x)
        terms = resolve_loss(name, y).per_sample(z, y)
        total, count = resolve_loss(name, y).sum_and_count(z, y)
    assert terms.shape == (N,) and float(total / count) == pytest.approx(want, rel=1e-13)
    if kind == "tokens":
        by_sequence = [float(reference(z[i : i + 1], y[i : i + 1])) for i in range(N)]
        np.testing.assert_allclose(terms.numpy(), by_sequence, rtol=1e-13)
        assert float(count) == float((y[:, 1:] if name == "causal_lm" else y).ne(-100).sum())
    else:
        assert float(terms.mean()) == pytest.approx(want, rel=1e-13) and float(count) == N


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_training_step_follows_the_reference_gradient(case):
    """One full-batch SGD step (no momentum): θ − lr ∇L(θ), with ∇L from the float64 reference."""
    kind, reference = CASES[case]
    model = _model()
    x, y = _data(kind)
    expected = copy.deepcopy(model)
    loss = reference(expected(x), y)
    grads = torch.autograd.grad(loss, list(expected.parameters()))
    lr = 0.1
    h = validate_hparams(dict(DEFAULT_HPARAMS, lr=lr, momentum=0.0, batch_size=N))
    out = train(model, (x, y), hparams=h, epochs=1, loss=_name(case))
    assert out.status == "done"
    for p, p0, g in zip(model.parameters(), expected.parameters(), grads, strict=True):
        torch.testing.assert_close(p.detach(), (p0 - lr * g).detach(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_hessian_of_every_name_is_autograds(case):
    """H from Hessian-vector products (forward-over-reverse) = torch.autograd.functional.hessian of
    the reference loss as a function of the flat parameters."""
    kind, reference = CASES[case]
    model = _model()
    x, y = _data(kind)
    space = ParamSpace(model)
    theta = space.vector(model).double()

    def f(flat):
        w, b = flat[: C * D_IN].reshape(C, D_IN), flat[C * D_IN :]
        return reference(x @ w.T + b, y)

    want = torch.autograd.functional.hessian(f, theta)
    got = HessianOperator(model, (x, y), loss=_name(case), dtype=torch.float64, batch_size=16).dense()
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def _write_case_module(folder: Path, kind: str) -> str:
    """A module whose ``data()`` is this file's ``_data(kind)`` (its source copied) and ``build()``
    is ``_model()``."""
    name = f"lvz_loss_case_{kind}_{abs(hash(str(folder)))}"
    (folder / f"{name}.py").write_text(
        "import torch\nfrom torch import nn\n\n"
        f"N, T, D_IN, C = {N}, {T}, {D_IN}, {C}\n\n"
        + inspect.getsource(_model) + "\n" + inspect.getsource(_data)
        + "\ndef build():\n    return _model()\n\n"
        f"def data():\n    return _data({kind!r})\n"
    )
    return name


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_cli_gives_the_reference_value(case, tmp_path, monkeypatch, capsys):
    from lossviz.cli import main
    from lossviz.io.h5 import read_surface

    kind, reference = CASES[case]
    monkeypatch.syspath_prepend(str(tmp_path))
    module = _write_case_module(tmp_path, kind)
    out = tmp_path / "s.h5"
    code = main(["surface", "--model", f"{module}:build", "--dataset", f"{module}:data", "--x=-1:1:3",
                 "--loss", _name(case), "--dtype", "float64", "--no-progress", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    x, y = _data(kind)
    with torch.no_grad():
        want = float(reference(_model()(x), y))
    got = read_surface(out)
    assert got.values["train_loss"][1] == pytest.approx(want, rel=1e-12)  # x = 0: the model itself
    assert got.meta["loss"] == ("softmax_mse" if case == "mse on labels" else resolve_loss(_name(case)).name)


def test_mse_on_class_labels_gives_a_finite_surface_equal_to_softmax_mse_by_hand():
    """Once all NaN through lossviz.surface: the engine now applies the CLI's rule."""
    from lossviz.landscape import compute_surface

    model = _model()
    x, y = _data("labels")
    space = ParamSpace(model)
    center = space.vector(model)
    d = torch.randn(space.numel, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    surf = compute_surface(model, (x, y), [d], x="-1:1:5", loss="mse", dtype=torch.float64, progress=False)
    z = surf.values["train_loss"]
    assert np.isfinite(z).all()
    probe = copy.deepcopy(model)
    for i, t in enumerate(surf.x):
        space.load_into(probe, center + float(t) * d)
        with torch.no_grad():
            assert z[i] == pytest.approx(float(_softmax_mse_by_hand(probe(x), y)), rel=1e-12)
    assert "train_acc" in surf.values and surf.meta["loss"] == "softmax_mse"


def test_mse_resolved_without_targets_applies_the_same_rule():
    model = _model()
    for kind in ("labels", "floats"):
        x, y = _data(kind)
        with torch.no_grad():
            z = model(x)
            late, early = resolve_loss("mse"), resolve_loss("mse", y)
            assert float(late.mean(z, y)) == float(early.mean(z, y))
            assert torch.equal(late.per_sample(z, y), early.per_sample(z, y))


def test_unknown_names_wrong_targets_and_non_scalars_are_refused():
    with pytest.raises(ValueError, match=r"unknown loss 'hinge'.*use one of"):
        resolve_loss("hinge")
    with pytest.raises(ValueError, match="needs integer class labels"):
        resolve_loss("cross_entropy", torch.randn(3, 2))
    custom = resolve_loss(lambda o, t: (o - t).abs().max())
    assert custom.name == "<lambda>" and custom.per_sample is None
    with pytest.raises(ValueError, match=r"metric 'm' returned \[2\], not a scalar"):
        scalar_value(torch.zeros(2), "metric 'm'")
    with pytest.raises(ValueError, match="returned str, not a tensor"):
        scalar_value("1")
    assert scalar_value(2).item() == 2.0 and scalar_value(torch.ones(1, 1)).shape == ()


def test_metrics_resolve_to_names_in_order():
    def mae(o, t):
        return (o - t).abs().mean()

    assert resolve_metrics(("loss", "acc", mae), True) == (["loss", "acc", "mae"], [("mae", mae)])
    assert resolve_metrics("acc", False) == (["loss"], [])
    assert resolve_metrics({"err": mae}, True)[0] == ["loss", "err"]
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        resolve_metrics(("f1",), True)
    with pytest.raises(ValueError, match="used twice"):
        resolve_metrics(("acc", ("acc", mae)), True)
    with pytest.raises(TypeError, match="not callable"):
        resolve_metrics((("m", 3),), True)


def test_the_loss_names_need_no_torch():
    """The CLI's --help lists LOSS_NAMES: the module runs without importing torch."""
    path = Path(importlib.util.find_spec("lossviz.losses").origin)
    code = ("import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('losses_alone', {str(path)!r})\n"
            "m = sys.modules['losses_alone'] = importlib.util.module_from_spec(spec)\n"
            "spec.loader.exec_module(m)\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "print(m.LOSS_NAMES)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "cross_entropy" in done.stdout


# ------------------------------------------------------------------------------------ other tasks
def _metric_values(name: str, metrics, x, y, batch: int):
    """The engine's table over data batches of ``batch`` samples (sums and counts accumulated)."""
    from lossviz.losses import batch_totals, finish_totals, metric_table

    model = _model()
    loss = resolve_loss(name, y)
    with torch.no_grad():
        table = metric_table(metrics, loss, model(x[:2]), y[:2])
        totals = sum(torch.stack(batch_totals(table, model(x[s : s + batch]), y[s : s + batch]))
                     for s in range(0, len(x), batch))
    return dict(zip([m.name for m in table], finish_totals(table, totals.numpy()[None])[0], strict=True))


def test_accuracy_is_left_out_where_it_means_nothing():
    """Float targets (regression): "acc" is dropped for mse, l1 and huber, in the engine and in training."""
    for name in ("mse", "l1", "huber"):
        x, y = _data("floats")
        surf_names = Evaluator(_model(), (x, y), loss=name, metrics=("loss", "acc"), dtype=torch.float64).metric_names
        assert surf_names == ["loss"]
        assert set(evaluate_model(_model(), x, y, loss=name)) == {"loss"}
    x, y = _data("labels")
    assert Evaluator(_model(), (x, y), loss="cross_entropy", dtype=torch.float64).metric_names == ["loss", "acc"]


def test_multi_label_accuracy_is_the_share_of_correct_entries():
    x, y = _data("multilabel")
    with torch.no_grad():
        z = _model()(x)
    want = 100.0 * float(((z > 0) == (y > 0.5)).double().mean())
    got = _metric_values("bce", ("loss", "acc"), x, y, batch=7)
    assert got["acc"] == pytest.approx(want, rel=1e-13)
    assert got["loss"] == pytest.approx(float(F.binary_cross_entropy_with_logits(z, y)), rel=1e-13)
    ev = Evaluator(_model(), (x, y), loss="bce", dtype=torch.float64, batch_size=7, strategy="loop")
    assert ev.evaluate_one(ParamSpace(_model()).vector(_model()))["acc"] == pytest.approx(want, rel=1e-13)


@pytest.mark.parametrize("name", ["token_cross_entropy", "causal_lm"])
def test_token_accuracy_and_perplexity_count_tokens_over_all_batches(name):
    """Per-token (next-token for causal_lm) accuracy over the non -100 labels of all the data, and
    perplexity = exp of the whole data's mean token loss: batches of 7 sequences counting different
    numbers of tokens, against the whole data at once."""
    x, y = _data("tokens")
    with torch.no_grad():
        z = _model()(x)
    if name == "causal_lm":
        z, y_cmp = z[:, :-1], y[:, 1:]
    else:
        y_cmp = y
    keep = y_cmp != -100
    want_acc = 100.0 * float(((z.argmax(-1) == y_cmp) & keep).sum()) / float(keep.sum())
    want_loss = float(F.cross_entropy(z.flatten(0, 1), y_cmp.flatten(), ignore_index=-100))
    got = _metric_values(name, ("loss", "acc", "perplexity"), x, y, batch=7)
    assert got["acc"] == pytest.approx(want_acc, rel=1e-13)
    assert got["loss"] == pytest.approx(want_loss, rel=1e-13)
    assert got["perplexity"] == pytest.approx(float(np.exp(want_loss)), rel=1e-13)


def test_losses_read_hugging_face_outputs_and_mapping_batches():
    """The same name on ``(outputs, y)`` and on ``(ModelOutput, {"labels": y, ...})``; causal_lm falls
    back on input_ids, and on the outputs' own .loss when no targets are given."""
    from transformers.modeling_outputs import CausalLMOutput, SequenceClassifierOutput

    x, y = _data("labels")
    with torch.no_grad():
        z = _model()(x)
    batch = {"x": x, "labels": y}
    for name in ("cross_entropy", "mse", "nll"):
        plain = resolve_loss(name, y).mean(z, y)
        assert float(resolve_loss(name, batch).mean(SequenceClassifierOutput(logits=z), batch)) == float(plain)
    xt, yt = _data("tokens")
    with torch.no_grad():
        zt = _model()(xt)
    ids = yt.clamp(min=0)
    ref = _causal_reference(zt, ids)
    out = CausalLMOutput(logits=zt, loss=torch.tensor(1.25, dtype=torch.float64))
    by_ids = {"input_ids": ids}
    assert float(resolve_loss("causal_lm", by_ids).mean(out, by_ids)) == pytest.approx(float(ref), rel=1e-13)
    assert float(resolve_loss("causal_lm").mean(out, None)) == 1.25  # no labels: the model's own loss


def test_missing_labels_non_scalar_losses_and_misused_metrics_are_named_before_any_work():
    with pytest.raises(ValueError, match=r"loss 'causal_lm' needs labels but the batch has keys \['attention_mask'\]"
                                         r".*'labels' or 'input_ids'.*outputs.loss"):
        resolve_loss("causal_lm", {"attention_mask": torch.ones(2, 3)})
    with pytest.raises(ValueError, match=r"loss 'cross_entropy' needs labels but the batch has keys \['input_ids'\]"):
        resolve_loss("cross_entropy", {"input_ids": torch.ones(2, 3, dtype=torch.long)})
    with pytest.raises(ValueError, match=r"needs token labels of shape \(batch, tokens\)"):
        resolve_loss("token_cross_entropy", torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="needs integer class labels"):
        resolve_loss("causal_lm", torch.randn(4, 5))
    with pytest.raises(ValueError, match=r"'perplexity' is exp of a mean negative log-likelihood, but loss='mse'"):
        resolve_metrics(("loss", "perplexity"), False, "mse")
    x, y = _data("floats")
    with pytest.raises(ValueError, match=r"the loss returned \[2, 4\], not a scalar"):  # the 2-sample probe
        Evaluator(_model(), (x, y), loss=lambda o, t: (o - t) ** 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"returned \[40, 4\], not a scalar"):
        evaluate_model(_model(), x, y, loss=lambda o, t: (o - t) ** 2)


def test_perplexity_reuses_the_losss_totals_also_after_pickling():
    """batch_totals computes the loss once for "loss" and "perplexity", also in a table that travelled
    to a worker pickled."""
    import pickle

    from lossviz.losses import Loss, batch_totals, metric_table

    x, y = _data("tokens")
    with torch.no_grad():
        z = _model()(x)
    loss = resolve_loss("token_cross_entropy", y)
    calls = []

    def counted(outputs, targets):
        calls.append(1)
        return loss.sum_and_count(outputs, targets)

    table = metric_table(("loss", "perplexity"), Loss(loss.name, loss.mean, loss.per_sample, counted), z, y)
    parts = batch_totals(table, z, y)
    assert len(calls) == 1 and torch.equal(parts[0], parts[2]) and torch.equal(parts[1], parts[3])
    shipped = pickle.loads(pickle.dumps(metric_table(("loss", "perplexity"), loss, z, y)))
    assert shipped[0].total is shipped[1].total
