"""Blockwise attention in pure JAX: ``softmax(Q K^T * scale) V`` with memory linear in the sequence length,
on every backend (Rabe & Staats 2021; FlashAttention's backward, Dao et al. 2022).

The forward pass takes the queries a block at a time and runs an online softmax over blocks of keys: for
each key block it keeps the running maximum m, the running sum l of exp(s - m) and the running output,
rescaling both by exp(m_old - m_new) as the maximum grows; it saves only the output and the per-row
log-sum-exp (lse). The custom VJP recomputes each block's probabilities ``P = exp(S - lse)`` and forms
``dV = P^T dO``, ``dS = P * (dO V^T - rowsum(dO * O))``, ``dQ = dS K``, ``dK = dS^T Q`` (scaled), one pass
over query blocks for dQ and one over key blocks for dK and dV, so no (T x S) array ever exists (unless the
caller passes a full (T, S) mask). Masks follow the reference (``ops.scaled_dot_product_attention``): a bool
mask broadcastable to (B, H, T, S), the causal mask aligned to the end of the keys, a row with no visible key
gives zeros, and a value no query may see never reaches the output. Softmax statistics are float32 (or
float64 for float64 inputs); the output has the inputs' dtype.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array


class _Shape(NamedTuple):
    t: int  # real query positions
    s: int  # real key positions
    bq: int  # query block
    bk: int  # key block
    causal: bool
    scale: float


def _slice(x: Array, start, size: int, axis: int) -> Array:
    return x if x.shape[axis] == 1 else jax.lax.dynamic_slice_in_dim(x, start, size, axis)


def _allowed(mask: Array | None, i0, j0, sh: _Shape) -> Array:
    """(B|1, H|1, bq, bk) bool: which keys of block j0 each query of block i0 may see."""
    qi, kj = i0 + jnp.arange(sh.bq), j0 + jnp.arange(sh.bk)
    ok = (kj < sh.s)[None, :] & (qi < sh.t)[:, None]
    if sh.causal:
        ok &= kj[None, :] <= qi[:, None] + (sh.s - sh.t)
    ok = ok[None, None]
    if mask is not None:
        ok = ok & _slice(_slice(mask, i0, sh.bq, 2), j0, sh.bk, 3)
    return ok


def _scores(qb, kb, mask, i0, j0, sh):
    s = jnp.einsum("bhqd,bhkd->bhqk", qb, kb, preferred_element_type=_acc(qb)) * sh.scale
    ok = _allowed(mask, i0, j0, sh)
    return s, ok


def _acc(x: Array):
    return jnp.promote_types(x.dtype, jnp.float32)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _attend(q, k, v, mask, sh: _Shape):
    return _forward(q, k, v, mask, sh)[0]


def _forward(q, k, v, mask, sh: _Shape):
    """q (B, H, Tp, D), k, v (B, H, Sp, D), padded to whole blocks -> (out, residuals)."""
    n_k = k.shape[2] // sh.bk

    def query_block(i):
        i0 = i * sh.bq
        qb = jax.lax.dynamic_slice_in_dim(q, i0, sh.bq, 2)

        def key_block(carry, j):
            m, l, acc = carry
            j0 = j * sh.bk
            kb, vb = (jax.lax.dynamic_slice_in_dim(x, j0, sh.bk, 2) for x in (k, v))
            s, ok = _scores(qb, kb, mask, i0, j0, sh)
            m_new = jnp.maximum(m, jnp.where(ok, s, -jnp.inf).max(-1))
            m_safe = jnp.where(jnp.isfinite(m_new), m_new, 0.0)
            p = jnp.where(ok, jnp.exp(s - m_safe[..., None]), 0.0)
            corr = jnp.exp(m - m_safe)  # 0 while nothing was visible (m = -inf)
            acc = acc * corr[..., None] + jnp.einsum("bhqk,bhkd->bhqd", p, vb.astype(p.dtype))
            return (m_new, l * corr + p.sum(-1), acc), None

        stats = qb.shape[:3]
        init = (jnp.full(stats, -jnp.inf, _acc(q)), jnp.zeros(stats, _acc(q)), jnp.zeros(qb.shape, _acc(q)))
        (m, l, acc), _ = jax.lax.scan(key_block, init, jnp.arange(n_k))
        seen = l > 0
        out = jnp.where(seen[..., None], acc / jnp.where(seen, l, 1.0)[..., None], 0.0)
        return out.astype(q.dtype), jnp.where(seen, m + jnp.log(jnp.where(seen, l, 1.0)), -jnp.inf)

    out, lse = jax.lax.map(query_block, jnp.arange(q.shape[2] // sh.bq))  # (nq, B, H, bq, ...)
    out = jnp.moveaxis(out, 0, 2).reshape(q.shape)
    lse = jnp.moveaxis(lse, 0, 2).reshape(q.shape[:3])
    return out, (q, k, v, mask, out, lse)


def _backward(sh: _Shape, res, do):
    q, k, v, mask, out, lse = res
    delta = jnp.sum(do.astype(_acc(q)) * out.astype(_acc(q)), -1)  # (B, H, Tp): rowsum(dO * O)
    lse_safe = jnp.where(jnp.isfinite(lse), lse, 0.0)

    def probs(i0, j0):
        qb, dob = (jax.lax.dynamic_slice_in_dim(x, i0, sh.bq, 2) for x in (q, do))
        kb, vb = (jax.lax.dynamic_slice_in_dim(x, j0, sh.bk, 2) for x in (k, v))
        s, ok = _scores(qb, kb, mask, i0, j0, sh)
        p = jnp.where(ok, jnp.exp(s - jax.lax.dynamic_slice_in_dim(lse_safe, i0, sh.bq, 2)[..., None]), 0.0)
        dp = jnp.einsum("bhqd,bhkd->bhqk", dob, vb, preferred_element_type=p.dtype)
        ds = p * (dp - jax.lax.dynamic_slice_in_dim(delta, i0, sh.bq, 2)[..., None])
        return qb, kb, dob, p, ds

    def dq_block(i):
        def body(dq, j):
            _, kb, _, _, ds = probs(i * sh.bq, j * sh.bk)
            return dq + jnp.einsum("bhqk,bhkd->bhqd", ds, kb.astype(ds.dtype)), None

        init = jnp.zeros((*q.shape[:2], sh.bq, q.shape[3]), _acc(q))
        return jax.lax.scan(body, init, jnp.arange(k.shape[2] // sh.bk))[0] * sh.scale

    def dkv_block(j):
        def body(carry, i):
            dk, dv = carry
            qb, _, dob, p, ds = probs(i * sh.bq, j * sh.bk)
            return (dk + jnp.einsum("bhqk,bhqd->bhkd", ds, qb.astype(ds.dtype)),
                    dv + jnp.einsum("bhqk,bhqd->bhkd", p, dob.astype(p.dtype))), None

        zeros = jnp.zeros((*k.shape[:2], sh.bk, k.shape[3]), _acc(k))
        (dk, dv), _ = jax.lax.scan(body, (zeros, zeros), jnp.arange(q.shape[2] // sh.bq))
        return dk * sh.scale, dv

    def unblock(x, like):
        return jnp.moveaxis(x, 0, 2).reshape(like.shape).astype(like.dtype)

    dq = unblock(jax.lax.map(dq_block, jnp.arange(q.shape[2] // sh.bq)), q)
    dk, dv = jax.lax.map(dkv_block, jnp.arange(k.shape[2] // sh.bk))
    return dq, unblock(dk, k), unblock(dv, v), None


_attend.defvjp(_forward, _backward)


def _pad(x: Array, axis: int, to: int, value=0) -> Array:
    if x.shape[axis] in (1, to):
        return x
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, to - x.shape[axis])
    return jnp.pad(x, widths, constant_values=value)


def blockwise_attention(q: Array, k: Array, v: Array, *, mask: Array | None = None, is_causal: bool = False,
                        scale: float, block_q: int = 512, block_k: int = 512) -> Array:
    """q (B, T, H, Dh), k, v (B, S, H, Dh), mask bool broadcastable to (B, H, T, S) -> (B, T, H, Dh); the
    arguments and the result of the reference (module docstring). ``block_q`` / ``block_k``: positions a block
    (cut to the sequence when it is shorter); the sequences are padded to whole blocks."""
    if block_q < 1 or block_k < 1:
        raise ValueError(f"block_q and block_k must be >= 1, got {block_q} and {block_k}")
    t, s = q.shape[1], k.shape[1]
    bq, bk = min(block_q, t), min(block_k, s)
    tp, sp = -(-t // bq) * bq, -(-s // bk) * bk
    if mask is not None:
        mask = mask.reshape((1,) * (4 - mask.ndim) + mask.shape)
        # a key no query may see contributes nothing, even a NaN or inf value (the reference's rule)
        seen = mask.any(axis=2) if not is_causal or mask.shape[2] == 1 else (
            mask & (jnp.arange(s)[None, :] <= jnp.arange(t)[:, None] + (s - t))).any(axis=2)  # (B|1, H|1, S|1)
        v = jnp.where(jnp.broadcast_to(seen, (v.shape[0], v.shape[2], s)).transpose(0, 2, 1)[..., None], v, 0)
        mask = _pad(_pad(mask, 2, tp, False), 3, sp, False)
    qh, kh, vh = (_pad(x.transpose(0, 2, 1, 3), 2, n) for x, n in ((q, tp), (k, sp), (v, sp)))
    out = _attend(qh, kh, vh, mask, _Shape(t, s, bq, bk, is_causal, float(scale)))
    return out[:, :, :t].transpose(0, 2, 1, 3)
