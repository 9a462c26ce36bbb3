"""Exact GELU and layer normalisation on CPU by the C++ kernels of ``elementwise_cpu.cc`` (float32),
differentiable through their written-out backward kernels. Built on first use by ``ops.kernels``;
``kernel_available()`` is False when no C++ compiler works, and callers then take their XLA paths."""

from __future__ import annotations

import functools

import jax
import numpy as np

Array = jax.Array
_TARGETS = {"nlp_jax_gelu_fwd": "GeluForward", "nlp_jax_gelu_bwd": "GeluBackward",
            "nlp_jax_layer_norm_fwd": "LayerNormForward", "nlp_jax_layer_norm_bwd": "LayerNormBackward"}


@functools.cache
def kernel_available() -> bool:
    """Whether ``elementwise_cpu.cc`` is built and registered (compiles it on the first call)."""
    from nlp_jax.ops import kernels

    return kernels.register("elementwise_cpu.cc", _TARGETS)


def _call(target: str, outs, *args, **attrs):
    if not kernel_available():
        raise RuntimeError("the elementwise CPU kernels are unavailable (no working C++ compiler)")
    return jax.ffi.ffi_call(target, outs, vmap_method="broadcast_all")(*args, **attrs)


def _like(x: Array, shape=None) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(x.shape if shape is None else shape, np.float32)


@jax.custom_vjp
def gelu(x: Array) -> Array:
    """Exact GELU ``x Phi(x)`` of a float32 array."""
    return _call("nlp_jax_gelu_fwd", _like(x), x)


def _gelu_fwd(x):
    return gelu(x), x


def _gelu_bwd(x, dy):
    return (_call("nlp_jax_gelu_bwd", _like(x), x, dy),)


gelu.defvjp(_gelu_fwd, _gelu_bwd)


def _layer_norm_fwd(x, scale, bias, eps):
    outs = (_like(x), _like(x, x.shape[:-1]), _like(x, x.shape[:-1]))
    y, mean, rstd = _call("nlp_jax_layer_norm_fwd", outs, x, scale, bias, eps=np.float32(eps))
    return y, (x, scale, mean, rstd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def layer_norm(x: Array, scale: Array, bias: Array, eps: float) -> Array:
    """``(x - mean) / sqrt(var + eps) * scale + bias`` over the last axis; float32 x (..., d), scale and
    bias (d,)."""
    return _layer_norm_fwd(x, scale, bias, eps)[0]


def _layer_norm_bwd(eps, res, dy):
    x, scale, mean, rstd = res
    return tuple(_call("nlp_jax_layer_norm_bwd", (_like(x), _like(scale), _like(scale)), x, scale, mean, rstd, dy))


layer_norm.defvjp(lambda x, scale, bias, eps: _layer_norm_fwd(x, scale, bias, eps), _layer_norm_bwd)
