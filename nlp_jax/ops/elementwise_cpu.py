"""Exact GELU, layer normalisation and softmax cross-entropy on CPU by the C++ kernels of ``elementwise_cpu.cc`` (float32),
differentiable through their written-out backward kernels. Built on first use by ``ops.kernels``;
``kernel_available()`` is False when no C++ compiler works, and callers then take their XLA paths."""

from __future__ import annotations

import functools

import jax
import numpy as np

from nlp_jax.ops import kernels

Array = jax.Array
_TARGETS = {"nlp_jax_gelu_fwd": "GeluForward", "nlp_jax_gelu_bwd": "GeluBackward",
            "nlp_jax_layer_norm_fwd": "LayerNormForward", "nlp_jax_layer_norm_bwd": "LayerNormBackward",
            "nlp_jax_xent_fwd": "XentForward", "nlp_jax_xent_bwd": "XentBackward"}


@functools.cache
def kernel_available() -> bool:
    """Whether ``elementwise_cpu.cc`` is built and registered (compiles it on the first call)."""
    return kernels.register("elementwise_cpu.cc", _TARGETS)


def _call(target: str, outs, *args, **attrs):
    return kernels.call(kernel_available, target, outs, *args, **attrs)


def _like(x: Array, shape=None) -> jax.ShapeDtypeStruct:
    return kernels.f32(x.shape if shape is None else shape)


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


def _xent_fwd(logits, targets):
    n = logits.shape[0]
    nll, lse = _call("nlp_jax_xent_fwd", (_like(logits, (n,)), _like(logits, (n,))), logits, targets)
    return nll, (logits, targets, lse)


@jax.custom_vjp
def softmax_cross_entropy(logits: Array, targets: Array) -> Array:
    """Per-row ``logsumexp(z) - z[target]`` for float32 logits (N, V) and int32 targets (N,) in [0, V)."""
    return _xent_fwd(logits, targets)[0]


def _xent_bwd(res, g):
    logits, targets, lse = res
    dlogits = _call("nlp_jax_xent_bwd", _like(logits), logits, targets, lse, g)
    return dlogits, np.zeros(targets.shape, jax.dtypes.float0)


softmax_cross_entropy.defvjp(_xent_fwd, _xent_bwd)
