"""Causal self-attention for CPUs: query blocks that skip the keys above the diagonal, with the
backward pass written out.

Queries are cut into blocks of ``BLOCK`` rows; block [a, b) attends only to keys [0, b), so for long
sequences about half of the T x T score matrix is never computed (the fraction is (n + 1) / 2n for n
blocks). Softmax rows are complete within a block, so no online rescaling is needed. The backward pass
is the standard one, stated per block with the saved probabilities P:

    dV = P^T dO,   dP = dO V^T,   dS = P * (dP - rowsum(dO * O)),   dQ = dS K / sqrt(d),   dK = dS^T Q / sqrt(d)

Values and gradients equal the reference path within float32 rounding (tests/ops/test_attention.py).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

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
def causal_attention_cpu(q: Array, k: Array, v: Array) -> Array:
    """Causal softmax(Q K^T / sqrt(d)) V for q, k, v of shape (B, T, H, D); returns (B, T, H, D)."""
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


causal_attention_cpu.defvjp(_forward, _backward)
