"""BERT's pretraining objective: the masked LM on the chosen positions plus next-sentence prediction."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from nlp_jax import kernels, ops
from nlp_jax.models.bert import BertForPreTraining

Array = jax.Array


def pretraining_loss(model: BertForPreTraining, batch: dict, key: Array | None, *, mask_id: int,
                     special_ids: tuple[int, ...], rate: float = 0.15,
                     max_predictions: int | None = None) -> tuple[Array, dict]:
    """MLM + NSP on a ``data.pretraining.PretrainingBatches`` batch: ``input_ids``, ``token_type_ids``,
    ``attention_mask``, ``nsp_labels`` (B,), optionally ``nsp_weight`` (B,), and ``mlm_seed``, which keys
    ``ops.mlm_mask`` (so evaluation masks the same positions each time). The MLM loss is the mean over the
    chosen positions only; with ``max_predictions`` the MLM head runs on the first that many chosen positions
    of each row (BERT's max_predictions_per_seq; aux ``mlm_dropped`` counts chosen positions beyond it). aux:
    both losses and accuracies, the number predicted, ``tokens``. Bind the keywords (the tokenizer's ids)
    with ``functools.partial``."""
    mask = batch["attention_mask"]
    mlm_key = jax.random.fold_in(jax.random.key(0), batch["mlm_seed"])
    inputs, chosen = ops.mlm_mask(batch["input_ids"], mlm_key, vocab_size=model.config.vocab_size, mask_id=mask_id,
                                  special_ids=special_ids, attention_mask=mask, rate=rate)
    targets, weights, where = batch["input_ids"], chosen, None
    if max_predictions is not None:
        where, weights = ops.mlm_positions(chosen, max_predictions)
        targets = jnp.take_along_axis(targets, where, axis=1)
    logits, aux = model(inputs, segments=batch["token_type_ids"], attention_mask=mask, key=key, mlm_positions=where)
    mlm = kernels.cross_entropy(logits, targets, mask=weights)
    nsp_weight = batch.get("nsp_weight")  # 0 on rows without a sentence pair (MLM only)
    nsp = kernels.cross_entropy(aux["nsp_logits"], batch["nsp_labels"], mask=nsp_weight)
    return mlm + nsp, {
        "mlm_loss": mlm, "nsp_loss": nsp, "mlm_accuracy": ops.masked_mean(jnp.argmax(logits, -1) == targets, weights),
        "nsp_accuracy": ops.masked_mean(jnp.argmax(aux["nsp_logits"], -1) == batch["nsp_labels"], nsp_weight),
        "masked": jnp.sum(weights), "mlm_dropped": jnp.sum(chosen) - jnp.sum(weights), "tokens": jnp.sum(mask)}
