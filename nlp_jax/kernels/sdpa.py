"""Scaled dot-product attention behind the dispatch: the reference (``ops.scaled_dot_product_attention``),
``jax.nn.dot_product_attention`` ('xla', and 'cudnn' flash attention on NVIDIA GPUs), the C++
flash-style causal kernel for CPUs (``csrc/attention.cc``), and 'blockwise' (``kernels.blockwise``: pure
JAX, memory linear in the sequence length, any platform; never chosen by 'auto').

'auto' takes, on CPU, the C++ kernel for float32 plain causal self-attention (no mask, T == S, default
scale); on a CUDA GPU, cuDNN for float16/bfloat16 (masks and causal included); the reference otherwise.
Attention-probability dropout exists on the reference path only: with dropout, 'auto' takes the
reference, and an explicit 'xla' / 'cudnn' / 'cpu' is an error (set the attention dropout to 0 to use
them). The C++ kernel keeps only the log-sum-exp for the backward pass, which recomputes the
probabilities per query block of 64 rows (FlashAttention's scheme); tests/kernels/ prove every path
equal to the reference in float64, gradients included.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from nlp_jax import ops
from nlp_jax.kernels import build, dispatch
from nlp_jax.kernels.blockwise import blockwise_attention

Array = jax.Array
SUPPORTED = ("auto", "reference", "xla", "cudnn", "cpu", "blockwise")
_FORWARD, _BACKWARD = "nlp_jax_causal_attention_fwd", "nlp_jax_causal_attention_bwd"


@functools.cache
def kernel_available() -> bool:
    """Whether ``csrc/attention.cc`` is built and registered (compiles it on the first call)."""
    return build.register("attention.cc", {_FORWARD: "CausalAttentionForward", _BACKWARD: "CausalAttentionBackward"})


def _kernel_forward(q, k, v):
    lse_shape = (*q.shape[:-3], q.shape[-2], q.shape[-3])  # (..., H, T)
    o, lse = build.call(kernel_available, _FORWARD, (build.f32(q.shape), build.f32(lse_shape)), q, k, v)
    return o, (q, k, v, o, lse)


@jax.custom_vjp
def causal_attention_kernel(q: Array, k: Array, v: Array) -> Array:
    """Causal softmax(Q K^T / sqrt(d)) V by the C++ kernel; q, k, v float32 (..., T, H, D)."""
    return _kernel_forward(q, k, v)[0]


def _kernel_backward(res, do):
    q, k, v, o, lse = res
    return build.call(kernel_available, _BACKWARD, tuple(build.f32(x.shape) for x in (q, k, v)), q, k, v, o, lse, do)


causal_attention_kernel.defvjp(_kernel_forward, _kernel_backward)


def _jax_nn(q, k, v, mask, *, is_causal: bool, scale: float, implementation: str):
    """``jax.nn.dot_product_attention`` with this package's conventions: causal masks aligned to the end of
    the keys (the KV-cache convention; jax.nn's is top-left) and zeros on a fully masked row."""
    t, s = q.shape[1], k.shape[1]
    full = ops.attention.full_mask(mask, is_causal, t, s)
    if is_causal and t != s:
        mask, is_causal = full, False
    if mask is not None:
        mask = jnp.broadcast_to(mask, (q.shape[0], q.shape[2], t, s))
    out = jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=is_causal, scale=scale,
                                       implementation=implementation)
    if full is not None and (mask is not None or t > s):  # a row can be fully masked only then
        any_key = jnp.broadcast_to(full, (q.shape[0], q.shape[2], t, s)).any(-1)  # (B, H, T)
        out = jnp.where(any_key.transpose(0, 2, 1)[..., None], out, 0)
    return out


def _head_major(q, k, v, *, mask, is_causal, scale, dropout_rate=0.0, dropout_key=None):
    """The reference's equation laid out for XLA's CPU dot: heads ahead of positions ((B, H, T, Dh), so
    each head's two products are plain batched matmuls), the scale folded into q, and the mask added as
    a -1e30 bias instead of selected before and after the softmax. As in the reference, a row with no
    visible key gives zeros, a value no query may see (padding) never reaches the output, and dropout
    draws the same mask from the same key. 1.6x the reference's forward at MiniLM's shapes (BENCHMARKS.md)."""
    t, s = q.shape[1], k.shape[1]
    full = ops.attention.full_mask(mask, is_causal, t, s)
    if full is not None:
        full = full.reshape((1,) * (4 - full.ndim) + full.shape)  # (B|1, H|1, T, S)
        seen = full.any(axis=-2)  # (B|1, H|1, S): keys some query may see
        v = jnp.where(jnp.broadcast_to(seen, (v.shape[0], seen.shape[1], s)).transpose(0, 2, 1)[..., None], v, 0)
    qh, kh, vh = (x.transpose(0, 2, 1, 3) for x in (q * jnp.asarray(scale, q.dtype), k, v))
    logits = jnp.einsum("bhtd,bhsd->bhts", qh, kh)
    logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
    if full is not None:
        logits = logits + jnp.where(full, 0.0, ops.attention._NEG).astype(logits.dtype)
    probs = jax.nn.softmax(logits, axis=-1)
    if full is not None:
        probs = probs * full.any(axis=-1, keepdims=True)  # a row with no visible key: zeros
    probs = ops.dropout(probs.astype(v.dtype), dropout_rate, dropout_key)
    return jnp.einsum("bhts,bhsd->bhtd", probs, vh).transpose(0, 2, 1, 3)


def _cpu_path(q, k, v, mask, is_causal, default_scale):
    """The C++ kernel where it applies (else None): float32 plain causal self-attention."""
    plain = is_causal and mask is None and q.shape[1] == k.shape[1] and default_scale
    if plain and q.dtype == k.dtype == v.dtype == jnp.float32 and kernel_available():
        return causal_attention_kernel
    return None


def _cuda_path(q, mask, is_causal, scale):
    """cuDNN where it applies (else None): half precision, in a process that has a CUDA GPU."""
    if jnp.dtype(q.dtype) in (jnp.float16, jnp.bfloat16) and dispatch.has_platform("cuda"):
        return lambda q, k, v: _jax_nn(q, k, v, mask, is_causal=is_causal, scale=scale, implementation="cudnn")
    return None


def attention(q: Array, k: Array, v: Array, *, mask: Array | None = None, is_causal: bool = False,
              scale: float | None = None, dropout_rate: float = 0.0, dropout_key: Array | None = None,
              implementation: str | None = None) -> Array:
    """``softmax(Q K^T / sqrt(d_k)) V`` by the chosen implementation (module docstring); arguments and
    result as :func:`nlp_jax.ops.scaled_dot_product_attention`: q (B, T, H, Dh), k, v (B, S, H, Dh),
    mask bool broadcastable to (B, H, T, S), True = may attend."""
    impl = dispatch.check("attention", implementation, SUPPORTED)
    default_scale = scale is None or scale == 1.0 / math.sqrt(q.shape[-1])
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    reference = functools.partial(ops.scaled_dot_product_attention, mask=mask, is_causal=is_causal, scale=scale,
                                  dropout_rate=dropout_rate, dropout_key=dropout_key)
    head_major = functools.partial(_head_major, mask=mask, is_causal=is_causal, scale=scale)
    if dropout_key is not None and dropout_rate > 0.0:
        if impl not in ("auto", "reference"):
            raise ValueError(f"attention: dropout on the attention probabilities needs the reference path, but "
                             f"implementation={impl!r} was asked for; set the attention dropout to 0 or use 'auto'")
        ops.attention.check_inputs(q, k, v, mask)
        dropped = functools.partial(head_major, dropout_rate=dropout_rate, dropout_key=dropout_key)
        return dispatch.run("attention", impl, (q, k, v), reference=reference, cpu=dropped, cpu_auto=True)
    ops.attention.check_inputs(q, k, v, mask)
    if impl == "blockwise":
        return blockwise_attention(q, k, v, mask=mask, is_causal=is_causal, scale=scale)
    if impl == "xla":
        return _jax_nn(q, k, v, mask, is_causal=is_causal, scale=scale, implementation="xla")
    cpu, cuda = _cpu_path(q, k, v, mask, is_causal, default_scale), _cuda_path(q, mask, is_causal, scale)
    if impl == "cpu" and cpu is None:
        raise ValueError("attention: implementation='cpu' is the C++ kernel for float32 causal self-attention "
                         "(is_causal, no mask, T == S, default scale) and needs a working C++ compiler")
    if impl == "cudnn" and cuda is None:
        raise ValueError("attention: implementation='cudnn' needs float16/bfloat16 inputs and a CUDA GPU in this "
                         f"process (inputs are {q.dtype}; GPU present: {dispatch.has_platform('cuda')})")
    if impl == "auto":  # on CPU: the C++ kernel where it applies and the CPU suits it, else head-major XLA
        cpu = cpu if cpu is not None and build.vector_kernels() else head_major
        return dispatch.run("attention", impl, (q, k, v), reference=reference, cpu=cpu, cuda=cuda, cpu_auto=True)
    return dispatch.run("attention", impl, (q, k, v), reference=reference, cpu=cpu, cuda=cuda)
