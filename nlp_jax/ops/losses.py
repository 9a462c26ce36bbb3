"""Likelihood losses: negative log-likelihood, cross-entropy (integer labels, soft targets, label
smoothing), the masked mean every "count only real tokens" rule uses, and perplexity.

Split as optax splits them: per-token losses (``softmax_cross_entropy_with_integer_labels``,
``softmax_cross_entropy``), ``smooth_labels``, and one reduction, :func:`masked_mean`, which averages over
counted tokens only (an empty selection gives 0, not NaN). ``cross_entropy`` and ``nll`` compose them with
a mask, ``ignore_index`` and a reduction. Everything is computed from log-probabilities (log-softmax /
logsumexp), never from probabilities, so no ``log(0)`` can appear. An integer label outside [0, V) (other
than ``ignore_index``) gives a NaN loss for its token, on every path (the CPU kernel included). Losses are
computed in float32 (or float64 when given float64), never in half precision.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

Array = jax.Array


def _at_least_f32(x: Array) -> Array:
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def masked_mean(x: Array, mask: Array | None = None) -> Array:
    """``sum_i m_i x_i / sum_i m_i`` (0 when nothing is counted); the plain mean when ``mask`` is None.
    ``mask`` is bool or 0/1 (or non-negative weights), broadcastable to x."""
    if mask is None:
        return jnp.mean(x)
    m = jnp.broadcast_to(mask, x.shape).astype(jnp.promote_types(x.dtype, jnp.float32))
    return (x * m).sum() / jnp.maximum(m.sum(), 1.0)


def check_label_shapes(logits: Array, labels: Array) -> None:
    """logits (..., V) and integer labels (...), with errors that name the argument."""
    chex.assert_rank(logits, labels.ndim + 1)
    chex.assert_equal_shape_prefix([logits, labels], labels.ndim)


def _pick(values: Array, labels: Array) -> Array:
    """values[..., label]; NaN for a label outside [0, V) (never another class's value: -1 must not wrap to
    V - 1), so bad ids surface as a NaN loss on every path."""
    v = values.shape[-1]
    valid = (labels >= 0) & (labels < v)
    picked = jnp.take_along_axis(values, jnp.clip(labels, 0, v - 1)[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return jnp.where(valid, picked, jnp.nan)


def softmax_cross_entropy_with_integer_labels(logits: Array, labels: Array) -> Array:
    """Per-token ``-log softmax(z)_y = logsumexp(z) - z_y``. logits (..., V), labels (...) -> (...)."""
    check_label_shapes(logits, labels)
    z = _at_least_f32(logits)
    return jax.nn.logsumexp(z, axis=-1) - _pick(z, labels)


def softmax_cross_entropy(logits: Array, targets: Array) -> Array:
    """Per-token ``H(q, p) = -sum_c q_c log softmax(z)_c`` for target distributions q (..., V) -> (...)."""
    chex.assert_equal_shape([logits, targets])
    log_p = jax.nn.log_softmax(_at_least_f32(logits), axis=-1)
    return -(targets.astype(log_p.dtype) * log_p).sum(-1)


def check_label_smoothing(eps: float) -> None:
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {eps}")


def smooth_labels(targets: Array, eps: float) -> Array:
    """Label smoothing (Szegedy et al. 2016): ``(1 - eps) q + eps / V`` for distributions q (..., V)."""
    check_label_smoothing(eps)
    return (1.0 - eps) * targets + eps / targets.shape[-1]


def label_weights(labels: Array, mask: Array | None, ignore_index: int | None) -> Array:
    """The weight of each token: ``mask`` (1 if None) times 0 where ``labels == ignore_index``."""
    w = jnp.ones(labels.shape, jnp.float32)
    if mask is not None:
        chex.assert_equal_shape([labels, mask])
        w = w * mask.astype(jnp.float32)
    if ignore_index is not None:
        w = w * (labels != ignore_index)
    return w


def reduce(per_token: Array, weights: Array, reduction: str) -> Array:
    """'mean' (:func:`masked_mean`), 'sum' or 'none' (per token, 0 where not counted) of weighted losses."""
    if reduction == "mean":
        return masked_mean(per_token, weights)
    per_token = per_token * weights
    if reduction == "sum":
        return per_token.sum()
    if reduction == "none":
        return per_token
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def safe_labels(labels: Array, ignore_index: int | None) -> Array:
    """Labels with ``ignore_index`` replaced by 0 before any gather (those tokens get weight 0)."""
    return labels if ignore_index is None else jnp.where(labels == ignore_index, 0, labels)


def nll(log_probs: Array, labels: Array, *, mask: Array | None = None, ignore_index: int | None = None,
        reduction: str = "mean") -> Array:
    """Negative log-likelihood of the true class: ``NLL = -log p_y``.

    Args:
      log_probs: (..., V) log-probabilities (e.g. ``jax.nn.log_softmax(logits)``).
      labels: (...) integer class ids.
      mask: optional (...) 0/1 or bool; only tokens with mask 1 are counted.
      ignore_index: optional label value that is not counted (e.g. -100 for padding).
      reduction: 'mean' over counted tokens, 'sum', or 'none' (per token, 0 where not counted).
    """
    check_label_shapes(log_probs, labels)
    per_token = -_pick(_at_least_f32(log_probs), safe_labels(labels, ignore_index))
    return reduce(per_token, label_weights(labels, mask, ignore_index), reduction)


def cross_entropy(logits: Array, targets: Array, *, mask: Array | None = None, ignore_index: int | None = None,
                  label_smoothing: float = 0.0, reduction: str = "mean") -> Array:
    """Cross-entropy ``H(q, p) = -sum_c q_c log softmax(z)_c`` between targets q and the model's softmax.

    With integer targets, q is one-hot and this is the NLL of the true class. Label smoothing replaces q
    by ``(1 - eps) q + eps / V`` (:func:`smooth_labels`), as ``torch.nn.CrossEntropyLoss`` does.

    Args:
      logits: (..., V) unnormalised scores.
      targets: (...) integer class ids, or (..., V) probabilities (soft / one-hot targets).
      mask, ignore_index, reduction: as in :func:`nll` (``ignore_index`` needs integer targets).
      label_smoothing: eps in [0, 1].
    """
    check_label_smoothing(label_smoothing)
    if jnp.issubdtype(targets.dtype, jnp.integer):
        per_token = softmax_cross_entropy_with_integer_labels(logits, safe_labels(targets, ignore_index))
        weights = label_weights(targets, mask, ignore_index)
        if label_smoothing > 0.0:  # (1 - eps) H(onehot, p) + eps H(uniform, p), H(uniform, p) = lse - mean z
            z = _at_least_f32(logits)
            uniform = jax.nn.logsumexp(z, axis=-1) - z.mean(-1)
            per_token = (1.0 - label_smoothing) * per_token + label_smoothing * uniform
    else:
        if ignore_index is not None:
            raise ValueError("ignore_index needs integer targets; use mask= with soft targets")
        per_token = softmax_cross_entropy(logits, smooth_labels(targets, label_smoothing))
        weights = label_weights(per_token, mask, None)
    return reduce(per_token, weights, reduction)


def perplexity(token_nll: Array, mask: Array | None = None) -> Array:
    """Perplexity ``PP(w) = P(w_1 ... w_N)^(-1/N) = exp(-(1/N) sum_i log P(w_i | w_<i))``.

    Computed in log space from per-token negative log-likelihoods (never as a product of probabilities,
    which underflows for any real corpus).

    Args:
      token_nll: (...) per-token ``-log P(w_i | w_<i)`` (or their mean: a scalar).
      mask: optional (...) 0/1; only counted tokens enter N.
    """
    return jnp.exp(masked_mean(jnp.asarray(token_nll), mask))
