"""The zoo's language model and corpus end to end: TinyGPT and tinytext through the losses, the engine
(surface, interpolation), the Hessian and a Session.

Ground truth: ``F.cross_entropy`` in float64 on the flattened tokens, a plain loop over the data, the
dense Hessian of ``torch.autograd.functional.hessian``, numpy's SVD of the checkpoints, and analytic
properties (causality: a token changes no logits before it).
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

import lossviz
from lossviz import hessian as H
from lossviz.losses import resolve_loss
from lossviz.params import ParamSpace
from lossviz.zoo import get_data, get_model
from lossviz.zoo.language import (
    KINDS,
    VOCAB,
    TinyGPT,
    decode,
    encode,
    make_corpus,
    tinytext,
    tinytext_kinds,
)

F64 = torch.float64
SMALL = {"n_layer": 1, "d_model": 16, "n_head": 2, "block_size": 12, "dropout": 0.1}


def _small_gpt(seed: int = 0, **kw) -> TinyGPT:
    torch.manual_seed(seed)
    return get_model("gpt", **{**SMALL, **kw})


def _pairs(n_sentences: int = 40, block_size: int = 12, masked: bool = False):
    """(x, y) next-token pairs of the corpus; ``masked``: about a quarter of the labels -100."""
    train, _ = get_data("tinytext", n_sentences=n_sentences, block_size=block_size)
    x, y = (t.clone() for t in train.tensors)
    if masked:
        y[torch.rand(y.shape, generator=torch.Generator().manual_seed(3)) < 0.25] = -100
    return x, y


def _reference(model, x, y) -> tuple[float, float]:
    """(mean token cross-entropy, token accuracy %) over all the data at once, float64, labels -100
    not counted: the plain computation the engine must reproduce."""
    m = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        z = m(x)
    loss = F.cross_entropy(z.flatten(0, 1), y.flatten(), ignore_index=-100)
    keep = y != -100
    acc = 100.0 * float(((z.argmax(-1) == y) & keep).sum()) / float(keep.sum())
    return float(loss), acc


# ------------------------------------------------------------------------------------ corpus
def test_the_corpus_is_generated_deterministically_from_its_grammar():
    text = make_corpus(300, seed=0)
    assert text == make_corpus(300, seed=0) and text != make_corpus(300, seed=1)
    assert set(text) <= set(VOCAB) and decode(encode(text)) == text
    sentences = text.replace("?", "?|").replace(".", ".|").split("|")[:-1]
    assert len(sentences) == 300
    assert any(s.strip().startswith("does ") for s in sentences) and any(" does not " in s for s in sentences)
    with pytest.raises(ValueError, match="'Z' is not in the corpus vocabulary"):
        encode("Zebra")


def test_pairs_and_dict_windows_hold_the_same_text_shifted_by_one():
    pairs, pairs_test = tinytext(n_sentences=50, block_size=10)
    dicts, dicts_test = tinytext(n_sentences=50, block_size=10, form="dict")
    x, y = pairs.tensors
    assert x.shape == y.shape and x.shape[1] == 10 and len(dicts) == len(x) and len(dicts_test) == len(pairs_test)
    assert torch.equal(x[:, 1:], y[:, :-1])  # y is x moved on by one token
    for i in (0, len(x) - 1):
        w = dicts[i]["input_ids"]
        assert torch.equal(w, dicts[i]["labels"]) and torch.equal(w[:-1], x[i]) and torch.equal(w[1:], y[i])
    # the test windows come after the training windows in the text
    assert decode(torch.cat([pairs_test.tensors[0][0], pairs_test.tensors[1][0][-1:]])) in make_corpus(50)


def test_tinytext_kinds_labels_are_the_sentences_kinds():
    train, test = tinytext_kinds(n=60, length=48)
    assert len(train) == 60 and len(test) == 15
    for i in range(len(train)):
        item = train[i]
        n = int(item["attention_mask"].sum())
        text = decode(item["input_ids"][:n])
        assert item["attention_mask"][:n].all() and set(decode(item["input_ids"][n:])) <= {"_"}
        kind = KINDS[int(item["labels"])]
        assert (kind == "question") == text.endswith("?")
        assert (kind == "negation") == (" does not " in text)


# ------------------------------------------------------------------------------------ model
def test_tinygpt_is_causal_sized_and_both_attentions_agree():
    torch.manual_seed(0)
    n_params = sum(p.numel() for p in TinyGPT().parameters())
    assert 100_000 <= n_params <= 1_000_000  # "a few hundred thousand"
    model = _small_gpt().eval()
    x, _ = _pairs()
    with torch.no_grad():
        z = model(x[:4])
        changed = x[:4].clone()
        changed[:, 6] = (changed[:, 6] + 1) % len(VOCAB)
        z2 = model(changed)
    assert z.shape == (4, 12, len(VOCAB))
    torch.testing.assert_close(z2[:, :6], z[:, :6], rtol=0, atol=1e-6)  # no token sees the future
    assert (z2[:, 6:] - z[:, 6:]).abs().amax() > 1e-3
    sdpa = _small_gpt(attention="sdpa").eval()
    sdpa.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(sdpa(x[:4]), z, rtol=1e-5, atol=1e-5)
        model.train()
        assert not torch.equal(model(x[:4]), z)  # dropout in train mode
        model.eval()
        assert torch.equal(model(x[:4]), z)
    with pytest.raises(ValueError, match="exceed block_size=12"):
        model(torch.zeros(1, 13, dtype=torch.long))


def test_causal_lm_on_dict_batches_equals_token_cross_entropy_on_pairs():
    """One text, two forms: ``causal_lm`` shifts ``{"input_ids": w, "labels": w}`` inside the loss;
    the pairs are shifted already. By causality the logits of ``w[:-1]`` are the same in both."""
    model = _small_gpt(block_size=13).double().eval()
    windows, _ = tinytext(n_sentences=40, block_size=12, form="dict")
    w = torch.stack([windows[i]["input_ids"] for i in range(len(windows))])
    w_labels = w.clone()
    w_labels[:, 3] = -100  # a token not counted, in both forms
    batch = {"input_ids": w, "labels": w_labels}
    with torch.no_grad():
        from_dict = resolve_loss("causal_lm", batch).mean(model(**batch), batch)
        x, y = w[:, :-1], w_labels[:, 1:]
        z = model(x)
        from_pairs = resolve_loss("token_cross_entropy", y).mean(z, y)
    want = F.cross_entropy(z.flatten(0, 1), y.flatten(), ignore_index=-100)
    assert float(from_dict) == pytest.approx(float(want), rel=1e-12)
    assert float(from_pairs) == pytest.approx(float(want), rel=1e-12)


# ------------------------------------------------------------------------------------ engine
@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_interpolation_between_two_gpts_gives_the_float64_loop_values(strategy):
    """loss, token accuracy and perplexity along θ_A + α (θ_B − θ_A), in data batches of 7 sequences
    whose counted tokens differ (labels -100): each value is the whole data's, not a mean of batches."""
    a, b = _small_gpt(0).double(), _small_gpt(1).double()
    x, y = _pairs(masked=True)
    line = lossviz.interpolate(a, b, (x, y), x="0:1:3", kind="weights", loss="token_cross_entropy",
                               metrics=("loss", "acc", "perplexity"), dtype=F64, strategy=strategy,
                               batch_size=7, points_per_call=3, progress=False)
    space = ParamSpace(a)
    va, vb = space.vector(a), space.vector(b)
    probe = copy.deepcopy(a)
    for i, alpha in enumerate(line.x):
        space.load_into(probe, va + float(alpha) * (vb - va))
        loss, acc = _reference(probe, x, y)
        assert line.values["train_loss"][i] == pytest.approx(loss, rel=1e-12)
        assert line.values["train_acc"][i] == pytest.approx(acc, rel=1e-12)
        assert line.values["train_perplexity"][i] == pytest.approx(np.exp(loss), rel=1e-12)
    # a mean of per-batch perplexities (or losses) is another number: the check above can fail
    with torch.no_grad():
        z = a(x)
    per_batch = [F.cross_entropy(z[s : s + 7].flatten(0, 1), y[s : s + 7].flatten(), ignore_index=-100)
                 for s in range(0, len(x), 7)]
    sizes = [len(x[s : s + 7]) for s in range(0, len(x), 7)]
    batch_mean_ppl = sum(n * float(torch.exp(v)) for n, v in zip(sizes, per_batch, strict=True)) / len(x)
    assert abs(batch_mean_ppl - line.values["train_perplexity"][0]) > 1e-3


def test_a_gpt_surface_runs_under_vmap_and_the_loop_alike():
    model = _small_gpt().eval()
    x, y = _pairs()
    kw = dict(x="-1:1:3", y="-1:1:3", loss="token_cross_entropy", metrics=("loss", "acc", "perplexity"),
              progress=False, batch_size=32, points_per_call=9)
    loop = lossviz.surface(model, (x, y), "random", strategy="loop", **kw)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vm = lossviz.surface(model, (x, y), "random", strategy="vmap", **kw)
    assert not [w for w in caught if "batching rule" in str(w.message)]  # manual attention: batched by vmap
    assert vm.meta["strategy"] == "vmap" and loop.meta["strategy"] == "loop"
    for name in ("train_loss", "train_acc", "train_perplexity"):
        assert np.isfinite(loop.values[name]).all()
        np.testing.assert_allclose(vm.values[name], loop.values[name], rtol=2e-5, atol=1e-4)
    loss, acc = _reference(model, x, y)
    assert loop.values["train_loss"][1, 1] == pytest.approx(loss, rel=1e-5)  # the centre: the model itself
    assert loop.values["train_acc"][1, 1] == pytest.approx(acc, abs=1e-3)
    assert np.ptp(loop.values["train_loss"]) > 1e-3  # the points are not all the centre


# ------------------------------------------------------------------------------------ Hessian
@pytest.mark.parametrize("loss", ["token_cross_entropy", "causal_lm"])
def test_hessian_top_eigenvalue_of_a_tiny_gpt_is_the_dense_one(loss):
    """A GPT of ~600 weights: Lanczos top-2 against eigvalsh of the dense Hessian; ``causal_lm`` on
    (w, w) pairs is the same function of θ as ``token_cross_entropy`` on (w[:-1], w[1:])."""
    model = _small_gpt(n_layer=1, d_model=4, n_head=1, block_size=9, dropout=0.0).double().eval()
    x, y = _pairs(n_sentences=12, block_size=8)
    x, y = x[:6], y[:6]
    data = (x, y) if loss == "token_cross_entropy" else (torch.cat([x, y[:, -1:]], 1),) * 2
    space = ParamSpace(model)

    def f(theta: torch.Tensor) -> torch.Tensor:
        z = functional_call(model, space.unflatten(theta), (x,))
        return F.cross_entropy(z.flatten(0, 1), y.flatten())

    ev = torch.linalg.eigvalsh(torch.autograd.functional.hessian(f, space.vector(model)))
    top = H.top_eigenpairs(model, data, 2, loss, dtype=F64, tol=1e-10)
    np.testing.assert_allclose(top.eigenvalues, ev.flip(0)[:2].numpy(), rtol=1e-7)


# ------------------------------------------------------------------------------------ Session
def test_a_session_trains_the_gpt_and_projects_its_trajectory(tmp_path):
    from lossviz.session import Session

    s = Session(tmp_path / "lm", model="gpt", model_kwargs=SMALL, data="tinytext",
                data_kwargs={"n_sentences": 60, "block_size": 12}, loss="token_cross_entropy",
                hparams={"lr": 0.01, "batch_size": 16, "optimizer": "adam"})
    try:
        job = s.train(epochs=3)
        job.wait()
        assert job.state == "done", job.error
        cks = s.checkpoints()
        assert len(cks) == 4
        assert cks[-1].metrics["train_loss"] < 0.8 * cks[0].metrics["train_loss"]
        assert cks[-1].metrics["train_acc"] > cks[0].metrics["train_acc"]
        # the stored metric is the whole split's token mean
        model = s.model(cks[-1].id)
        train, _ = get_data("tinytext", n_sentences=60, block_size=12)
        loss, acc = _reference(model, *train.tensors)
        assert cks[-1].metrics["train_loss"] == pytest.approx(loss, rel=1e-5)
        assert cks[-1].metrics["train_acc"] == pytest.approx(acc, abs=1e-3)
        # PCA of the trajectory against numpy's SVD of the centred checkpoints
        proj = s.project(method="pca")
        vecs = torch.stack([s.vector(c.id) for c in cks]).double().numpy()
        centred = vecs - vecs.mean(0)
        sv = np.linalg.svd(centred, compute_uv=False)
        np.testing.assert_allclose(proj.meta["explained_variance_ratio"], (sv**2 / (sv**2).sum())[:2], rtol=1e-4)
        surf = s.surface(cks[-1].id, directions="pca", x="-1:1:3", y="-1:1:3")
        assert np.isfinite(surf.values["train_loss"]).all() and "train_acc" in surf.values
        # a branch from epoch 1 with a lower learning rate
        branch = s.train(from_=cks[1].id, epochs=1, lr=0.001)
        branch.wait()
        assert branch.state == "done", branch.error
        assert len(s.branches()) == 2 and branch.result[-1].hparams["lr"] == pytest.approx(0.001)
    finally:
        s.close()


def test_cross_entropy_on_token_logits_names_the_token_losses_before_any_work():
    """F.cross_entropy reads (B, T, V) as (B, classes=T, V): the probe refuses it and names the fix."""
    model = _small_gpt()
    x, y = _pairs()
    with pytest.raises(ValueError, match=r"per-token logits \(batch, tokens, vocabulary\) use "
                                         r"loss=token_cross_entropy"):
        lossviz.surface(model, (x, y), "random", x="-1:1:3", loss="cross_entropy", progress=False)


def test_the_cli_probe_names_the_token_losses_in_its_spelling():
    from lossviz.data import CLI_SPELLING, probe_model_data

    x, y = _pairs()
    with pytest.raises(ValueError, match=r"use --loss token_cross_entropy, or --loss causal_lm"):
        probe_model_data(_small_gpt(), (x, y), "cross_entropy", spelling=CLI_SPELLING)
    probe_model_data(_small_gpt(), (x, y), "token_cross_entropy", spelling=CLI_SPELLING)  # fits
