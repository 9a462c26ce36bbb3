"""Exact GELU, layer normalisation and softmax cross-entropy behind the dispatch, with the C++ CPU kernels
of ``csrc/elementwise.cc`` (float32, one pass per row forward and backward, where XLA runs several small
kernels; their measured effect on the GPT train step is in BENCHMARKS.md). The
references are ``ops.gelu``, ``ops.layer_norm`` and ``ops.cross_entropy``; tests prove each kernel equal
to its reference against float64. ``kernel_available()`` is False when no C++ compiler works; 'auto' then
takes the reference."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from nlp_jax import ops
from nlp_jax.kernels import build, dispatch

Array = jax.Array
_TARGETS = {"nlp_jax_gelu_fwd": "GeluForward", "nlp_jax_gelu_bwd": "GeluBackward",
            "nlp_jax_layer_norm_fwd": "LayerNormForward", "nlp_jax_layer_norm_bwd": "LayerNormBackward",
            "nlp_jax_xent_fwd": "XentForward", "nlp_jax_xent_bwd": "XentBackward"}


@functools.cache
def kernel_available() -> bool:
    """Whether ``csrc/elementwise.cc`` is built and registered (compiles it on the first call)."""
    return build.register("elementwise.cc", _TARGETS)


def _call(target: str, outs, *args, **attrs):
    return build.call(kernel_available, target, outs, *args, **attrs)


def _like(x: Array, shape=None) -> jax.ShapeDtypeStruct:
    return build.f32(x.shape if shape is None else shape)


@jax.custom_vjp
def gelu_kernel(x: Array) -> Array:
    """Exact GELU ``x Phi(x)`` of a float32 array."""
    return _call("nlp_jax_gelu_fwd", _like(x), x)


def _gelu_fwd(x):
    return gelu_kernel(x), x


def _gelu_bwd(x, dy):
    return (_call("nlp_jax_gelu_bwd", _like(x), x, dy),)


gelu_kernel.defvjp(_gelu_fwd, _gelu_bwd)


def _layer_norm_fwd(x, scale, bias, eps):
    outs = (_like(x), _like(x, x.shape[:-1]), _like(x, x.shape[:-1]))
    y, mean, rstd = _call("nlp_jax_layer_norm_fwd", outs, x, scale, bias, eps=np.float32(eps))
    return y, (x, scale, mean, rstd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def layer_norm_kernel(x: Array, scale: Array, bias: Array, eps: float) -> Array:
    """``(x - mean) / sqrt(var + eps) * scale + bias`` over the last axis; float32 x (..., d), scale and
    bias (d,)."""
    return _layer_norm_fwd(x, scale, bias, eps)[0]


def _layer_norm_bwd(eps, res, dy):
    x, scale, mean, rstd = res
    return tuple(_call("nlp_jax_layer_norm_bwd", (_like(x), _like(scale), _like(scale)), x, scale, mean, rstd, dy))


layer_norm_kernel.defvjp(lambda x, scale, bias, eps: _layer_norm_fwd(x, scale, bias, eps), _layer_norm_bwd)


def _xent_fwd(logits, targets):
    n = logits.shape[0]
    nll, lse = _call("nlp_jax_xent_fwd", (_like(logits, (n,)), _like(logits, (n,))), logits, targets)
    return nll, (logits, targets, lse)


@jax.custom_vjp
def cross_entropy_kernel(logits: Array, targets: Array) -> Array:
    """Per-row ``logsumexp(z) - z[target]`` for float32 logits (N, V) and int32 targets (N,) in [0, V)."""
    return _xent_fwd(logits, targets)[0]


def _xent_bwd(res, g):
    logits, targets, lse = res
    dlogits = _call("nlp_jax_xent_bwd", _like(logits), logits, targets, lse, g)
    return dlogits, np.zeros(targets.shape, jax.dtypes.float0)


cross_entropy_kernel.defvjp(_xent_fwd, _xent_bwd)


SUPPORTED = ("auto", "reference", "cpu")


def _require(op: str, impl: str, applies: bool, needs: str) -> None:
    if impl == "cpu" and not applies:
        raise ValueError(f"{op}: implementation='cpu' (the C++ kernel) needs {needs} and a working C++ compiler")


def gelu(x: Array, approximate: bool = False, *, implementation: str | None = None) -> Array:
    """``ops.gelu`` by the chosen implementation; the kernel computes the exact form of float32 inputs."""
    impl = dispatch.check("gelu", implementation, SUPPORTED)
    applies = not approximate and x.dtype == jnp.float32 and kernel_available()
    _require("gelu", impl, applies, "the exact form (approximate=False) of float32 inputs")
    reference = functools.partial(ops.gelu, approximate=approximate)
    return dispatch.run("gelu", impl, (x,), reference=reference, cpu=gelu_kernel if applies else None,
                        cpu_auto=build.vector_kernels(16))  # with 8 lanes XLA's fused loop is faster


def layer_norm(x: Array, scale: Array, bias: Array | None = None, *, eps: float = 1e-5,
               implementation: str | None = None) -> Array:
    """``ops.layer_norm`` by the chosen implementation; the kernel takes float32 inputs."""
    impl = dispatch.check("layer_norm", implementation, SUPPORTED)
    ops.normalization.check_shapes(x, scale, bias)
    applies = x.dtype == jnp.float32 and kernel_available()
    _require("layer_norm", impl, applies, "float32 inputs")

    def cpu(x, scale, bias):
        bias = jnp.zeros_like(scale) if bias is None else bias
        return layer_norm_kernel(x, scale.astype(jnp.float32), bias.astype(jnp.float32), float(eps))

    reference = functools.partial(ops.layer_norm, eps=eps)
    return dispatch.run("layer_norm", impl, (x, scale, bias), reference=reference,
                        cpu=cpu if applies else None)


def cross_entropy(logits: Array, targets: Array, *, mask: Array | None = None, ignore_index: int | None = None,
                  label_smoothing: float = 0.0, reduction: str = "mean", implementation: str | None = None) -> Array:
    """``ops.cross_entropy`` by the chosen implementation; the kernel takes float32 logits, integer targets
    and no label smoothing (the same values, one pass per row)."""
    impl = dispatch.check("cross_entropy", implementation, SUPPORTED)
    integer = jnp.issubdtype(targets.dtype, jnp.integer)
    applies = (logits.dtype == jnp.float32 and integer and label_smoothing == 0.0 and logits.size > 0
               and kernel_available())
    _require("cross_entropy", impl, applies, "float32 logits, integer targets, no label smoothing")
    if not applies:  # soft targets, smoothing, other dtypes: the reference, reduction included
        return ops.cross_entropy(logits, targets, mask=mask, ignore_index=ignore_index,
                                 label_smoothing=label_smoothing, reduction=reduction)

    def cpu(logits, targets):
        ops.losses.check_label_shapes(logits, targets)
        safe = targets if ignore_index is None else jnp.where(targets == ignore_index, 0, targets)
        valid = (safe >= 0) & (safe < logits.shape[-1])  # as the reference: NaN for an id outside [0, V)
        clipped = jnp.clip(safe, 0, logits.shape[-1] - 1).reshape(-1).astype(jnp.int32)  # never read out of bounds
        per_token = cross_entropy_kernel(logits.reshape(-1, logits.shape[-1]), clipped).reshape(targets.shape)
        return jnp.where(valid, per_token, jnp.nan)

    reference = functools.partial(ops.cross_entropy, ignore_index=ignore_index, reduction="none")
    per_token = dispatch.run("cross_entropy", impl, (logits, targets), reference=reference, cpu=cpu)
    return ops.losses.reduce(per_token, ops.losses.label_weights(targets, mask, ignore_index), reduction)
