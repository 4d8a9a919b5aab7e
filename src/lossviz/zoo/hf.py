"""Hugging Face ``transformers`` models built from a config: random weights, never downloaded.

Sized to run in seconds on a CPU and to fit the tinytext corpus (:mod:`lossviz.zoo.language`):

* :func:`hf_gpt2`: ``GPT2LMHeadModel``, called as ``model(**{"input_ids", "labels"})``; its outputs
  carry ``.logits`` (B, T, V) and ``.loss`` (Hugging Face's shifted next-token loss, the same as
  lossviz's ``"causal_lm"``);
* :func:`hf_bert`: ``BertForSequenceClassification``, called as
  ``model(**{"input_ids", "attention_mask", "labels"})``; ``.logits`` (B, num_labels), loss
  ``"cross_entropy"`` on ``batch["labels"]``.

Both use ``attn_implementation="eager"`` by default: plain matmuls and softmax, which ``torch.vmap``
batches. ``"sdpa"`` runs under vmap too, but through torch's per-example fallback (no batching rule for the
CPU attention kernel in torch 2.14: a "performance drop" warning and a loop inside the vmapped call).
``transformers`` is the ``hf`` extra (``pip install lossviz[hf]``).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from lossviz.zoo.language import KINDS, VOCAB

__all__ = ["hf_bert", "hf_gpt2"]


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise ImportError(
            "the Hugging Face models need transformers: pip install 'lossviz[hf]'"
        ) from None
    return transformers


def hf_gpt2(
    vocab_size: int = len(VOCAB), n_positions: int = 64, n_embd: int = 32, n_layer: int = 2, n_head: int = 2,
    dropout: float = 0.1, attn_implementation: str = "eager", seed: int | None = 0,
) -> nn.Module:
    """A GPT-2 language model from ``GPT2Config`` (random init with ``seed``; None: torch's RNG as
    it is); the defaults have about 30k parameters."""
    tf = _transformers()
    config = tf.GPT2Config(
        vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
        resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout, bos_token_id=0, eos_token_id=0,
    )
    return _built(tf.GPT2LMHeadModel, config, attn_implementation, seed)


def hf_bert(
    vocab_size: int = len(VOCAB), num_labels: int = len(KINDS), hidden_size: int = 32, num_hidden_layers: int = 2,
    num_attention_heads: int = 2, intermediate_size: int = 64, max_position_embeddings: int = 64,
    dropout: float = 0.1, attn_implementation: str = "eager", seed: int | None = 0,
) -> nn.Module:
    """A BERT sequence classifier from ``BertConfig`` (random init with ``seed``); the defaults have
    about 40k parameters."""
    tf = _transformers()
    config = tf.BertConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads, intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings, num_labels=num_labels, pad_token_id=VOCAB.index("_"),
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
    )
    return _built(tf.BertForSequenceClassification, config, attn_implementation, seed)


def _built(cls: Any, config: Any, attn_implementation: str, seed: int | None) -> nn.Module:
    import torch

    config._attn_implementation = attn_implementation
    if seed is None:
        return cls(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(config)
