"""PPO for language models (Schulman et al. 2017; Ziegler et al. 2019; Ouyang et al. 2022).

The RLHF objective ``E[r(x, y) - beta log pi(y|x) / pi_SFT(y|x)]`` becomes per-token rewards: each response
token pays ``-beta (log pi - log pi_SFT)`` and the last one also receives the score r(x, y). Arrays are
(B, T) over response tokens with a mask (bool, True on real response tokens, contiguous from the left);
positions outside it carry nothing.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from nlp_jax.ops.losses import masked_mean

Array = jax.Array


def last_token_mask(mask: Array) -> Array:
    """True at the last True of each row of a (B, T) mask (no True when the row is empty)."""
    mask = mask.astype(bool)
    following = jnp.concatenate([mask[:, 1:], jnp.zeros_like(mask[:, :1])], axis=1)
    return mask & ~following


def kl_estimators(logprobs: Array, ref_logprobs: Array) -> dict[str, Array]:
    """Per-token estimators of KL(pi || pi_ref) from samples of pi (Schulman 2020, "Approximating KL
    divergence"): with ``log r = log pi_ref - log pi``, ``k1 = -log r`` (unbiased, can be negative),
    ``k2 = (log r)^2 / 2`` (biased, low variance) and ``k3 = (r - 1) - log r`` (unbiased and never negative,
    since e^u >= 1 + u)."""
    chex.assert_equal_shape([logprobs, ref_logprobs])
    log_r = ref_logprobs - logprobs
    return {"k1": -log_r, "k2": 0.5 * log_r**2, "k3": jnp.expm1(log_r) - log_r}


def per_token_rewards(logprobs: Array, ref_logprobs: Array, scores: Array, mask: Array,
                      kl_coef: float | Array) -> Array:
    """``r_t = -beta (log pi(y_t) - log pi_SFT(y_t))`` on response tokens, plus ``score`` on the last one
    (the KL is estimated by k1 on the sampled tokens, as Ziegler et al. do). logprobs (B, T), scores (B,)."""
    chex.assert_equal_shape([logprobs, ref_logprobs, mask])
    chex.assert_shape(scores, logprobs.shape[:1])
    mask = mask.astype(bool)
    kl = jnp.where(mask, logprobs - ref_logprobs, 0.0)
    return -kl_coef * kl + jnp.where(last_token_mask(mask), scores[:, None], 0.0)


def gae(rewards: Array, values: Array, mask: Array, gamma: float = 1.0, lam: float = 0.95) -> tuple[Array, Array]:
    """Generalised advantage estimation (Schulman et al. 2016), (advantages, returns), each (B, T).

    ``delta_t = r_t + gamma V_{t+1} - V_t`` and ``A_t = delta_t + gamma lam A_{t+1}``, with V_{t+1} = 0 and
    A_{t+1} = 0 past the last response token; returns = A + V. A reverse ``lax.scan`` over time."""
    chex.assert_equal_shape([rewards, values, mask])
    m = mask.astype(rewards.dtype)
    next_m = jnp.concatenate([m[:, 1:], jnp.zeros_like(m[:, :1])], axis=1)
    next_values = jnp.concatenate([values[:, 1:], jnp.zeros_like(values[:, :1])], axis=1) * next_m
    deltas = (rewards + gamma * next_values - values) * m

    def step(carry, x):
        delta, nm = x
        adv = delta + gamma * lam * nm * carry
        return adv, adv

    _, adv = jax.lax.scan(step, jnp.zeros_like(rewards[:, 0]), (deltas.T, next_m.T), reverse=True)
    adv = adv.T * m
    return adv, (adv + values) * m


def whiten(x: Array, mask: Array, shift_mean: bool = True) -> Array:
    """``(x - mean) / sqrt(var + 1e-8)`` over the masked entries (the mean added back unless
    ``shift_mean``); positions outside the mask are 0. Advantage whitening."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    out = (x - mean) * jax.lax.rsqrt(var + 1e-8)
    return jnp.where(mask, out if shift_mean else out + mean, 0.0)


def policy_loss(logprobs: Array, old_logprobs: Array, advantages: Array, mask: Array,
                clip: float = 0.2) -> tuple[Array, dict]:
    """The clipped surrogate ``-E[min(rho A, clip(rho, 1 - eps, 1 + eps) A)]``, ``rho = pi / pi_old``,
    averaged over response tokens. Metrics: ``policy/clipfrac`` (tokens where the clip binds),
    ``policy/approxkl`` (``E[(log rho)^2] / 2``), ``val/ratio`` (mean rho: exactly 1 before an update)."""
    chex.assert_equal_shape([logprobs, old_logprobs, advantages, mask])
    log_ratio = logprobs - old_logprobs
    ratio = jnp.exp(log_ratio)
    unclipped, clipped = -advantages * ratio, -advantages * jnp.clip(ratio, 1 - clip, 1 + clip)
    loss = masked_mean(jnp.maximum(unclipped, clipped), mask)
    return loss, {"policy/clipfrac": masked_mean((clipped > unclipped).astype(ratio.dtype), mask),
                  "policy/approxkl": masked_mean(0.5 * log_ratio**2, mask), "val/ratio": masked_mean(ratio, mask)}


def value_loss(values: Array, old_values: Array, returns: Array, mask: Array,
               clip: float = 0.2) -> tuple[Array, dict]:
    """``E[max((V - R)^2, (clip(V, V_old - c, V_old + c) - R)^2)] / 2`` over response tokens (the clipped
    value loss of the PPO implementations). Metric ``val/clipfrac``."""
    chex.assert_equal_shape([values, old_values, returns, mask])
    clipped = jnp.clip(values, old_values - clip, old_values + clip)
    plain, wide = (values - returns) ** 2, (clipped - returns) ** 2
    loss = 0.5 * masked_mean(jnp.maximum(plain, wide), mask)
    return loss, {"val/clipfrac": masked_mean((wide > plain).astype(values.dtype), mask)}


def entropy(logits: Array) -> Array:
    """``H = -sum_v p_v log p_v`` per position, logits (..., V) -> (...)."""
    log_p = jax.nn.log_softmax(logits.astype(jnp.promote_types(logits.dtype, jnp.float32)), axis=-1)
    return -jnp.sum(jnp.exp(log_p) * log_p, axis=-1)


def adaptive_kl_coef(coef: Array, kl: Array, n_steps: int, *, target: float, horizon: float) -> Array:
    """Ziegler et al. 2019's controller: ``e = clip(KL / KL_target - 1, -0.2, 0.2)``,
    ``beta <- beta (1 + e n / horizon)`` after n samples with mean KL ``kl``."""
    if not target > 0 or not horizon > 0:
        raise ValueError(f"target and horizon must be > 0, got target={target}, horizon={horizon}")
    error = jnp.clip(kl / target - 1, -0.2, 0.2)
    return coef * (1 + error * n_steps / horizon)
