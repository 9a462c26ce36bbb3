"""Causal self-attention for CPUs: query blocks that skip the keys above the diagonal, with the
backward pass written out.

Two implementations, one dispatch (``causal_attention_cpu``): the C++ kernel ``attention_cpu.cc``
(float32, flash-attention style, built on first use by ``ops.kernels``) and, where it cannot run (another
dtype, no C++ compiler), the XLA formulation below (``causal_attention_xla``). Both equal the reference
path within float32 rounding, gradients included (tests/ops/test_attention_cpu.py).

The XLA formulation:
Queries are cut into blocks of ``BLOCK`` rows; block [a, b) attends only to keys [0, b), so for long
sequences about half of the T x T score matrix is never computed (the fraction is (n + 1) / 2n for n
blocks). Softmax rows are complete within a block, so no online rescaling is needed. The backward pass
is the standard one, stated per block with the saved probabilities P:

    dV = P^T dO,   dP = dO V^T,   dS = P * (dP - rowsum(dO * O)),   dQ = dS K / sqrt(d),   dK = dS^T Q / sqrt(d)
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from nlp_jax.ops import kernels

Array = jax.Array
BLOCK = 128
_NEG = -1e30


def _blocks(t: int) -> list[tuple[int, int]]:
    size = t if t <= BLOCK else BLOCK
    return [(a, min(a + size, t)) for a in range(0, t, size)]


def _heads_first(x: Array) -> Array:
    """(B, T, H, D) -> (B, H, T, D), materialised so later slices are contiguous."""
    return jax.lax.optimization_barrier(jnp.transpose(x, (0, 2, 1, 3)))


def _probs(q: Array, k: Array, scale: float, offset: int) -> Array:
    """Causal softmax(q k^T * scale) for queries at absolute positions offset + i over keys 0..S-1."""
    s = jnp.einsum("bhtd,bhsd->bhts", q, k) * scale
    allowed = jnp.arange(k.shape[2])[None, :] <= offset + jnp.arange(q.shape[2])[:, None]
    s = jnp.where(allowed, s, _NEG)
    p = jnp.exp(s - s.max(-1, keepdims=True))
    return p / p.sum(-1, keepdims=True)


def _forward(q, k, v):
    scale = 1.0 / math.sqrt(q.shape[-1])
    qh, kh, vh = _heads_first(q), _heads_first(k), _heads_first(v)
    outs, probs = [], []
    for a, b in _blocks(q.shape[1]):
        p = _probs(qh[:, :, a:b], kh[:, :, :b], scale, a)  # (B, H, b-a, b)
        outs.append(jnp.einsum("bhts,bhsd->bhtd", p, vh[:, :, :b]))
        probs.append(p)
    o = jnp.concatenate(outs, axis=2)  # (B, H, T, D)
    return jnp.transpose(o, (0, 2, 1, 3)), (qh, kh, vh, o, tuple(probs))


@jax.custom_vjp
def causal_attention_xla(q: Array, k: Array, v: Array) -> Array:
    """Causal softmax(Q K^T / sqrt(d)) V for q, k, v of shape (B, T, H, D), in XLA ops; returns (B, T, H, D)."""
    return _forward(q, k, v)[0]


def _backward(res, do):
    qh, kh, vh, o, probs = res
    scale = 1.0 / math.sqrt(qh.shape[-1])
    doh = _heads_first(do)
    delta = jnp.sum(doh * o, axis=-1, keepdims=True)  # rowsum(dO * O): (B, H, T, 1)
    dq, dk, dv = [], jnp.zeros_like(kh), jnp.zeros_like(vh)
    for (a, b), p in zip(_blocks(qh.shape[2]), probs):
        do_blk = doh[:, :, a:b]
        dv = dv.at[:, :, :b].add(jnp.einsum("bhts,bhtd->bhsd", p, do_blk))
        ds = p * (jnp.einsum("bhtd,bhsd->bhts", do_blk, vh[:, :, :b]) - delta[:, :, a:b])
        dq.append(jnp.einsum("bhts,bhsd->bhtd", ds, kh[:, :, :b]) * scale)
        dk = dk.at[:, :, :b].add(jnp.einsum("bhts,bhtd->bhsd", ds, qh[:, :, a:b]) * scale)
    back = lambda x: jnp.transpose(x, (0, 2, 1, 3))  # noqa: E731
    return back(jnp.concatenate(dq, axis=2)), back(dk), back(dv)


causal_attention_xla.defvjp(_forward, _backward)


# ---- the C++ kernel ------------------------------------------------------------------------------------

_FORWARD, _BACKWARD = "nlp_jax_causal_attention_fwd", "nlp_jax_causal_attention_bwd"


@functools.cache
def kernel_available() -> bool:
    """Whether ``attention_cpu.cc`` is built and registered (compiles it on the first call)."""
    return kernels.register("attention_cpu.cc", {_FORWARD: "CausalAttentionForward", _BACKWARD: "CausalAttentionBackward"})


def _kernel_forward(q, k, v):
    lse_shape = (*q.shape[:-3], q.shape[-2], q.shape[-3])  # (..., H, T)
    o, lse = kernels.call(kernel_available, _FORWARD, (kernels.f32(q.shape), kernels.f32(lse_shape)), q, k, v)
    return o, (q, k, v, o, lse)


@jax.custom_vjp
def causal_attention_kernel(q: Array, k: Array, v: Array) -> Array:
    """Causal softmax(Q K^T / sqrt(d)) V by the C++ kernel; q, k, v float32 (..., T, H, D)."""
    return _kernel_forward(q, k, v)[0]


def _kernel_backward(res, do):
    q, k, v, o, lse = res
    return kernels.call(kernel_available, _BACKWARD, tuple(kernels.f32(x.shape) for x in (q, k, v)), q, k, v, o, lse, do)


causal_attention_kernel.defvjp(_kernel_forward, _kernel_backward)


def causal_attention_cpu(q: Array, k: Array, v: Array) -> Array:
    """Causal softmax(Q K^T / sqrt(d)) V for q, k, v of shape (B, T, H, D): the C++ kernel for float32
    where it is available, else the XLA formulation. Returns (B, T, H, D)."""
    if q.dtype == k.dtype == v.dtype == jnp.float32 and kernel_available():
        return causal_attention_kernel(q, k, v)
    return causal_attention_xla(q, k, v)
