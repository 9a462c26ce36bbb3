"""Likelihood losses: negative log-likelihood, cross-entropy and perplexity.

All reductions average over *counted* tokens only (mask and ``ignore_index`` remove tokens), and an empty
selection gives 0 rather than NaN. Everything is computed from log-probabilities (log-softmax /
logsumexp), never from probabilities, so no ``log(0)`` can appear.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from nlp_jax.ops import elementwise_cpu

Array = jax.Array


def _at_least_f32(x: Array) -> Array:
    """Losses are computed in float32 (or float64 when given float64), never in half precision."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _weights(labels: Array, mask: Array | None, ignore_index: int | None) -> Array:
    w = jnp.ones(labels.shape, jnp.float32)
    if mask is not None:
        chex.assert_equal_shape([labels, mask])
        w = w * mask.astype(jnp.float32)
    if ignore_index is not None:
        w = w * (labels != ignore_index)
    return w


def _reduce(per_token: Array, weights: Array, reduction: str) -> Array:
    per_token = per_token * weights
    if reduction == "none":
        return per_token
    if reduction == "sum":
        return per_token.sum()
    if reduction == "mean":
        return per_token.sum() / jnp.maximum(weights.sum(), 1.0)
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _pick(values: Array, labels: Array, ignore_index: int | None) -> Array:
    """values[..., labels] with labels that may hold ``ignore_index`` (replaced by 0 before the gather)."""
    safe = labels if ignore_index is None else jnp.where(labels == ignore_index, 0, labels)
    return jnp.take_along_axis(values, safe[..., None].astype(jnp.int32), axis=-1)[..., 0]


def nll(
    log_probs: Array,
    labels: Array,
    *,
    mask: Array | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
) -> Array:
    """Negative log-likelihood of the true class: ``NLL = -log p_y``.

    Args:
      log_probs: (..., V) log-probabilities (e.g. ``jax.nn.log_softmax(logits)``).
      labels: (...) integer class ids.
      mask: optional (...) 0/1 or bool; only tokens with mask 1 are counted.
      ignore_index: optional label value that is not counted (e.g. -100 for padding).
      reduction: 'mean' over counted tokens, 'sum', or 'none' (per token, 0 where not counted).
    """
    chex.assert_equal_shape_prefix([log_probs, labels], labels.ndim)
    chex.assert_rank(log_probs, labels.ndim + 1)
    per_token = -_pick(_at_least_f32(log_probs), labels, ignore_index)
    return _reduce(per_token, _weights(labels, mask, ignore_index), reduction)


def _xent_kernel_applies(logits: Array, targets: Array, label_smoothing: float) -> bool:
    """The CPU kernel (``elementwise_cpu.softmax_cross_entropy``) serves float32 logits with integer
    targets and no smoothing; it computes the same values in one pass per row (tested equal)."""
    return (jax.default_backend() == "cpu" and logits.dtype == jnp.float32 and label_smoothing == 0.0
            and jnp.issubdtype(targets.dtype, jnp.integer) and logits.size > 0 and elementwise_cpu.kernel_available())


def cross_entropy(
    logits: Array,
    targets: Array,
    *,
    mask: Array | None = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> Array:
    """Cross-entropy ``H(q, p) = -sum_c q_c log softmax(z)_c`` between targets q and the model's softmax.

    With integer targets, q is one-hot and this is the NLL of the true class. Label smoothing (Szegedy et
    al. 2016) replaces q by ``(1 - eps) q + eps / V``, as in ``torch.nn.CrossEntropyLoss``.

    Args:
      logits: (..., V) unnormalised scores.
      targets: (...) integer class ids, or (..., V) probabilities (soft / one-hot targets).
      mask, ignore_index, reduction: as in :func:`nll` (``ignore_index`` needs integer targets).
      label_smoothing: eps in [0, 1].
    """
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    if _xent_kernel_applies(logits, targets, label_smoothing):
        chex.assert_rank(logits, targets.ndim + 1)
        safe = targets if ignore_index is None else jnp.where(targets == ignore_index, 0, targets)
        flat = logits.reshape(-1, logits.shape[-1])
        per_token = elementwise_cpu.softmax_cross_entropy(flat, safe.reshape(-1).astype(jnp.int32))
        return _reduce(per_token.reshape(targets.shape), _weights(targets, mask, ignore_index), reduction)
    log_p = jax.nn.log_softmax(_at_least_f32(logits), axis=-1)
    if jnp.issubdtype(targets.dtype, jnp.integer):
        chex.assert_rank(logits, targets.ndim + 1)
        per_token = -_pick(log_p, targets, ignore_index)
        weights = _weights(targets, mask, ignore_index)
    else:
        if ignore_index is not None:
            raise ValueError("ignore_index needs integer targets; use mask= with soft targets")
        chex.assert_equal_shape([logits, targets])
        per_token = -(targets.astype(log_p.dtype) * log_p).sum(-1)
        weights = _weights(per_token, mask, None)
    if label_smoothing > 0.0:
        uniform = -log_p.mean(-1)  # cross-entropy against the uniform distribution
        per_token = (1.0 - label_smoothing) * per_token + label_smoothing * uniform
    return _reduce(per_token, weights, reduction)


def perplexity(token_nll: Array, mask: Array | None = None) -> Array:
    """Perplexity ``PP(w) = P(w_1 ... w_N)^(-1/N) = exp(-(1/N) sum_i log P(w_i | w_<i))``.

    Computed in log space from per-token negative log-likelihoods (never as a product of probabilities,
    which underflows for any real corpus).

    Args:
      token_nll: (...) per-token ``-log P(w_i | w_<i)``.
      mask: optional (...) 0/1; only counted tokens enter N.
    """
    weights = jnp.ones_like(token_nll) if mask is None else mask.astype(token_nll.dtype)
    return jnp.exp((token_nll * weights).sum() / jnp.maximum(weights.sum(), 1.0))
