"""The encoder-decoder objective: teacher-forced cross-entropy per target token."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from nlp_jax import ops

Array = jax.Array


def seq2seq_loss(model, batch: dict, key: Array | None, frozen=None, *, label_smoothing: float = 0.0
                 ) -> tuple[Array, dict]:
    """Teacher-forced cross-entropy per target token on ``{'source', 'source_mask', 'target_in',
    'target_out', 'target_mask'}`` (B, S) / (B, T): ``target_in`` is ``<s> y``, ``target_out`` is ``y </s>``,
    padding masked; ``label_smoothing`` eps trains on ``(1 - eps) onehot + eps / V`` (Szegedy et al. 2016, as
    Vaswani et al. with eps 0.1; the loss is then the smoothed one). aux: ``tokens`` (real target tokens,
    for tokens/s) and ``accuracy`` (next-piece)."""
    logits, _ = model(batch["target_in"], source=batch["source"], source_mask=batch["source_mask"], key=key)
    mask = batch["target_mask"]
    loss = ops.cross_entropy(logits, batch["target_out"], mask=mask, label_smoothing=label_smoothing)
    hits = (jnp.argmax(logits, -1) == batch["target_out"]) & mask
    return loss, {"tokens": mask.sum(), "accuracy": hits.sum() / jnp.maximum(mask.sum(), 1)}
