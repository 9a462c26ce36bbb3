"""GPT-2 (Radford et al. 2019): a decoder-only transformer with pre-LN blocks and tied input/output embeddings.

``GPT2(config, rngs)(tokens, *, positions=None, attention_mask=None, cache=None, key=None) -> (logits, aux)``
(the package's model convention); aux holds the final hidden states (for value heads and reward models)
and, when decoding, the updated KV cache. ``generate`` decodes with ``models.sampler``.
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
from nlp_jax.models import sampler
from nlp_jax.nn import MLP, LayerNorm, SelfAttention, keys_for
from nlp_jax.nn.layers import guard_ids
from nlp_jax.validate import COMPUTE_DTYPES, at_least, check_fields, in_unit, one_of

Array = jax.Array


@dataclasses.dataclass(frozen=True, kw_only=True)
class GPT2Config:
    vocab_size: int = 50257  # number of token ids (50257 for GPT-2's BPE)
    block_size: int = 1024  # maximum context length (learned position embeddings)
    n_layer: int = 12  # transformer blocks
    n_head: int = 12  # attention heads per block
    n_embd: int = 768  # model width; head dim = n_embd / n_head
    dropout: float = 0.0  # dropout on embeddings and residual branches (and attention probabilities, see below)
    attn_dropout: float | None = None  # on attention probabilities (reference path only); None = ``dropout``
    bias: bool = True  # biases in Linear and LayerNorm layers (GPT-2: True, nanoGPT char: False)
    activation: str = "gelu_tanh"  # 'gelu_tanh' (GPT-2's gelu_new) or 'gelu' (exact, nanoGPT)
    ln_eps: float = 1e-5  # LayerNorm epsilon
    compute_dtype: str = "float32"  # matmul dtype: 'float32' or 'bfloat16'; params stay float32
    attention: str | None = None  # kernels.attention implementation: None/'auto', 'reference', 'xla', 'cudnn', 'cpu',
    # 'blockwise' (memory linear in the length)
    vocab_multiple: int = 1  # pad the embedding rows to a multiple of this (64 on GPUs); logits keep vocab_size
    # > 0: lm_loss and the preference log-probs take the output layer and its softmax this many tokens at a
    # time (kernels.linear_cross_entropy), never forming the (tokens x vocabulary) logits; 0: plain logits
    loss_chunk: int = 0

    def __post_init__(self):
        check_fields(self, vocab_size=at_least(1), block_size=at_least(1), n_layer=at_least(1), n_head=at_least(1),
                     n_embd=at_least(1), dropout=in_unit(),
                     attn_dropout=((lambda v: v is None or 0.0 <= v < 1.0), "None or in [0, 1)"),
                     compute_dtype=one_of(*COMPUTE_DTYPES))
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        if self.vocab_multiple < 1:
            raise ValueError(f"vocab_multiple must be >= 1, got {self.vocab_multiple}")
        if self.loss_chunk < 0:
            raise ValueError(f"loss_chunk must be >= 0 (0: plain logits), got {self.loss_chunk}")

    @property
    def padded_vocab(self) -> int:
        """Embedding rows: vocab_size rounded up to a multiple of vocab_multiple."""
        return -(-self.vocab_size // self.vocab_multiple) * self.vocab_multiple

    @classmethod
    def gpt2_124m(cls, **kw) -> GPT2Config:
        return cls(**kw)

    @classmethod
    def tiny(cls, **kw) -> GPT2Config:
        return cls(**{**dict(vocab_size=37, block_size=16, n_layer=2, n_head=2, n_embd=16), **kw})


class Block(nnx.Module):
    """Pre-LN block: ``x + Attn(LN(x))`` then ``x + MLP(LN(x))``."""

    def __init__(self, cfg: GPT2Config, rngs: nnx.Rngs):
        dtype = jnp.dtype(cfg.compute_dtype)
        proj_std = 0.02 / math.sqrt(2 * cfg.n_layer)  # GPT-2's scaled init of residual projections
        ln = functools.partial(LayerNorm, cfg.n_embd, eps=cfg.ln_eps, bias=cfg.bias)
        self.ln_1, self.ln_2 = ln(), ln()
        self.attn = SelfAttention(cfg.n_embd, cfg.n_head, causal=True, bias=cfg.bias, dropout=cfg.dropout,
                                  attn_dropout=cfg.attn_dropout, proj_std=proj_std, implementation=cfg.attention,
                                  dtype=dtype, rngs=rngs)
        self.mlp = MLP(cfg.n_embd, bias=cfg.bias, dropout=cfg.dropout, activation=cfg.activation,
                       proj_std=proj_std, dtype=dtype, rngs=rngs)

    def __call__(self, x, *, mask=None, key=None, cache=None, index=0):
        attn_key, mlp_key = keys_for(key, 2)
        a, cache = self.attn(self.ln_1(x), mask=mask, key=attn_key, cache=cache, index=index)
        x = x + a
        return x + self.mlp(self.ln_2(x), key=mlp_key), cache


class GPT2(nnx.Module):
    def __init__(self, cfg: GPT2Config, *, rngs: nnx.Rngs):
        self.config = cfg
        init = nnx.initializers.normal(0.02)
        self.wte = nnx.Embed(cfg.padded_vocab, cfg.n_embd, embedding_init=init, rngs=rngs)
        self.wpe = nnx.Embed(cfg.block_size, cfg.n_embd, embedding_init=init, rngs=rngs)
        self.h = nnx.List([Block(cfg, rngs) for _ in range(cfg.n_layer)])
        self.ln_f = LayerNorm(cfg.n_embd, eps=cfg.ln_eps, bias=cfg.bias)

    @property
    def max_length(self) -> int:
        return self.config.block_size

    @property
    def output_weight(self) -> Array:
        """(V, D): the tied output layer, ``logits = hidden @ output_weight.T`` (the vocabulary padding cut)."""
        return self.wte.embedding[...][:self.config.vocab_size]

    def __call__(self, tokens: Array, *, positions: Array | None = None, attention_mask: Array | None = None,
                 cache: dict | None = None, key: Array | None = None, logits: bool = True) -> tuple[Array, dict]:
        """tokens (B, T) int -> logits (B, T, V) (None with ``logits=False``: the chunked losses' call).

        positions: (B, T) or (T,) position ids (default: 0..T-1, or continuing the cache); attention_mask:
        (B, T) bool, False for padding keys; cache: from :meth:`init_cache` (the tokens are written at its
        index); key: enables dropout. aux: ``hidden`` (B, T, D) final states, ``cache`` (None without one).
        """
        chex.assert_rank(tokens, 2)
        cfg = self.config
        t = tokens.shape[1]
        if t > cfg.block_size:
            raise ValueError(f"sequence length {t} exceeds block_size {cfg.block_size}")
        keys = keys_for(key, cfg.n_layer + 1)
        index, key_mask = 0, attention_mask
        if cache is not None:  # the cache's key mask gains this chunk's tokens
            index = cache["index"]
            chunk = jnp.ones(tokens.shape, bool) if attention_mask is None else attention_mask.astype(bool)
            key_mask = jax.lax.dynamic_update_slice_in_dim(cache["mask"], chunk, index, axis=1)  # (B, S)
        if positions is None:
            positions = index + jnp.arange(t)  # (T,)
        x = self.wte(tokens) + self.wpe(positions)  # (B, T, D)
        x = guard_ids(x, tokens, cfg.vocab_size)
        x = ops.dropout(x, cfg.dropout, keys[-1]).astype(cfg.compute_dtype)
        layers = []
        for i, block in enumerate(self.h):
            x, c = block(x, mask=key_mask, key=keys[i], cache=None if cache is None else cache["layers"][i],
                         index=index)
            layers.append(c)
        h = self.ln_f(x)  # (B, T, D)
        new_cache = None if cache is None else {"layers": layers, "mask": key_mask, "index": index + t}
        if not logits:
            return None, {"hidden": h, "cache": new_cache}
        out = self.wte.attend(h.astype(jnp.float32))  # (B, T, V), tied output layer
        if cfg.padded_vocab != cfg.vocab_size:  # the padding rows only round the matmul's shape
            out = out[..., :cfg.vocab_size]
        return out, {"hidden": h, "cache": new_cache}

    def init_cache(self, batch: int, length: int) -> dict:
        """An empty KV cache for ``length`` positions: per-layer keys/values, a key mask, the write index."""
        cfg = self.config
        shape = (batch, length, cfg.n_head, cfg.n_embd // cfg.n_head)
        dtype = jnp.dtype(cfg.compute_dtype)
        return {"layers": [{"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)} for _ in range(cfg.n_layer)],
                "mask": jnp.zeros((batch, length), bool), "index": jnp.zeros((), jnp.int32)}


def without_dropout(model: GPT2) -> GPT2:
    """A copy of ``model`` with dropout off (its parameters copied, the original untouched): preference
    training starts from one (PPO's ratio is exactly 1 before its first update only then; TRL turns dropout
    off for DPO too)."""
    copy = GPT2(dataclasses.replace(model.config, dropout=0.0, attn_dropout=0.0), rngs=nnx.Rngs(0))
    nnx.update(copy, nnx.clone(nnx.state(model, nnx.Param)))
    return copy


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

    Up to ``block_size`` tokens in all, decoding is ``sampler.sample`` with the KV cache; beyond it, each
    new token is predicted from the last ``block_size`` tokens (nanoGPT's cropping), without a cache.
    """
    prompt = jnp.asarray(prompt)
    sampler.check_prompt(prompt, model.config.vocab_size)
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    block = model.config.block_size
    if prompt.shape[1] > block:
        raise ValueError(f"prompt length {prompt.shape[1]} exceeds block_size {block}")
    sampling = dict(temperature=temperature, top_k=top_k, top_p=top_p)
    cached = min(max_new_tokens, block - prompt.shape[1])
    key_cached, key_sliding = jax.random.split(key)
    out = sampler.sample(model, prompt, max_new_tokens=cached, key=key_cached, **sampling).tokens
    if cached < max_new_tokens:
        graphdef, state = nnx.split(model)
        new = _generate_sliding(graphdef, state, out[:, -block:], key_sliding,
                                steps=max_new_tokens - cached, **sampling)
        out = jnp.concatenate([out, new.astype(out.dtype)], axis=1)
    return out
