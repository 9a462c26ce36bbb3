"""Layer normalisation (Ba et al. 2016) over the last axis, with a CPU kernel behind a backend dispatch.

``layer_norm(x) = (x - mean) / sqrt(var + eps) * scale + bias``, mean and (biased) variance over the last
axis, computed in at least float32. On CPU, float32 inputs go to the C++ kernel of ``elementwise_cpu``
(one pass per row forward and backward, where XLA runs several small kernels); other backends and dtypes
take the reference formula. Both are tested against a float64 reference.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from nlp_jax.ops import elementwise_cpu

Array = jax.Array


def default_implementation(dtype) -> str:
    cpu = jax.default_backend() == "cpu" and jnp.dtype(dtype) == jnp.float32
    return "cpu" if cpu and elementwise_cpu.kernel_available() else "reference"


def _reference(x, scale, bias, eps):
    xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    mean = xf.mean(-1, keepdims=True)
    var = jnp.square(xf - mean).mean(-1, keepdims=True)
    y = (xf - mean) * jax.lax.rsqrt(var + eps) * scale
    return (y if bias is None else y + bias).astype(x.dtype)


def layer_norm(x: Array, scale: Array, bias: Array | None = None, *, eps: float = 1e-5,
               implementation: str | None = None) -> Array:
    """Normalise x (..., d) over its last axis, then scale (d,) and shift by bias (d,) if given.

    implementation: 'reference' (jnp, any backend), 'cpu' (the C++ kernel, float32), or None to pick by
    backend and dtype.
    """
    if scale.shape != x.shape[-1:] or (bias is not None and bias.shape != x.shape[-1:]):
        raise ValueError(f"layer_norm: scale/bias must have shape {x.shape[-1:]}, got {scale.shape}"
                         f"{'' if bias is None else f' and {bias.shape}'}")
    impl = implementation or default_implementation(x.dtype)
    if impl == "cpu":
        scale = scale.astype(jnp.float32)
        bias = jnp.zeros_like(scale) if bias is None else bias.astype(jnp.float32)
        return elementwise_cpu.layer_norm(x.astype(jnp.float32), scale, bias, float(eps)).astype(x.dtype)
    if impl != "reference":
        raise ValueError(f"implementation must be 'reference', 'cpu' or None, got {impl!r}")
    return _reference(x, scale, bias, eps)
