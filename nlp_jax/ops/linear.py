"""The affine map ``y = x W + b`` (the fast CPU path is ``nlp_jax.kernels.dense``)."""

from __future__ import annotations

import jax

Array = jax.Array


def dense(x: Array, w: Array, b: Array | None = None) -> Array:
    """``y = x W + b``. x (..., Din), W (Din, Dout), b (Dout,) -> (..., Dout)."""
    if x.shape[-1] != w.shape[0]:
        raise ValueError(f"dense: x has {x.shape[-1]} features but W is {w.shape}")
    y = x @ w
    return y if b is None else y + b
