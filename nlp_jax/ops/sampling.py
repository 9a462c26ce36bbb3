"""Next-token sampling: greedy, temperature, top-k (Fan et al. 2018) and nucleus / top-p (Holtzman et al. 2020);
drawing from a fixed discrete distribution in O(1) per draw with an alias table (Walker 1977, Vose 1991)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

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


def alias_table(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vose's alias table for P(i) proportional to ``weights``: (prob (V,) float32, alias (V,) int32) such
    that drawing i uniformly and keeping it with probability prob[i], else taking alias[i], draws from P."""
    w = np.asarray(weights, np.float64)
    if w.ndim != 1 or len(w) == 0 or (w < 0).any() or w.sum() <= 0:
        raise ValueError("weights must be a non-empty 1-D array of non-negative numbers with a positive sum")
    scaled = w * (len(w) / w.sum())
    prob, alias = np.ones(len(w)), np.arange(len(w), dtype=np.int32)
    small, large = list(np.flatnonzero(scaled < 1.0)), list(np.flatnonzero(scaled >= 1.0))
    while small and large:
        s, g = small.pop(), large.pop()
        prob[s], alias[s] = scaled[s], g
        scaled[g] -= 1.0 - scaled[s]
        (small if scaled[g] < 1.0 else large).append(g)
    return prob.astype(np.float32), alias  # leftovers (rounding) keep prob 1


def draw_alias(key: Array, prob: Array, alias: Array, shape: tuple[int, ...]) -> Array:
    """Draws of ``shape`` from the distribution of an ``alias_table``."""
    k_slot, k_coin = jax.random.split(key)
    slot = jax.random.randint(k_slot, shape, 0, prob.shape[0])
    return jnp.where(jax.random.uniform(k_coin, shape) < prob[slot], slot, alias[slot])
