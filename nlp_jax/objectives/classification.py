"""Sequence classification: the multi-class cross-entropy of a label per sequence (BERT, the BiLSTM)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from nlp_jax import kernels, ops
from nlp_jax.models.bert import BertClassifier
from nlp_jax.models.classifier import BiLSTMClassifier

Array = jax.Array


def classification_loss(model: BertClassifier, batch: dict, key: Array | None, *,
                        all_hidden: bool = False) -> tuple[Array, dict]:
    """Cross-entropy of ``labels`` (B,) on a ``SentenceBatches`` batch; aux accuracy and ``tokens``. The
    logits alone are read, so with [CLS] pooling the last block computes [CLS] only (``all_hidden=True``
    computes every position, as a reference)."""
    logits, _ = model(batch["input_ids"], segments=batch["token_type_ids"], attention_mask=batch["attention_mask"],
                      key=key, all_hidden=all_hidden)
    loss = kernels.cross_entropy(logits, batch["labels"])
    return loss, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["labels"]),
                  "tokens": jnp.sum(batch["attention_mask"])}


def bilstm_classification_loss(model: BiLSTMClassifier, batch: dict, key: Array | None) -> tuple[Array, dict]:
    """Cross-entropy of the labels on ``{'tokens' (B, T), 'lengths' (B,), 'labels' (B,)}``; aux accuracy."""
    mask = ops.padding_mask(batch["lengths"], batch["tokens"].shape[1])
    logits, _ = model(batch["tokens"], attention_mask=mask, key=key)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["labels"])
    return kernels.cross_entropy(logits, batch["labels"]), {"accuracy": accuracy, "tokens": jnp.sum(batch["lengths"])}
