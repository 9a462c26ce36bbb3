"""Next-token sampling: greedy, temperature, top-k (Fan et al. 2018) and nucleus / top-p (Holtzman et al. 2020)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array
_NEG = -1e30


def top_k_filter(logits: Array, k: int) -> Array:
    """Keep the k largest logits of each row (ties at the k-th value are kept), set the rest to -1e30."""
    if k <= 0:
        raise ValueError(f"top_k must be positive, got {k}")
    k = min(k, logits.shape[-1])
    kth = jax.lax.top_k(logits, k)[0][..., -1:]
    return jnp.where(logits < kth, _NEG, logits)


def top_p_filter(logits: Array, p: float) -> Array:
    """Keep the smallest set of most likely tokens whose probability mass reaches p (always >= 1 token)."""
    if not 0.0 < p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {p}")
    sorted_logits = -jnp.sort(-logits, axis=-1)  # descending
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs  # mass of strictly more likely tokens
    threshold = jnp.min(jnp.where(mass_before < p, sorted_logits, jnp.inf), axis=-1, keepdims=True)
    keep = logits >= threshold  # ties with the last kept token are kept too
    return jnp.where(keep, logits, _NEG)


def sample_logits(
    key: Array,
    logits: Array,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> Array:
    """Draw one token id per row of ``logits`` (..., V). ``temperature == 0`` is greedy (argmax)."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0.0:
        return jnp.argmax(logits, axis=-1)
    logits = logits.astype(jnp.float32) / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None and top_p < 1.0:
        logits = top_p_filter(logits, top_p)
    return jax.random.categorical(key, logits, axis=-1)
