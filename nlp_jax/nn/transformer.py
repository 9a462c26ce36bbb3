"""Thin Flax NNX layers for decoder-only transformers; the math lives in ``nlp_jax.ops``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from nlp_jax import ops

Array = jax.Array


class Linear(nnx.Module):
    """``y = x W + b`` through :func:`nlp_jax.ops.dense`; float32 parameters, ``dtype`` compute."""

    def __init__(self, d_in: int, d_out: int, *, bias: bool, std: float, dtype, rngs: nnx.Rngs):
        self.dtype = dtype
        self.kernel = nnx.Param(jax.random.normal(rngs.params(), (d_in, d_out), jnp.float32) * std)
        self.bias = nnx.Param(jnp.zeros((d_out,), jnp.float32)) if bias else None

    def __call__(self, x: Array) -> Array:
        b = None if self.bias is None else self.bias[...].astype(self.dtype)
        return ops.dense(x.astype(self.dtype), self.kernel[...].astype(self.dtype), b)


class LayerNorm(nnx.Module):
    """Layer normalisation through :func:`nlp_jax.ops.layer_norm`; parameters named as ``nnx.LayerNorm``'s
    (``scale`` ones, ``bias`` zeros or None)."""

    def __init__(self, d: int, *, eps: float = 1e-5, bias: bool = True):
        self.eps = eps
        self.scale = nnx.Param(jnp.ones((d,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((d,), jnp.float32)) if bias else None

    def __call__(self, x: Array) -> Array:
        return ops.layer_norm(x, self.scale[...], None if self.bias is None else self.bias[...], eps=self.eps)


def linear(d_in: int, d_out: int, *, bias: bool, std: float, dtype, rngs: nnx.Rngs) -> Linear:
    """A Linear with GPT-2's initialisation: kernel ~ N(0, std^2), bias 0."""
    return Linear(d_in, d_out, bias=bias, std=std, dtype=dtype, rngs=rngs)


def keys_for(key: Array | None, n: int) -> list[Array | None]:
    """n independent dropout keys derived from ``key`` (or n Nones in evaluation mode)."""
    return [None] * n if key is None else list(jax.random.split(key, n))


class CausalSelfAttention(nnx.Module):
    """Multi-head causal self-attention with a fused QKV projection and an optional KV cache."""

    def __init__(self, d_model: int, num_heads: int, *, bias: bool, dropout: float, proj_std: float,
                 implementation: str | None, dtype, rngs: nnx.Rngs):
        self.num_heads = num_heads
        self.dropout = dropout
        self.implementation = implementation
        self.c_attn = linear(d_model, 3 * d_model, bias=bias, std=0.02, dtype=dtype, rngs=rngs)
        self.c_proj = linear(d_model, d_model, bias=bias, std=proj_std, dtype=dtype, rngs=rngs)

    def __call__(self, x: Array, *, key: Array | None = None, cache: dict | None = None,
                 pos: Array | int = 0) -> tuple[Array, dict | None]:
        attn_key, resid_key = keys_for(key, 2)
        q, k, v = jnp.split(self.c_attn(x), 3, axis=-1)  # 3 x (B, T, D)
        q, k, v = (ops.split_heads(z, self.num_heads) for z in (q, k, v))  # (B, T, H, Dh)
        if cache is None:
            y = ops.scaled_dot_product_attention(
                q, k, v, is_causal=True, dropout_rate=self.dropout, dropout_key=attn_key,
                implementation=self.implementation,
            )
        else:  # write this chunk at positions [pos, pos + T) and attend over the whole cache
            k_all = jax.lax.dynamic_update_slice_in_dim(cache["k"], k.astype(cache["k"].dtype), pos, axis=1)
            v_all = jax.lax.dynamic_update_slice_in_dim(cache["v"], v.astype(cache["v"].dtype), pos, axis=1)
            t, s = q.shape[1], k_all.shape[1]
            mask = jnp.arange(s)[None, :] <= pos + jnp.arange(t)[:, None]  # (T, S)
            y = ops.scaled_dot_product_attention(q, k_all, v_all, mask=mask, implementation=self.implementation)
            cache = {"k": k_all, "v": v_all}
        y = self.c_proj(ops.merge_heads(y))  # (B, T, D)
        return ops.dropout(y, self.dropout, resid_key), cache


_ACTIVATIONS = {
    "gelu": ops.gelu,  # exact erf GELU (torch.nn.GELU(), nanoGPT)
    "gelu_tanh": lambda x: ops.gelu(x, approximate=True),  # GPT-2's "gelu_new"
    "relu": jax.nn.relu,
}


class MLP(nnx.Module):
    """Position-wise feed-forward: ``W2 act(W1 x)``, width 4 d_model."""

    def __init__(self, d_model: int, *, bias: bool, dropout: float, activation: str, proj_std: float,
                 dtype, rngs: nnx.Rngs):
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        self.activation = activation
        self.dropout = dropout
        self.c_fc = linear(d_model, 4 * d_model, bias=bias, std=0.02, dtype=dtype, rngs=rngs)
        self.c_proj = linear(4 * d_model, d_model, bias=bias, std=proj_std, dtype=dtype, rngs=rngs)

    def __call__(self, x: Array, *, key: Array | None = None) -> Array:
        h = _ACTIVATIONS[self.activation](self.c_fc(x))  # (B, T, 4D)
        return ops.dropout(self.c_proj(h), self.dropout, key)
