"""Critic-free policy gradients for language models: the advantage of each sampled completion comes from the
rewards of the other samples (no value model), then a clipped surrogate as PPO's.

- GRPO (Shao et al. 2024, DeepSeekMath): k completions per prompt, ``A_i = (r_i - mean_g r) / (std_g r + eps)``
  shared by every token of completion i; Dr. GRPO (Liu et al. 2025) drops the division by the std.
- RLOO (Ahmadian et al. 2024, after Kool et al. 2019): ``A_i = r_i - mean_{j != i} r_j``, the leave-one-out
  baseline, unbiased because it never reads r_i.
- REINFORCE++ (Hu 2025): the advantages normalised over the whole batch (every prompt's completions together)
  instead of within a group.
- The surrogate: ``-min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A)`` per token (DAPO's clip-higher,
  Yu et al. 2025: eps_high > eps_low), with rho the token's ratio pi / pi_old, or GSPO's sequence ratio
  (Zheng et al. 2025): ``exp(mean_t log rho_t)`` for every token of a completion.
- Three aggregations of per-token losses (``aggregate``): the mean over each sequence's tokens, then over
  sequences (GRPO); the mean over all tokens of the batch (DAPO); the sum over tokens divided by a constant
  (Dr. GRPO: the batch size times the longest completion allowed), which weighs every token alike whatever
  its sequence's length.

Rewards are (N, k): N prompts, k completions each. Token arrays are (B, T) over completion tokens with a mask
(True on real tokens).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from nlp_jax.ops.losses import masked_mean

Array = jax.Array

AGGREGATIONS = ("sequence_mean", "token_mean", "constant")


def group_advantages(rewards: Array, *, scale: bool = True, eps: float = 1e-4) -> Array:
    """``r - mean_g(r)`` over each row of ``rewards`` (N, k), divided by the row's sample std (over k - 1, as
    TRL's GRPO) + eps when ``scale`` (GRPO; ``scale=False`` is Dr. GRPO). A group of equal rewards has zero
    advantage: it teaches nothing. (N, k)."""
    chex.assert_rank(rewards, 2)
    if scale and rewards.shape[1] < 2:
        raise ValueError(f"GRPO's std needs k >= 2 completions per prompt, got k={rewards.shape[1]}")
    centred = rewards - rewards.mean(axis=1, keepdims=True)
    return centred / (rewards.std(axis=1, keepdims=True, ddof=1) + eps) if scale else centred


def rloo_advantages(rewards: Array) -> Array:
    """``r_i - (sum_j r_j - r_i) / (k - 1)`` over each row of ``rewards`` (N, k), k >= 2: each completion's
    reward less the mean of the other completions of its prompt. (N, k)."""
    chex.assert_rank(rewards, 2)
    k = rewards.shape[1]
    if k < 2:
        raise ValueError(f"RLOO needs k >= 2 completions per prompt (the leave-one-out baseline), got k={k}")
    return rewards - (rewards.sum(axis=1, keepdims=True) - rewards) / (k - 1)


def batch_normalised(advantages: Array, mask: Array | None = None, eps: float = 1e-8) -> Array:
    """``(A - mean) / (std + eps)`` over every (unmasked) entry of the batch: REINFORCE++'s global
    normalisation (applied to ``r - mean_g r`` or to the raw rewards). Masked entries are returned as 0."""
    mask = jnp.ones(advantages.shape, bool) if mask is None else mask
    chex.assert_equal_shape([advantages, mask])
    mean = masked_mean(advantages, mask)
    std = jnp.sqrt(masked_mean((advantages - mean) ** 2, mask))
    return jnp.where(mask, (advantages - mean) / (std + eps), 0.0)


def token_ratio(logprobs: Array, old_logprobs: Array) -> Array:
    """``pi(y_t) / pi_old(y_t)`` per token (B, T)."""
    chex.assert_equal_shape([logprobs, old_logprobs])
    return jnp.exp(logprobs - old_logprobs)


def sequence_ratio(logprobs: Array, old_logprobs: Array, mask: Array) -> Array:
    """GSPO's ratio ``exp(mean_t (log pi(y_t) - log pi_old(y_t)))`` over each completion's tokens, the
    length-normalised sequence likelihood ratio, broadcast to every token of it (B, T) (the gradient reaches
    each token through the mean, as GSPO-token's with equal advantages)."""
    chex.assert_equal_shape([logprobs, old_logprobs, mask])
    log_ratio = jnp.where(mask, logprobs - old_logprobs, 0.0)
    mean = log_ratio.sum(-1, keepdims=True) / jnp.maximum(mask.sum(-1, keepdims=True), 1)
    return jnp.broadcast_to(jnp.exp(mean), logprobs.shape)


def clipped_surrogate(ratio: Array, advantages: Array, clip_low: float = 0.2, clip_high: float | None = None
                      ) -> tuple[Array, Array]:
    """Per-token ``-min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A)`` (PPO's surrogate with DAPO's two
    clip ranges; ``clip_high`` None = ``clip_low``), and where the clip binds (bool, same shape). A (B,)
    advantage (one per completion) is broadcast over its tokens."""
    clip_high = clip_low if clip_high is None else clip_high
    if not (0 <= clip_low < 1 and clip_high >= 0):
        raise ValueError(f"clip ranges must be 0 <= clip_low < 1 (the ratio's floor 1 - clip_low stays positive) "
                         f"and clip_high >= 0, got clip_low={clip_low}, clip_high={clip_high}")
    if advantages.ndim == ratio.ndim - 1:
        advantages = advantages[..., None]
    unclipped = -advantages * ratio
    clipped = -advantages * jnp.clip(ratio, 1 - clip_low, 1 + clip_high)
    return jnp.maximum(unclipped, clipped), clipped > unclipped


def aggregate(losses: Array, mask: Array, how: str = "sequence_mean", max_tokens: int | None = None) -> Array:
    """One scalar from per-token ``losses`` (B, T) over ``mask``: ``sequence_mean`` (each sequence's token
    mean, then the mean over sequences: GRPO), ``token_mean`` (every token of the batch alike: DAPO) or
    ``constant`` (the masked sum over B * ``max_tokens``, the longest completion allowed: Dr. GRPO)."""
    chex.assert_equal_shape([losses, mask])
    total = jnp.where(mask, losses, 0.0)
    if how == "sequence_mean":
        return jnp.mean(total.sum(-1) / jnp.maximum(mask.sum(-1), 1))
    if how == "token_mean":
        return masked_mean(losses, mask)
    if how == "constant":
        if not max_tokens or max_tokens < 1:
            raise ValueError(f"aggregation 'constant' needs max_tokens >= 1 (the longest completion allowed), "
                             f"got {max_tokens}")
        return total.sum() / (losses.shape[0] * max_tokens)
    raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {how!r}")
