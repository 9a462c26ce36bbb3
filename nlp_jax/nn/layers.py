"""Thin Flax NNX layers that own parameters and call the dispatch (``nlp_jax.kernels``); the math lives in
``nlp_jax.ops``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from nlp_jax import kernels, ops

Array = jax.Array


class Linear(nnx.Module):
    """``y = x W + b`` through :func:`nlp_jax.kernels.dense`; float32 parameters, ``dtype`` compute.
    Kernel ~ N(0, std^2) (GPT-2's initialisation), bias 0."""

    def __init__(self, d_in: int, d_out: int, *, bias: bool, std: float, dtype, rngs: nnx.Rngs):
        self.dtype = dtype
        self.kernel = nnx.Param(jax.random.normal(rngs.params(), (d_in, d_out), jnp.float32) * std)
        self.bias = nnx.Param(jnp.zeros((d_out,), jnp.float32)) if bias else None

    def __call__(self, x: Array, *, columns: slice = slice(None)) -> Array:
        """``x W + b``, or only the output ``columns`` of it (a slice of W's columns and b)."""
        b = None if self.bias is None else self.bias[columns].astype(self.dtype)
        return kernels.dense(x.astype(self.dtype), self.kernel[:, columns].astype(self.dtype), b)


class LayerNorm(nnx.Module):
    """Layer normalisation through :func:`nlp_jax.kernels.layer_norm`; parameters named as
    ``nnx.LayerNorm``'s (``scale`` ones, ``bias`` zeros or None)."""

    def __init__(self, d: int, *, eps: float = 1e-5, bias: bool = True):
        self.eps = eps
        self.scale = nnx.Param(jnp.ones((d,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((d,), jnp.float32)) if bias else None

    def __call__(self, x: Array) -> Array:
        return kernels.layer_norm(x, self.scale[...], None if self.bias is None else self.bias[...], eps=self.eps)


def guard_ids(x: Array, tokens: Array, vocab_size: int) -> Array:
    """NaN the embeddings ``x`` (..., D) of ids outside [0, vocab_size): a bad id must never embed as
    another token (``nnx.Embed`` clamps it), so it shows in the loss instead."""
    return jnp.where(((tokens >= 0) & (tokens < vocab_size))[..., None], x, jnp.nan)


def keys_for(key: Array | None, n: int) -> list[Array | None]:
    """n independent dropout keys derived from ``key`` (or n Nones in evaluation mode)."""
    return [None] * n if key is None else list(jax.random.split(key, n))


ACTIVATIONS = {
    "gelu": kernels.gelu,  # exact erf GELU (torch.nn.GELU(), nanoGPT, BERT)
    "gelu_tanh": lambda x: kernels.gelu(x, approximate=True),  # GPT-2's "gelu_new"
    "relu": jax.nn.relu,
}


class MLP(nnx.Module):
    """Position-wise feed-forward: ``W2 act(W1 x)``, width ``hidden`` (default 4 d_model)."""

    def __init__(self, d_model: int, *, bias: bool, dropout: float, activation: str, proj_std: float,
                 dtype, rngs: nnx.Rngs, hidden: int | None = None):
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        hidden = hidden or 4 * d_model
        self.activation = activation
        self.dropout = dropout
        self.c_fc = Linear(d_model, hidden, bias=bias, std=0.02, dtype=dtype, rngs=rngs)
        self.c_proj = Linear(hidden, d_model, bias=bias, std=proj_std, dtype=dtype, rngs=rngs)

    def __call__(self, x: Array, *, key: Array | None = None) -> Array:
        h = ACTIVATIONS[self.activation](self.c_fc(x))  # (B, T, 4D)
        return ops.dropout(self.c_proj(h), self.dropout, key)
