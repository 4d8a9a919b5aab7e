"""Batches of any structure and streamed data through the engine, against a plain float64 loop."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

import lossviz
from lossviz.batches import call_model, targets_of
from lossviz.evaluate import Evaluator, forget_plans
from lossviz.params import ParamSpace


# ---------------------------------------------------------------------------------------- models and data
class DictNet(nn.Module):
    """Called as ``model(**batch)``: takes ``features`` and ``mask`` (and ignores ``labels``)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(4, 3)

    def forward(self, features, mask, labels=None):
        return self.lin(features * mask[:, None])


class PairNet(nn.Module):
    """Called as ``model(a, b)`` on a tuple of two inputs."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.a = nn.Linear(3, 2)
        self.b = nn.Linear(2, 2)

    def forward(self, a, b):
        return self.a(a) + self.b(b)


class Branchy(nn.Module):
    """Data-dependent python control flow: vmap cannot run it."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        out = self.lin(x)
        if out.sum() > 0:
            return out * 2
        return out


class DictSamples(Dataset):
    def __init__(self, n=24):
        g = torch.Generator().manual_seed(3)
        self.features = torch.randn(n, 4, generator=g)
        self.mask = (torch.rand(n, generator=g) > 0.2).float()
        self.labels = torch.randint(0, 3, (n,), generator=g)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"features": self.features[i], "mask": self.mask[i], "labels": self.labels[i]}


def dict_loss(outputs, batch):
    return F.cross_entropy(outputs, batch["labels"])


def pair_data(n=20):
    g = torch.Generator().manual_seed(4)
    return (torch.randn(n, 3, generator=g), torch.randn(n, 2, generator=g)), torch.randint(0, 2, (n,), generator=g)


def reference(model, batches, loss, surface, forward=None):
    """The plain loop in float64: every grid point's mean loss, Σ_b n_b ℓ_b / N."""
    m = copy.deepcopy(model).double().eval()
    space = ParamSpace(m, "weights")
    center = space.vector(m).double()
    dirs = surface.directions.stacked().double()
    batches = [lossviz.batches.to_device(b, None, torch.float64) for b in batches]
    coords = surface.coords()
    out = np.empty(len(coords))
    for k, c in enumerate(coords):
        space.load_into(m, center + torch.as_tensor(c) @ dirs)
        total, n = 0.0, 0
        with torch.no_grad():
            for b in batches:
                size = lossviz.batches.batch_size(b)
                total += float(loss(call_model(m, b, forward), targets_of(b))) * size
                n += size
        out[k] = total / n
    return out.reshape(surface.shape)


def surface(model, data, **kw):
    kw.setdefault("x", "-1:1:3")
    kw.setdefault("y", "-1:1:3")
    return lossviz.surface(model, data, progress=False, dtype=torch.float64, seed=0, **kw)


# ---------------------------------------------------------------------------------------- any structure
@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_dataset_of_dicts_matches_the_loop(strategy):
    ds = DictSamples()
    s = surface(DictNet(), ds, loss=dict_loss, metrics=("loss",), strategy=strategy)
    batch = torch.utils.data.default_collate([ds[i] for i in range(len(ds))])
    np.testing.assert_allclose(s.values["train_loss"], reference(DictNet(), [batch], dict_loss, s), rtol=1e-10)
    assert s.meta["strategy"] == strategy and "fallback" not in s.meta


def test_list_and_loader_of_dict_batches_match_the_loop():
    ds = DictSamples()
    loader = DataLoader(ds, batch_size=7)
    batches = list(loader)
    for data in (batches, loader):
        s = surface(DictNet(), data, loss=dict_loss, metrics=("loss",), strategy="vmap", points_per_call=4)
        np.testing.assert_allclose(s.values["train_loss"], reference(DictNet(), batches, dict_loss, s), rtol=1e-10)
        assert s.meta["n_samples"] == {"train": len(ds)}


def test_tuple_inputs_are_unpacked_not_stacked():
    (a, b), y = pair_data()
    for data in (((a, b), y), [((a[:10], b[:10]), y[:10]), ((a[10:], b[10:]), y[10:])]):
        with np_no_warnings():
            s = surface(PairNet(), data, loss="cross_entropy", metrics=("loss", "acc"))
        assert np.isfinite(s.values["train_loss"]).all()
        ref = reference(PairNet(), [((a, b), y)], F.cross_entropy, s)
        np.testing.assert_allclose(s.values["train_loss"], ref, rtol=1e-10)


def test_forward_hook_overrides_the_calling_rule():
    ds = DictSamples()
    batch = torch.utils.data.default_collate([ds[i] for i in range(len(ds))])
    data = {"x": batch["features"], "y": batch["labels"]}

    def forward(model, b):
        return model.lin(b["x"])

    def loss(out, b):
        return F.cross_entropy(out, b["y"])

    s = surface(DictNet(), data, loss=loss, metrics=("loss",), forward=forward)
    np.testing.assert_allclose(s.values["train_loss"], reference(DictNet(), [data], loss, s, forward), rtol=1e-10)


@pytest.mark.parametrize("strategy", ["vmap", "auto"])
def test_data_dependent_control_flow_falls_back_to_the_loop(strategy):
    forget_plans()
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(16, 3, generator=g), torch.randint(0, 2, (16,), generator=g)
    s = surface(Branchy(), (x, y), metrics=("loss",), strategy=strategy, x="-1:1:5", y="-1:1:5")
    assert "vmap" in s.meta["fallback"] and "loop" in s.meta["fallback"]
    assert s.meta["strategy"] == "loop"  # tried once, then the loop for good
    np.testing.assert_allclose(s.values["train_loss"], reference(Branchy(), [(x, y)], F.cross_entropy, s),
                               rtol=1e-10)


class np_no_warnings:
    """No RuntimeWarning (a NaN point) may be raised inside."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("error", RuntimeWarning)

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)


# ---------------------------------------------------------------------------------------- streaming
class CountingBatches:
    """A re-iterable of fixed batches that counts how often each batch is read."""

    def __init__(self, batches):
        self.batches = batches
        self.reads = [0] * len(batches)

    def __iter__(self):
        for i, b in enumerate(self.batches):
            self.reads[i] += 1
            yield b


def image_batches(n_batches=6, size=8):
    g = torch.Generator().manual_seed(6)
    return [(torch.randn(size, 5, generator=g), torch.randint(0, 3, (size,), generator=g)) for _ in range(n_batches)]


def mlp():
    torch.manual_seed(7)
    return nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3))


@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_streamed_data_equals_in_memory_and_reads_each_batch_once_per_chunk(strategy):
    batches = image_batches()
    counting = CountingBatches(batches)
    kw = dict(metrics=("loss", "acc"), strategy=strategy, chunk_size=4, x="-1:1:3", y="-1:1:3")
    streamed = surface(mlp(), counting, data_memory=0, **kw)
    in_memory = surface(mlp(), batches, **kw)
    assert streamed.meta["streamed"] == ["train"] and in_memory.meta["streamed"] == []
    for name in ("train_loss", "train_acc"):
        np.testing.assert_allclose(streamed.values[name], in_memory.values[name], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(streamed.values["train_loss"], reference(mlp(), batches, F.cross_entropy, streamed),
                               rtol=1e-10)
    n_chunks = -(-9 // 4)
    assert counting.reads[1:] == [n_chunks] * (len(batches) - 1)  # every batch once per chunk
    assert counting.reads[0] <= n_chunks + 2  # (+ the first batch, read to decide and to probe)
    assert streamed.meta["n_samples"] == {"train": 48}


def test_streaming_picks_its_plan_on_the_first_batch_and_agrees():
    forget_plans()
    batches = image_batches(4)
    streamed = surface(mlp(), CountingBatches(batches), data_memory=0, metrics=("loss",), x="-1:1:4", y="-1:1:4")
    ref = reference(mlp(), batches, F.cross_entropy, streamed)
    np.testing.assert_allclose(streamed.values["train_loss"], ref, rtol=1e-10)
    assert streamed.meta["strategy"] in ("loop", "vmap")


def test_max_batches_and_max_samples_take_a_fixed_first_part():
    batches = image_batches()
    loader_like = CountingBatches(batches)
    s = surface(mlp(), loader_like, data_memory=0, max_batches=2, metrics=("loss",), strategy="loop")
    np.testing.assert_allclose(s.values["train_loss"], reference(mlp(), batches[:2], F.cross_entropy, s), rtol=1e-10)
    s = surface(mlp(), loader_like, data_memory=0, max_samples=12, metrics=("loss",), strategy="loop")
    cut = [batches[0], (batches[1][0][:4], batches[1][1][:4])]
    np.testing.assert_allclose(s.values["train_loss"], reference(mlp(), cut, F.cross_entropy, s), rtol=1e-10)
    assert s.meta["n_samples"] == {"train": 12}


def test_a_shuffling_loader_is_refused_before_any_work():
    x, y = image_batches(1, 16)[0]
    calls = []
    model = mlp()
    model.register_forward_hook(lambda *a: calls.append(1))
    loader = DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4, shuffle=True)
    with pytest.raises(ValueError, match=r"shuffles.*shuffle=False"):
        surface(model, loader)
    assert calls == []


def test_a_one_shot_iterator_cannot_be_streamed():
    batches = image_batches()
    with pytest.raises(TypeError, match="read only once"):
        surface(mlp(), iter(batches), data_memory=0)
    s = surface(mlp(), iter(batches), metrics=("loss",))  # fits in memory: read once, held
    np.testing.assert_allclose(s.values["train_loss"], reference(mlp(), batches, F.cross_entropy, s), rtol=1e-10)


# ---------------------------------------------------------------------------------------- bad input
def test_a_batch_the_model_cannot_take_names_its_structure_and_forward():
    ds = DictSamples()
    pattern = r"cannot take a batch.*features: float64\[2, 4\].*model\(\*\*batch\).*forward="
    with pytest.raises(ValueError, match=pattern):
        Evaluator(PairNet(), ds, loss=dict_loss, dtype=torch.float64)


def test_a_loss_needing_labels_the_batch_lacks_is_named():
    ds = DictSamples()
    batch = torch.utils.data.default_collate([ds[i] for i in range(len(ds))])
    del batch["labels"]
    with pytest.raises(ValueError, match=r"reads 'labels' from the batch.*\['features', 'mask'\]"):
        surface(DictNet(), batch, loss=dict_loss)


def test_a_non_scalar_loss_is_refused_and_a_named_loss_reads_the_batchs_labels():
    ds = DictSamples()
    with pytest.raises(ValueError, match="not a scalar"):
        surface(DictNet(), ds, loss=lambda out, b: F.cross_entropy(out, b["labels"], reduction="none"))
    # a named loss reads a mapping batch's "labels" (the Hugging Face convention): the callable's value
    named = surface(DictNet(), ds, loss="cross_entropy")
    given = surface(DictNet(), ds, loss=dict_loss)
    np.testing.assert_allclose(named.values["train_loss"], given.values["train_loss"], rtol=1e-12)

    class NoLabels(DictSamples):
        def __getitem__(self, i):
            return {"features": self.features[i], "mask": self.mask[i]}

    with pytest.raises(ValueError, match="labels"):
        surface(DictNet(), NoLabels(), loss="cross_entropy")


# ---------------------------------------------------------------------------------------- the CLI
def test_cli_forward_hook_is_imported_and_used(tmp_path, capsys, monkeypatch):
    from lossviz.cli import main
    from lossviz.io.h5 import read_surface
    from lossviz.zoo import get_data, get_model

    (tmp_path / "lvz_hook_mod.py").write_text("def forward(model, batch):\n    return 3 * model(batch[0])\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.manual_seed(0)
    model = get_model("mlp")
    torch.save(model.state_dict(), tmp_path / "a.pt")
    out = tmp_path / "s.h5"
    args = ["surface", "--model-file", tmp_path / "a.pt", "--dataset", "spirals", "--data-kwargs", '{"n": 60}',
            "--x=-1:1:3", "--dtype", "float64", "--no-progress", "--out", out, "--forward", "lvz_hook_mod:forward"]
    assert main([str(a) for a in args]) == 0, capsys.readouterr().err
    got = read_surface(out)
    train, _ = get_data("spirals", n=60)
    x, y = train.tensors
    with torch.no_grad():
        center = float(F.cross_entropy(3 * model.double()(x.double()), y))
    assert got.values["train_loss"][1] == pytest.approx(center, rel=1e-10)
    bad = [*args[:-1], "lvz_no_such_mod:forward"]
    assert main([str(a) for a in bad]) == 2
    assert "cannot import module 'lvz_no_such_mod'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------- vmap on transformer blocks
class TinyLM(nn.Module):
    """Embeddings, one pre-LayerNorm attention block with GELU MLP and dropout, called as
    ``model(input_ids=..., labels=...)`` on dict batches."""

    def __init__(self, vocab=11, d=8, heads=2):
        super().__init__()
        torch.manual_seed(8)
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(16, d)
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d), nn.Dropout(0.1))
        self.head = nn.Linear(d, vocab)
        self.heads = heads

    def forward(self, input_ids, labels=None):
        b, t = input_ids.shape
        h = self.tok(input_ids) + self.pos(torch.arange(t, device=input_ids.device))
        q, k, v = self.qkv(self.ln1(h)).reshape(b, t, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=0.1 if self.training else 0.0)
        h = h + self.proj(a.transpose(1, 2).reshape(b, t, -1))
        h = h + self.mlp(self.ln2(h))
        return self.head(h)


def next_token_loss(logits, batch):
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), batch["labels"][:, 1:].reshape(-1))


class Counting(nn.Module):
    """Writes its last mean output into a buffer in place: vmap cannot write a point's (batched)
    value into a tensor all points share."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(9)
        self.lin = nn.Linear(3, 2)
        self.register_buffer("last", torch.zeros(()))

    def forward(self, x):
        out = self.lin(x)
        self.last.copy_(out.detach().mean())
        return out


def test_vmap_on_a_transformer_block_agrees_with_the_loop_in_float32():
    g = torch.Generator().manual_seed(10)
    ids = torch.randint(0, 11, (12, 9), generator=g)
    data = [{"input_ids": ids[i : i + 4], "labels": ids[i : i + 4]} for i in range(0, 12, 4)]
    kw = dict(loss=next_token_loss, metrics=("loss",), x="-1:1:4", y="-1:1:4", progress=False, seed=0)
    vm = lossviz.surface(TinyLM(), data, strategy="vmap", points_per_call=8, **kw)
    lo = lossviz.surface(TinyLM(), data, strategy="loop", **kw)
    assert vm.meta["strategy"] == "vmap" and "fallback" not in vm.meta
    np.testing.assert_allclose(vm.values["train_loss"], lo.values["train_loss"], rtol=2e-5)
    ref = reference(TinyLM(), data, next_token_loss, surface(TinyLM(), data, loss=next_token_loss, metrics=("loss",),
                                                            x="-1:1:4", y="-1:1:4"))
    np.testing.assert_allclose(vm.values["train_loss"], ref, rtol=1e-4)


def test_an_in_place_buffer_update_falls_back_to_the_loop():
    g = torch.Generator().manual_seed(11)
    x, y = torch.randn(8, 3, generator=g), torch.randint(0, 2, (8,), generator=g)
    s = surface(Counting(), (x, y), metrics=("loss",), strategy="vmap")
    assert "vmap cannot run this model" in s.meta["fallback"]
    np.testing.assert_allclose(s.values["train_loss"], reference(Counting(), [(x, y)], F.cross_entropy, s),
                               rtol=1e-10)


def test_cancel_stops_a_streamed_pass_before_its_next_batch():
    import threading

    batches = image_batches(6)
    cancel = threading.Event()

    class CancelOnSecondPass(CountingBatches):
        def __iter__(self):
            for i, b in enumerate(super().__iter__()):
                if self.reads[0] >= 4 and i == 2:  # the second chunk's pass (after 2 reads to decide and probe)
                    cancel.set()
                yield b

    data = CancelOnSecondPass(batches)
    s = surface(mlp(), data, data_memory=0, metrics=("loss",), strategy="loop", chunk_size=4, cancel=cancel)
    assert s.meta["cancelled"] and "errors" not in s.meta
    assert s.n_done == 4  # the first chunk only
    assert data.reads[3:] == [1, 1, 1]  # batches past the cancel were never read again
    ref = reference(mlp(), batches, F.cross_entropy, s).ravel()
    done = s.done.ravel()
    np.testing.assert_allclose(s.values["train_loss"].ravel()[done], ref[done], rtol=1e-10)


def test_a_hugging_face_model_on_batch_encodings_vmap_and_loop_agree():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=32, num_labels=3)
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(cfg).eval()
    g = torch.Generator().manual_seed(0)
    batches = [transformers.BatchEncoding({
        "input_ids": torch.randint(0, 50, (4, 10), generator=g),
        "attention_mask": torch.ones(4, 10, dtype=torch.long),
        "labels": torch.randint(0, 3, (4,), generator=g),
    }) for _ in range(3)]

    def hf_loss(out, batch):
        return out.loss

    kw = dict(loss=hf_loss, metrics=("loss",), x="-1:1:3", y="-1:1:3", progress=False)
    vm = lossviz.surface(model, batches, strategy="vmap", **kw)
    lo = lossviz.surface(model, DataLoader(batches, batch_size=None), strategy="loop", **kw)
    assert vm.meta["strategy"] == "vmap" and "fallback" not in vm.meta
    np.testing.assert_allclose(vm.values["train_loss"], lo.values["train_loss"], rtol=2e-5)
    with torch.no_grad():
        center = np.mean([float(model(**b).loss) for b in batches])  # equal batches: the plain mean
    assert vm.values["train_loss"][1, 1] == pytest.approx(center, rel=1e-5)
