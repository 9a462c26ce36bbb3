"""Inverted dropout as a pure function of an explicit key (Srivastava et al. 2014)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Zero each element with probability ``rate`` and scale survivors by ``1 / (1 - rate)``.

    ``key=None`` or ``rate == 0`` is the identity (evaluation mode).
    """
    if key is None or rate == 0.0:
        return x
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0).astype(x.dtype)
