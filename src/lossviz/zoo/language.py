"""A small GPT and a small text corpus generated at run time, for language-model landscapes.

:class:`TinyGPT` is a decoder-only transformer (Radford et al. 2019, as in Karpathy's nanoGPT):
token and learned position embeddings, ``n_layer`` pre-LayerNorm blocks of causal multi-head
self-attention (``F.scaled_dot_product_attention`` with ``is_causal=True``) and a GELU MLP, dropout,
a final LayerNorm and a linear head; ``TinyGPT(input_ids) -> logits (B, T, V)``.

:func:`make_corpus` writes sentences of a tiny English grammar (determiners, nouns, verbs, adjectives,
questions and negations) from a seeded generator: the same text for the same seed on every machine,
nothing downloaded. :data:`VOCAB` is its character set, one token per character. The data sets:

* ``get_data("tinytext")``: next-token pairs ``(x, y)``, ``x = w[:-1]``, ``y = w[1:]`` of windows ``w``
  of ``block_size + 1`` characters (loss ``"token_cross_entropy"``); ``form="dict"``: batches
  ``{"input_ids": w, "labels": w}`` for ``model(**batch)`` (loss ``"causal_lm"``, which shifts);
* ``get_data("tinytext_kinds")``: whole sentences padded to ``length`` with an ``attention_mask`` and
  their kind (0 statement, 1 question, 2 negation) as ``labels``, for sequence classifiers
  (:func:`lossviz.zoo.hf.hf_bert`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, TensorDataset

__all__ = [
    "ATTENTIONS",
    "VOCAB",
    "Block",
    "CausalSelfAttention",
    "TextWindows",
    "TinyGPT",
    "decode",
    "encode",
    "make_corpus",
    "make_sentences",
    "tinytext",
    "tinytext_kinds",
]

_DETERMINERS = ("the", "a", "every", "some")
_ADJECTIVES = ("big", "small", "red", "quiet", "old", "happy")
_NOUNS = ("cat", "dog", "bird", "fox", "child", "robot", "tree", "ship")
_VERBS = (("sees", "see"), ("likes", "like"), ("chases", "chase"), ("finds", "find"), ("hears", "hear"))
_PAD = "_"  # the padding character of tinytext_kinds (attention_mask 0)
VOCAB = "".join(sorted(set(" .?" + _PAD + "".join(_DETERMINERS + _ADJECTIVES + _NOUNS) + "".join(
    "".join(v) for v in _VERBS) + "doesnot")))
"""The corpus's characters, sorted; token id = index in this string."""
_INDEX = {c: i for i, c in enumerate(VOCAB)}
KINDS = ("statement", "question", "negation")


# --- corpus ----------------------------------------------------------------------------------------
def _noun_phrase(rng: np.random.Generator) -> str:
    words = [str(rng.choice(_DETERMINERS))]
    if rng.random() < 0.5:
        words.append(str(rng.choice(_ADJECTIVES)))
    words.append(str(rng.choice(_NOUNS)))
    return " ".join(words)


def _sentence(rng: np.random.Generator) -> tuple[str, int]:
    """One sentence and its kind (an index of :data:`KINDS`)."""
    subject, obj = _noun_phrase(rng), _noun_phrase(rng)
    third, plain = _VERBS[int(rng.integers(len(_VERBS)))]
    kind = int(rng.choice(3, p=(0.6, 0.2, 0.2)))
    if kind == 0:
        return f"{subject} {third} {obj}.", kind
    if kind == 1:
        return f"does {subject} {plain} {obj}?", kind
    return f"{subject} does not {plain} {obj}.", kind


def make_sentences(n: int, seed: int = 0) -> list[tuple[str, int]]:
    """``n`` sentences of the grammar with their kinds, determined by ``seed``."""
    if n < 1:
        raise ValueError(f"make_sentences needs n >= 1 sentences, got {n}")
    rng = np.random.default_rng(seed)
    return [_sentence(rng) for _ in range(n)]


def make_corpus(n_sentences: int = 2000, seed: int = 0) -> str:
    """The sentences of :func:`make_sentences` joined by spaces: one text of about 30 characters per
    sentence, in :data:`VOCAB`."""
    return " ".join(s for s, _ in make_sentences(n_sentences, seed))


def encode(text: str) -> torch.Tensor:
    """Character ids (int64) of ``text``; a ValueError naming a character outside :data:`VOCAB`."""
    try:
        return torch.tensor([_INDEX[c] for c in text], dtype=torch.int64)
    except KeyError as e:
        raise ValueError(f"character {e.args[0]!r} is not in the corpus vocabulary {VOCAB!r}") from None


def decode(ids: torch.Tensor | list[int]) -> str:
    """The text of character ids (the inverse of :func:`encode`)."""
    return "".join(VOCAB[int(i)] for i in ids)


def _windows(text: str, length: int) -> torch.Tensor:
    """Non-overlapping windows of ``length`` characters, (N, length)."""
    ids = encode(text)
    n = len(ids) // length
    if n < 1:
        raise ValueError(f"the text has {len(ids)} characters, fewer than one window of {length}")
    return ids[: n * length].reshape(n, length)


class TextWindows(Dataset):
    """Windows ``w`` of ``block_size + 1`` token ids as samples ``{"input_ids": w, "labels": w}`` (a
    mapping per sample: a DataLoader collates them into mapping batches for ``model(**batch)``)."""

    def __init__(self, windows: torch.Tensor):
        self.windows = windows

    def __len__(self) -> int:
        return int(self.windows.shape[0])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        w = self.windows[i]
        return {"input_ids": w, "labels": w}


def tinytext(
    root=None, *, n_sentences: int = 2000, block_size: int = 32, test_fraction: float = 0.2, seed: int = 0,
    form: str = "pairs",
) -> tuple[Dataset, Dataset]:
    """``(train, test)`` of the corpus: windows of ``block_size + 1`` characters, the last
    ``test_fraction`` of the text held out. ``form="pairs"``: ``TensorDataset(x, y)`` with
    ``x = w[:-1]``, ``y = w[1:]`` (B, block_size) each; ``form="dict"``: :class:`TextWindows`."""
    if form not in ("pairs", "dict"):
        raise ValueError(f"tinytext form must be 'pairs' or 'dict', got {form!r}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"tinytext test_fraction must be in (0, 1), got {test_fraction}")
    windows = _windows(make_corpus(n_sentences, seed), block_size + 1)
    n_test = max(1, round(len(windows) * test_fraction))
    parts = windows[:-n_test], windows[-n_test:]
    if form == "dict":
        return TextWindows(parts[0]), TextWindows(parts[1])
    train, test = (TensorDataset(w[:, :-1].contiguous(), w[:, 1:].contiguous()) for w in parts)
    return train, test


class _Sentences(Dataset):
    """Padded sentences as ``{"input_ids", "attention_mask", "labels"}`` samples."""

    def __init__(self, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor):
        self.ids, self.mask, self.labels = ids, mask, labels

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "attention_mask": self.mask[i], "labels": self.labels[i]}


def tinytext_kinds(
    root=None, *, n: int = 400, n_test: int | None = None, length: int = 48, seed: int = 0
) -> tuple[Dataset, Dataset]:
    """``(train, test)`` sentences for classification: input ids padded with ``"_"`` to ``length``,
    ``attention_mask`` 1 on the sentence, ``labels`` its kind (statement, question, negation).
    Test: ``n_test`` (default ``n // 4``) sentences drawn with ``seed + 1``."""

    def part(count: int, s: int) -> _Sentences:
        sentences = make_sentences(count, s)
        ids = torch.full((count, length), _INDEX[_PAD], dtype=torch.int64)
        mask = torch.zeros((count, length), dtype=torch.int64)
        for i, (text, _) in enumerate(sentences):
            row = encode(text[:length])
            ids[i, : len(row)], mask[i, : len(row)] = row, 1
        return _Sentences(ids, mask, torch.tensor([k for _, k in sentences], dtype=torch.int64))

    return part(n, seed), part(max(1, n // 4) if n_test is None else n_test, seed + 1)


# --- model -----------------------------------------------------------------------------------------
ATTENTIONS = ("manual", "sdpa")


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where token ``t`` attends to tokens ``≤ t``:
    ``softmax(q kᵀ / √d_head + causal mask) v`` per head, then an output projection.

    ``attention="manual"`` writes it out (matmuls, ``masked_fill``, softmax: every op has a vmap
    batching rule); ``"sdpa"`` calls ``F.scaled_dot_product_attention(is_causal=True)``, whose CPU
    kernel has no batching rule in torch 2.x (vmap falls back to a slow loop over points, with a
    warning)."""

    def __init__(self, d_model: int, n_head: int, dropout: float, attention: str = "manual"):
        super().__init__()
        if d_model % n_head:
            raise ValueError(f"d_model={d_model} must be a multiple of n_head={n_head}")
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
        self.attention = attention
        self.n_head = n_head
        self.attn_drop = nn.Dropout(dropout)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.dropout = dropout
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=-1)
        q, k, v = (z.reshape(b, t, self.n_head, d // self.n_head).transpose(1, 2) for z in (q, k, v))
        if self.attention == "sdpa":
            p = self.dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
        else:
            scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
            future = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
            y = self.attn_drop(scores.masked_fill(future, float("-inf")).softmax(-1)) @ v
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(b, t, d)))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))`` (GELU, 4x wide)."""

    def __init__(self, d_model: int, n_head: int, dropout: float, attention: str = "manual"):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_head, dropout, attention)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    """A small GPT: ``forward(input_ids (B, T)) -> logits (B, T, vocab_size)``, ``T ≤ block_size``.

    Defaults (``vocab_size`` of the tinytext corpus, ``block_size=32``, ``n_layer=3``, ``n_head=4``,
    ``d_model=96``) give about 340k parameters. Weights are initialised as GPT-2's: normal(0, 0.02),
    residual projections scaled by ``1/√(2 n_layer)``. ``attention``: see
    :class:`CausalSelfAttention`. ``labels`` (a mapping batch's) is accepted
    and not used: losses read the labels from the batch.
    """

    def __init__(
        self, vocab_size: int = len(VOCAB), block_size: int = 32, n_layer: int = 3, n_head: int = 4,
        d_model: int = 96, dropout: float = 0.1, attention: str = "manual",
    ):
        super().__init__()
        self.block_size = block_size
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(block_size, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([Block(d_model, n_head, dropout, attention) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith(("proj.weight", "mlp.2.weight")):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        t = input_ids.shape[-1]
        if t > self.block_size:
            raise ValueError(f"TinyGPT: {t} tokens exceed block_size={self.block_size}; cut the sequences")
        pos = torch.arange(t, device=input_ids.device)
        x = self.drop(self.tok_emb(input_ids) + self.pos_emb(pos))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))
