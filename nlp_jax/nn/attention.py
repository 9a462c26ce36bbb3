"""Multi-head attention layers: self-attention (causal for decoders, bidirectional for encoders) with a
key padding mask and a KV cache, and cross-attention with cached encoder keys and values. The math is
``ops.self_attention`` / ``ops.cross_attention`` (the references these layers are tested against); the
core runs through the dispatch, ``kernels.attention``.

Masks are boolean key masks, True = a real token: (B, S) over the keys (S = T without a cache, the cache
length with one). A query whose keys are all masked (a left-padding position) gets a zero output.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from nlp_jax import kernels, ops
from nlp_jax.nn.layers import Linear, keys_for

Array = jax.Array


class SelfAttention(nnx.Module):
    """``ops.self_attention`` with a fused QKV projection (``c_attn``, GPT-2's name) and an output projection
    (``c_proj``); ``causal=True`` masks the future. ``attn_dropout`` drops attention probabilities (on the
    reference path only; see ``kernels.attention``), ``dropout`` the output."""

    def __init__(self, d_model: int, num_heads: int, *, causal: bool, bias: bool, dropout: float, proj_std: float,
                 implementation: str | None, dtype, rngs: nnx.Rngs, attn_dropout: float | None = None):
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        self.num_heads, self.causal, self.implementation = num_heads, causal, implementation
        self.dropout = dropout
        self.attn_dropout = dropout if attn_dropout is None else attn_dropout
        self.c_attn = Linear(d_model, 3 * d_model, bias=bias, std=0.02, dtype=dtype, rngs=rngs)
        self.c_proj = Linear(d_model, d_model, bias=bias, std=proj_std, dtype=dtype, rngs=rngs)

    def _mask(self, mask: Array | None, t: int, s: int, index) -> tuple[Array | None, bool]:
        """(attention mask broadcastable to (B, H, T, S), is_causal) for queries at index .. index + T - 1."""
        key_mask = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, S)
        if index is None:  # no cache: queries and keys are the same T positions
            return key_mask, self.causal
        slots = jnp.arange(s)[None, :]
        if self.causal:
            allowed = slots <= index + jnp.arange(t)[:, None]  # (T, S): keys up to each query's position
        else:
            allowed = jnp.broadcast_to(slots < index + t, (t, s))  # every key written so far
        return allowed if key_mask is None else jnp.logical_and(allowed, key_mask), False

    def __call__(self, x: Array, *, mask: Array | None = None, key: Array | None = None, cache: dict | None = None,
                 index: Array | int = 0, rows: Array | None = None) -> tuple[Array, dict | None]:
        """x (B, T, D); mask (B, S) bool key mask; cache {'k', 'v'} (B, S, H, Dh) written at [index, index + T).
        ``rows`` (B, K) int (bidirectional attention without a cache only): only the queries of these
        positions are computed, over the keys and values of all T, and y is (B, K, D), equal to those rows
        of the full y. Returns (y (B, T, D), the updated cache or None)."""
        attn_key, resid_key = keys_for(key, 2)
        if rows is None:
            q, k, v = jnp.split(self.c_attn(x), 3, axis=-1)  # 3 x (B, T, D)
        else:
            if self.causal or cache is not None:
                raise ValueError("SelfAttention: rows= is for bidirectional attention without a cache")
            d = x.shape[-1]
            q = self.c_attn(jnp.take_along_axis(x, rows[..., None], axis=1), columns=slice(0, d))  # (B, K, D)
            k, v = jnp.split(self.c_attn(x, columns=slice(d, None)), 2, axis=-1)
        q, k, v = (ops.split_heads(z, self.num_heads) for z in (q, k, v))  # (B, T, H, Dh)
        if cache is not None:
            k = jax.lax.dynamic_update_slice_in_dim(cache["k"], k.astype(cache["k"].dtype), index, axis=1)
            v = jax.lax.dynamic_update_slice_in_dim(cache["v"], v.astype(cache["v"].dtype), index, axis=1)
            cache = {"k": k, "v": v}
        attn_mask, is_causal = self._mask(mask, q.shape[1], k.shape[1], None if cache is None else index)
        y = kernels.attention(q, k, v, mask=attn_mask, is_causal=is_causal, dropout_rate=self.attn_dropout,
                              dropout_key=attn_key, implementation=self.implementation)  # (B, T, H, Dh)
        y = self.c_proj(ops.merge_heads(y))  # (B, T, D)
        return ops.dropout(y, self.dropout, resid_key), cache


class CrossAttention(nnx.Module):
    """``ops.cross_attention``: queries from the decoder states, keys and values from the encoder outputs
    (``encode`` computes them once per source, so each decoding step reuses them), then ``out``."""

    def __init__(self, d_model: int, num_heads: int, *, d_enc: int | None = None, bias: bool, dropout: float,
                 proj_std: float, implementation: str | None, dtype, rngs: nnx.Rngs):
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        d_enc = d_enc or d_model
        self.num_heads, self.dropout, self.implementation = num_heads, dropout, implementation
        self.q = Linear(d_model, d_model, bias=bias, std=0.02, dtype=dtype, rngs=rngs)
        self.kv = Linear(d_enc, 2 * d_model, bias=bias, std=0.02, dtype=dtype, rngs=rngs)
        self.out = Linear(d_model, d_model, bias=bias, std=proj_std, dtype=dtype, rngs=rngs)

    def encode(self, h_enc: Array) -> dict:
        """{'k', 'v'}: (B, S, H, Dh) keys and values of the encoder outputs h_enc (B, S, De)."""
        k, v = jnp.split(self.kv(h_enc), 2, axis=-1)
        return {"k": ops.split_heads(k, self.num_heads), "v": ops.split_heads(v, self.num_heads)}

    def __call__(self, x: Array, h_enc: Array | None = None, *, enc_mask: Array | None = None,
                 kv: dict | None = None, key: Array | None = None) -> Array:
        """x (B, T, D) decoder states; h_enc (B, S, De) or its cached ``kv``; enc_mask (B, S) bool."""
        kv = self.encode(h_enc) if kv is None else kv
        q = ops.split_heads(self.q(x), self.num_heads)  # (B, T, H, Dh)
        mask = None if enc_mask is None else enc_mask[:, None, None, :]
        y = kernels.attention(q, kv["k"], kv["v"], mask=mask, implementation=self.implementation)
        return ops.dropout(self.out(ops.merge_heads(y)), self.dropout, key)
