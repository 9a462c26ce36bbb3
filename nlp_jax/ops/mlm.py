"""BERT's masked language model objective (Devlin et al. 2019, section 3.1 and appendix A.1).

Each eligible position (not a special token, not padding) is chosen with probability ``rate`` (15%); a
chosen token is replaced by [MASK] with probability ``mask_rate`` (80%), by a uniformly random id with
``random_rate`` (10%), and kept otherwise (10%). The model must predict the original token at every
chosen position, and only there: ``L = -(1 / |C|) sum_{i in C} log p(x_i | x~)``, with x~ the corrupted
input. Per-position draws (as Hugging Face's ``DataCollatorForLanguageModeling``), so the number chosen per row
is Binomial(eligible, rate): vectorised, no loop per token.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from nlp_jax.ops.losses import masked_mean, softmax_cross_entropy_with_integer_labels

Array = jax.Array


def mlm_mask(tokens: Array, key: Array, *, vocab_size: int, mask_id: int, special_ids=(),
             attention_mask: Array | None = None, rate: float = 0.15, mask_rate: float = 0.8,
             random_rate: float = 0.1) -> tuple[Array, Array]:
    """(inputs, chosen): ``tokens`` (..., T) corrupted at the chosen positions, and the boolean choice.

    ``special_ids`` ([CLS], [SEP], [PAD], ...) and positions where ``attention_mask`` is False are never
    chosen. The random replacement is uniform over [0, vocab_size), as in BERT's reference code.
    """
    if not 0.0 <= rate <= 1.0 or mask_rate < 0 or random_rate < 0 or mask_rate + random_rate > 1.0:
        raise ValueError(f"need 0 <= rate <= 1 and mask_rate + random_rate <= 1, got rate={rate}, "
                         f"mask_rate={mask_rate}, random_rate={random_rate}")
    k_choose, k_how, k_token = jax.random.split(key, 3)
    eligible = jnp.ones(tokens.shape, bool) if attention_mask is None else attention_mask.astype(bool)
    for s in special_ids:
        eligible &= tokens != s
    chosen = eligible & (jax.random.uniform(k_choose, tokens.shape) < rate)
    how = jax.random.uniform(k_how, tokens.shape)
    random_ids = jax.random.randint(k_token, tokens.shape, 0, vocab_size, dtype=tokens.dtype)
    inputs = jnp.where(chosen & (how < mask_rate), jnp.asarray(mask_id, tokens.dtype), tokens)
    inputs = jnp.where(chosen & (how >= mask_rate) & (how < mask_rate + random_rate), random_ids, inputs)
    return inputs, chosen


def mlm_positions(chosen: Array, k: int) -> tuple[Array, Array]:
    """(positions, valid), each (..., k): the first ``k`` chosen positions of each row, in order, padded
    with unchosen ones (``valid`` False). BERT's ``masked_lm_positions`` with ``max_predictions_per_seq``:
    the MLM head then runs on k positions a row instead of all T (rows with more than k chosen keep the
    first k)."""
    k = min(k, chosen.shape[-1])
    order = jnp.argsort(jnp.logical_not(chosen), axis=-1, stable=True)[..., :k]  # chosen first, in order
    return order.astype(jnp.int32), jnp.take_along_axis(chosen, order, axis=-1)


def mlm_loss(logits: Array, targets: Array, chosen: Array) -> Array:
    """Mean cross-entropy of the original ``targets`` over the ``chosen`` positions only (logits (..., T, V))."""
    return masked_mean(softmax_cross_entropy_with_integer_labels(logits, targets), chosen)
