"""GPT-2 (Radford et al. 2019): a decoder-only transformer with pre-LN blocks and tied input/output embeddings.

``GPT2(config, rngs)(tokens) -> (logits, aux)``; aux holds the final hidden states (for value heads and
reward models) and, when decoding, the updated KV cache. ``generate`` decodes with the cache under jit.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from nlp_jax import ops
from nlp_jax.nn import MLP, CausalSelfAttention, LayerNorm, keys_for

Array = jax.Array


@dataclasses.dataclass(frozen=True, kw_only=True)
class GPT2Config:
    vocab_size: int = 50257  # number of token ids (50257 for GPT-2's BPE)
    block_size: int = 1024  # maximum context length (learned position embeddings)
    n_layer: int = 12  # transformer blocks
    n_head: int = 12  # attention heads per block
    n_embd: int = 768  # model width; head dim = n_embd / n_head
    dropout: float = 0.0  # dropout on embeddings, attention probabilities and residual branches
    bias: bool = True  # biases in Linear and LayerNorm layers (GPT-2: True, nanoGPT char: False)
    activation: str = "gelu_tanh"  # 'gelu_tanh' (GPT-2's gelu_new) or 'gelu' (exact, nanoGPT)
    ln_eps: float = 1e-5  # LayerNorm epsilon
    compute_dtype: str = "float32"  # matmul dtype: 'float32' or 'bfloat16'; params stay float32
    attention: str | None = None  # attention implementation for ops.scaled_dot_product_attention

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")

    @classmethod
    def gpt2_124m(cls, **kw) -> "GPT2Config":
        return cls(**kw)

    @classmethod
    def tiny(cls, **kw) -> "GPT2Config":
        return cls(**{**dict(vocab_size=37, block_size=16, n_layer=2, n_head=2, n_embd=16), **kw})


class Block(nnx.Module):
    """Pre-LN block: ``x + Attn(LN(x))`` then ``x + MLP(LN(x))``."""

    def __init__(self, cfg: GPT2Config, rngs: nnx.Rngs):
        dtype = jnp.dtype(cfg.compute_dtype)
        proj_std = 0.02 / math.sqrt(2 * cfg.n_layer)  # GPT-2's scaled init of residual projections
        ln = functools.partial(LayerNorm, cfg.n_embd, eps=cfg.ln_eps, bias=cfg.bias)
        self.ln_1, self.ln_2 = ln(), ln()
        self.attn = CausalSelfAttention(
            cfg.n_embd, cfg.n_head, bias=cfg.bias, dropout=cfg.dropout, proj_std=proj_std,
            implementation=cfg.attention, dtype=dtype, rngs=rngs,
        )
        self.mlp = MLP(cfg.n_embd, bias=cfg.bias, dropout=cfg.dropout, activation=cfg.activation,
                       proj_std=proj_std, dtype=dtype, rngs=rngs)

    def __call__(self, x, *, key=None, cache=None, pos=0):
        attn_key, mlp_key = keys_for(key, 2)
        a, cache = self.attn(self.ln_1(x), key=attn_key, cache=cache, pos=pos)
        x = x + a
        return x + self.mlp(self.ln_2(x), key=mlp_key), cache


class GPT2(nnx.Module):
    def __init__(self, cfg: GPT2Config, *, rngs: nnx.Rngs):
        self.config = cfg
        init = nnx.initializers.normal(0.02)
        self.wte = nnx.Embed(cfg.vocab_size, cfg.n_embd, embedding_init=init, rngs=rngs)
        self.wpe = nnx.Embed(cfg.block_size, cfg.n_embd, embedding_init=init, rngs=rngs)
        self.h = nnx.List([Block(cfg, rngs) for _ in range(cfg.n_layer)])
        self.ln_f = LayerNorm(cfg.n_embd, eps=cfg.ln_eps, bias=cfg.bias)

    def __call__(self, tokens: Array, *, key: Array | None = None, cache: list | None = None,
                 pos: Array | int = 0) -> tuple[Array, dict]:
        """tokens (B, T) int -> logits (B, T, V); ``key`` enables dropout; ``cache`` from :meth:`init_cache`."""
        chex.assert_rank(tokens, 2)
        cfg = self.config
        t = tokens.shape[1]
        if t > cfg.block_size:
            raise ValueError(f"sequence length {t} exceeds block_size {cfg.block_size}")
        keys = keys_for(key, cfg.n_layer + 1)
        positions = pos + jnp.arange(t)  # (T,)
        x = self.wte(tokens) + self.wpe(positions)[None]  # (B, T, D)
        x = ops.dropout(x, cfg.dropout, keys[-1]).astype(cfg.compute_dtype)
        new_cache = []
        for i, block in enumerate(self.h):
            x, c = block(x, key=keys[i], cache=None if cache is None else cache[i], pos=pos)
            new_cache.append(c)
        h = self.ln_f(x)  # (B, T, D)
        logits = self.wte.attend(h.astype(jnp.float32))  # (B, T, V), tied output layer
        return logits, {"hidden": h, "cache": new_cache if cache is not None else None}

    def init_cache(self, batch: int, length: int) -> list[dict]:
        cfg = self.config
        shape = (batch, length, cfg.n_head, cfg.n_embd // cfg.n_head)
        dtype = jnp.dtype(cfg.compute_dtype)
        return [{"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)} for _ in range(cfg.n_layer)]


def lm_loss(model: GPT2, batch: dict, key: Array | None) -> tuple[Array, dict]:
    """Next-token cross-entropy on ``batch = {'inputs': (B, T), 'targets': (B, T)}`` (optional 'mask')."""
    logits, _ = model(batch["inputs"], key=key)
    loss = ops.cross_entropy(logits, batch["targets"], mask=batch.get("mask"))
    return loss, {}


@functools.partial(jax.jit, static_argnames=("graphdef", "max_new_tokens", "temperature", "top_k", "top_p"))
def _generate(graphdef, state, prompt, key, *, max_new_tokens, temperature, top_k, top_p):
    model = nnx.merge(graphdef, state)
    b, t0 = prompt.shape
    logits, aux = model(prompt, cache=model.init_cache(b, t0 + max_new_tokens), pos=0)

    def step(carry, i):
        last_logits, cache, key = carry
        key, sub = jax.random.split(key)
        tok = ops.sample_logits(sub, last_logits, temperature=temperature, top_k=top_k, top_p=top_p)
        logits, aux = model(tok[:, None], cache=cache, pos=t0 + i)
        return (logits[:, -1], aux["cache"], key), tok

    _, new = jax.lax.scan(step, (logits[:, -1], aux["cache"], key), jnp.arange(max_new_tokens))
    return jnp.concatenate([prompt, new.T.astype(prompt.dtype)], axis=1)


@functools.partial(jax.jit, static_argnames=("graphdef", "steps", "temperature", "top_k", "top_p"))
def _generate_sliding(graphdef, state, window, key, *, steps, temperature, top_k, top_p):
    """Past the context limit: each step re-reads the last ``block_size`` tokens (no cache can slide)."""
    model = nnx.merge(graphdef, state)

    def step(carry, _):
        window, key = carry
        key, sub = jax.random.split(key)
        logits, _ = model(window)
        tok = ops.sample_logits(sub, logits[:, -1], temperature=temperature, top_k=top_k, top_p=top_p)
        return (jnp.concatenate([window[:, 1:], tok[:, None].astype(window.dtype)], axis=1), key), tok

    _, new = jax.lax.scan(step, (window, key), None, length=steps)
    return new.T


def generate(model: GPT2, prompt: Array, max_new_tokens: int, *, key: Array, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None) -> Array:
    """Continue ``prompt`` (B, T0) by ``max_new_tokens`` tokens; returns (B, T0 + max_new_tokens).

    Up to ``block_size`` tokens in all, decoding uses the KV cache; beyond it, each new token is predicted
    from the last ``block_size`` tokens (nanoGPT's cropping), recomputed without a cache.
    """
    prompt = jnp.asarray(prompt)
    block = model.config.block_size
    if prompt.shape[1] > block:
        raise ValueError(f"prompt length {prompt.shape[1]} exceeds block_size {block}")
    sampling = dict(temperature=temperature, top_k=top_k, top_p=top_p)
    graphdef, state = nnx.split(model)
    cached = min(max_new_tokens, block - prompt.shape[1])
    key_cached, key_sliding = jax.random.split(key)
    out = _generate(graphdef, state, prompt, key_cached, max_new_tokens=cached, **sampling)
    if cached < max_new_tokens:
        new = _generate_sliding(graphdef, state, out[:, -block:], key_sliding,
                                steps=max_new_tokens - cached, **sampling)
        out = jnp.concatenate([out, new.astype(out.dtype)], axis=1)
    return out
