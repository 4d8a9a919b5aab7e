"""Hugging Face models built from a config (lossviz.zoo.hf) with mapping batches ``model(**batch)``.

Ground truth: the models' own ``outputs.loss`` (Hugging Face's shifted next-token loss for GPT-2,
cross-entropy for BERT), ``F.cross_entropy`` in float64, autograd's gradient, a plain loop over
points (for vmap) and scipy's ARPACK on torch.func Hessian-vector products (for the Hessian).

The "token pairs" tests run lossviz's engine, Hessian and Session with ``(ids, ids)`` pairs (the model called
as ``model(ids)``, returning a ModelOutput). The tests marked ``# engine: mapping batches`` run them on
datasets of dicts; they need the engine to take mapping batches (lossviz.batches' calling rule everywhere).
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap
from torch.utils.data import DataLoader, default_collate

import lossviz
from lossviz.batches import call_model, targets_of
from lossviz.hessian.operator import functional_loss
from lossviz.losses import resolve_loss
from lossviz.params import ParamSpace
from lossviz.zoo import get_data, get_model

F64 = torch.float64


def _gpt2(seed: int = 0, **kw):
    return get_model("hf_gpt2", seed=seed, **kw).eval()


def _windows(n_sentences: int = 30, block_size: int = 16):
    train, test = get_data("tinytext", n_sentences=n_sentences, block_size=block_size, form="dict")
    return train, test


def _whole(dataset) -> dict:
    return default_collate([dataset[i] for i in range(len(dataset))])


def _hf_loss(model, batch) -> float:
    """The model's own loss on the whole batch (float64 copy)."""
    m = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        return float(m(**batch).loss)


# ------------------------------------------------------------------------------------ engine-free
def test_causal_lm_is_hugging_faces_own_gpt2_loss():
    model = _gpt2().double()
    batch = _whole(_windows()[0])
    batch["labels"] = batch["labels"].clone()
    batch["labels"][:, ::5] = -100  # tokens not counted, by both
    with torch.no_grad():
        out = call_model(model, batch)
        ours = resolve_loss("causal_lm", batch).mean(out, targets_of(batch))
        z, y = out.logits[:, :-1], batch["labels"][:, 1:]
        ref = F.cross_entropy(z.flatten(0, 1), y.flatten(), ignore_index=-100)
    assert float(ours) == pytest.approx(float(ref), rel=1e-12)
    assert float(ours) == pytest.approx(float(out.loss), rel=1e-6)  # HF's ForCausalLMLoss upcasts to float32 only


def test_cross_entropy_on_a_bert_batch_is_berts_own_loss():
    model = get_model("hf_bert").double().eval()
    train, _ = get_data("tinytext_kinds", n=24, length=40)
    batch = _whole(train)
    with torch.no_grad():
        out = call_model(model, batch)
        ours = resolve_loss("cross_entropy", batch).mean(out, batch)
    assert out.logits.shape == (24, 3)
    assert float(ours) == pytest.approx(float(out.loss), rel=1e-12)


def test_the_hessians_functional_loss_on_a_mapping_batch_has_autograds_gradient():
    """lossviz.hessian's f(θ, batch) on ``model(**batch)``: its value is the model's loss and its
    gradient autograd's on the model itself."""
    model = _gpt2().double()
    batch = _whole(_windows(12)[0])
    f = functional_loss(model, resolve_loss("causal_lm", batch).mean)
    space = ParamSpace(model)
    theta = space.vector(model).detach().requires_grad_(True)
    value = f(theta, batch)
    (g,) = torch.autograd.grad(value, theta)
    model.zero_grad()
    out = model(**batch)
    out.loss.backward()
    want = torch.cat([p.grad.reshape(-1) for _, p in model.named_parameters()])
    assert float(value) == pytest.approx(float(out.loss.detach()), rel=1e-6)  # HF's loss: in float32
    torch.testing.assert_close(g, want, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("name", ["hf_gpt2", "hf_bert"])
def test_vmap_over_points_agrees_with_the_loop_for_eager_attention(name):
    model = get_model(name).eval()
    data = _windows(12)[0] if name == "hf_gpt2" else get_data("tinytext_kinds", n=8, length=32)[0]
    batch = _whole(data)
    params = {k: v.detach() for k, v in model.named_parameters()}
    g = torch.Generator().manual_seed(0)
    stacked = {k: torch.stack([v + 0.05 * i * torch.randn(v.shape, generator=g) for i in range(3)])
               for k, v in params.items()}

    def logits(p):
        return functional_call(model, p, args=(), kwargs=batch).logits

    with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batched = vmap(logits)(stacked)
        looped = torch.stack([logits({k: v[i] for k, v in stacked.items()}) for i in range(3)])
    assert not [w for w in caught if "batching rule" in str(w.message)]  # eager attention: no per-example fallback
    torch.testing.assert_close(batched, looped, rtol=1e-5, atol=1e-5)
    assert (looped[1] - looped[0]).abs().max() > 1e-3  # the points differ


# ------------------------------------------------------------------------------------ engine: token pairs
def _ids(dataset) -> torch.Tensor:
    return torch.stack([dataset[i]["input_ids"] for i in range(len(dataset))])


def test_gpt2_surface_on_token_pairs_under_vmap_and_the_loop_is_hugging_faces_loss():
    """(ids, ids) pairs: the model is called as model(ids) and returns a ModelOutput; causal_lm shifts."""
    model = _gpt2()
    w = _ids(_windows()[0])
    kw = dict(x="-1:1:3", loss="causal_lm", metrics=("loss", "acc", "perplexity"), progress=False, points_per_call=3)
    loop = lossviz.surface(model, (w, w), "random", strategy="loop", **kw)
    vm = lossviz.surface(model, (w, w), "random", strategy="vmap", **kw)
    for name in ("train_loss", "train_acc", "train_perplexity"):
        np.testing.assert_allclose(vm.values[name], loop.values[name], rtol=2e-5, atol=1e-4)
    assert loop.values["train_loss"][1] == pytest.approx(_hf_loss(model, {"input_ids": w, "labels": w}), rel=1e-5)
    assert np.allclose(loop.values["train_perplexity"], np.exp(loop.values["train_loss"]), rtol=1e-9)


def _tiny_gpt2_top(batch: dict) -> tuple:
    """A tiny GPT-2 and the top eigenvalue of its loss's Hessian, by an independent method: scipy's
    ARPACK (eigsh) on Hessian-vector products of torch.func (forward-over-reverse), none of lossviz's
    solvers."""
    from scipy.sparse.linalg import LinearOperator, eigsh
    from torch.func import grad, jvp

    model = _gpt2(n_embd=8, n_layer=1, n_head=1, n_positions=9, dropout=0.0).double()
    space = ParamSpace(model)
    f = functional_loss(model, resolve_loss("causal_lm").mean)
    theta = space.vector(model).detach()

    def hvp(v: np.ndarray) -> np.ndarray:
        tangent = torch.from_numpy(np.ascontiguousarray(v).reshape(-1)).to(F64)
        return jvp(grad(lambda t: f(t, batch)), (theta,), (tangent,))[1].numpy()

    op = LinearOperator((space.numel, space.numel), matvec=hvp, dtype=np.float64)
    return model, float(eigsh(op, k=1, which="LA", tol=1e-12, return_eigenvectors=False)[0])


def test_gpt2_hessian_top_eigenvalue_on_token_pairs_is_arpacks():
    from lossviz import hessian as H

    w = _ids(_windows(6, 8)[0])
    model, want = _tiny_gpt2_top({"input_ids": w, "labels": w})
    top = H.top_eigenpairs(model, (w, w), 1, "causal_lm", dtype=F64, tol=1e-10)
    assert top.eigenvalues[0] == pytest.approx(want, rel=1e-6)


def test_a_session_trains_gpt2_on_token_pairs_branches_and_projects(tmp_path):
    from torch.utils.data import TensorDataset

    from lossviz.session import Session

    train, test = _windows()
    a, b = _ids(train), _ids(test)
    s = Session(tmp_path / "hf_pairs", model=lambda: get_model("hf_gpt2"), loss="causal_lm",
                data=(TensorDataset(a, a), TensorDataset(b, b)),
                hparams={"lr": 0.01, "batch_size": 8, "optimizer": "adam"})
    try:
        job = s.train(epochs=2)
        job.wait()
        assert job.state == "done", job.error
        cks = s.checkpoints()
        assert cks[-1].metrics["train_loss"] < 0.95 * cks[0].metrics["train_loss"]
        assert cks[-1].metrics["train_loss"] == pytest.approx(
            _hf_loss(s.model(cks[-1].id), {"input_ids": a, "labels": a}), rel=1e-5)
        assert "train_acc" in cks[-1].metrics  # next-token accuracy
        proj = s.project(method="pca")
        vecs = torch.stack([s.vector(c.id) for c in cks]).double().numpy()
        sv = np.linalg.svd(vecs - vecs.mean(0), compute_uv=False)
        np.testing.assert_allclose(proj.meta["explained_variance_ratio"], (sv**2 / (sv**2).sum())[:2], rtol=1e-4)
        branch = s.train(from_=cks[1].id, epochs=1, lr=0.001)
        branch.wait()
        assert branch.state == "done" and len(s.branches()) == 2
    finally:
        s.close()


# ------------------------------------------------------------------------------------ engine: mapping batches
@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_gpt2_interpolation_on_dict_batches_gives_hugging_faces_loss(strategy):
    # engine: mapping batches
    a, b = _gpt2(0).double(), _gpt2(1).double()
    train, _ = _windows()
    line = lossviz.interpolate(a, b, train, x="0:1:3", kind="weights", loss="causal_lm",
                               metrics=("loss", "acc", "perplexity"), dtype=F64, strategy=strategy,
                               batch_size=8, progress=False)
    batch = _whole(train)
    space = ParamSpace(a)
    va, vb = space.vector(a), space.vector(b)
    probe = copy.deepcopy(a)
    for i, alpha in enumerate(line.x):
        space.load_into(probe, va + float(alpha) * (vb - va))
        want = _hf_loss(probe, batch)
        assert line.values["train_loss"][i] == pytest.approx(want, rel=1e-6)  # HF's own loss is float32
        assert line.values["train_perplexity"][i] == pytest.approx(np.exp(want), rel=1e-6)
        assert 0 <= line.values["train_acc"][i] <= 100


def test_gpt2_surface_from_a_dataloader_of_dicts():
    # engine: mapping batches
    model = _gpt2()
    train, test = _windows()
    loader = DataLoader(train, batch_size=8, shuffle=False)
    surf = lossviz.surface(model, loader, "random", x="-1:1:3", y="-1:1:3", loss="causal_lm",
                           metrics=("loss", "acc", "perplexity"), test_data=test, progress=False)
    assert np.isfinite(surf.values["train_loss"]).all() and np.isfinite(surf.values["test_perplexity"]).all()
    assert surf.values["train_loss"][1, 1] == pytest.approx(_hf_loss(model, _whole(train)), rel=1e-5)


def test_bert_surface_on_dict_batches_with_accuracy():
    # engine: mapping batches
    model = get_model("hf_bert").eval()
    train, _ = get_data("tinytext_kinds", n=24, length=40)
    surf = lossviz.surface(model, train, "random", x="-1:1:3", loss="cross_entropy", progress=False)
    batch = _whole(train)
    with torch.no_grad():
        out = model(**batch)
    acc = 100.0 * float((out.logits.argmax(-1) == batch["labels"]).double().mean())
    assert surf.values["train_loss"][1] == pytest.approx(float(out.loss), rel=1e-5)
    assert surf.values["train_acc"][1] == pytest.approx(acc, abs=1e-6)


def test_gpt2_hessian_top_eigenvalue_on_dict_batches():
    # engine: mapping batches (lossviz.hessian's data)
    from lossviz import hessian as H

    train, _ = _windows(6, 8)
    model, want = _tiny_gpt2_top(_whole(train))
    top = H.top_eigenpairs(model, train, 1, "causal_lm", dtype=F64, tol=1e-10)
    assert top.eigenvalues[0] == pytest.approx(want, rel=1e-6)


def test_a_session_trains_gpt2_on_dict_batches_and_projects_its_trajectory(tmp_path):
    # engine: mapping batches (training and the Session)
    from lossviz.session import Session

    s = Session(tmp_path / "hf", model=lambda: get_model("hf_gpt2"), data=_windows(), loss="causal_lm",
                hparams={"lr": 0.01, "batch_size": 8, "optimizer": "adam"})
    try:
        job = s.train(epochs=2)
        job.wait()
        assert job.state == "done", job.error
        cks = s.checkpoints()
        assert cks[-1].metrics["train_loss"] < cks[0].metrics["train_loss"]
        proj = s.project(method="pca")
        assert len(proj.meta["explained_variance_ratio"]) == 2
        branch = s.train(from_=cks[1].id, epochs=1, lr=0.001)
        branch.wait()
        assert branch.state == "done" and len(s.branches()) == 2
    finally:
        s.close()
