"""Inverted dropout as a pure function of an explicit key (Srivastava et al. 2014).

The keep/drop decisions come from :func:`hash_bits`, a counter-based hash of each element's position and
the key, not from ``jax.random.bernoulli``: on a CPU threefry costs 5-10 ns an element, the hash 0.2-0.7 ns
(a MiniLM fine-tuning step ran 5% faster with it; BENCHMARKS.md). The mask depends only on the key and
the array's shape, so it is the same on every backend and under any sharding of the array.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

_GOLDEN = 0x9E3779B9  # odd multipliers that spread consecutive counters over the 32 bits
_ROW_MULT = 0x7FEB352D


def _fmix32(x: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finaliser: a bijection of uint32 in which each input bit flips each output bit
    with probability close to 1/2 (avalanche)."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def hash_bits(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """uint32 bits of ``shape``, a deterministic function of ``key`` (a typed PRNG key or raw uint32 key
    data) and each element's position: ``fmix32(fmix32(row * a + k0) + fmix32(col * b + k1))``, ``col`` the
    index along the last axis and ``row`` the flat index over the others (counted modulo 2^32). Uniform and
    independent enough for dropout masks (tested); not a cryptographic or statistical-simulation RNG."""
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    data = jnp.ravel(data).astype(jnp.uint32)
    k0, k1 = data[0], data[1 % data.shape[0]]
    full = tuple(shape) or (1,)
    rows = jax.lax.iota(jnp.uint32, math.prod(full[:-1])).reshape(*full[:-1], 1)
    cols = jax.lax.iota(jnp.uint32, full[-1])
    r = _fmix32(rows * jnp.uint32(_ROW_MULT) + k0)
    c = _fmix32(cols * jnp.uint32(_GOLDEN) + k1)
    return jnp.reshape(_fmix32(r + c), tuple(shape))


def keep_mask(key: jax.Array, rate: float, shape: tuple[int, ...]) -> jax.Array:
    """Boolean (shape): True with probability ``1 - rate`` (to within 2^-32), from :func:`hash_bits`."""
    threshold = min(int(round(rate * 2.0 ** 32)), 2 ** 32 - 1)
    return hash_bits(key, shape) >= jnp.uint32(threshold)


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Zero each element with probability ``rate`` and scale survivors by ``1 / (1 - rate)``.

    ``key=None`` or ``rate == 0`` is the identity (evaluation mode).
    """
    if key is None or rate == 0.0:
        return x
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    return jnp.where(keep_mask(key, rate, x.shape), x / (1.0 - rate), 0).astype(x.dtype)
