"""Layer normalisation (Ba et al. 2016) over the last axis.

``layer_norm(x) = (x - mean) / sqrt(var + eps) * scale + bias``, mean and (biased) variance over the last
axis, computed in at least float32. The fast CPU path is ``nlp_jax.kernels.layer_norm``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def check_shapes(x: Array, scale: Array, bias: Array | None) -> None:
    if scale.shape != x.shape[-1:] or (bias is not None and bias.shape != x.shape[-1:]):
        raise ValueError(f"layer_norm: scale/bias must have shape {x.shape[-1:]}, got {scale.shape}"
                         f"{'' if bias is None else f' and {bias.shape}'}")


def layer_norm(x: Array, scale: Array, bias: Array | None = None, *, eps: float = 1e-5) -> Array:
    """Normalise x (..., d) over its last axis, then scale (d,) and shift by bias (d,) if given."""
    check_shapes(x, scale, bias)
    xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    mean = xf.mean(-1, keepdims=True)
    var = jnp.square(xf - mean).mean(-1, keepdims=True)
    y = (xf - mean) * jax.lax.rsqrt(var + eps) * scale
    return (y if bias is None else y + bias).astype(x.dtype)
