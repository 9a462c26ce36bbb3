"""The transformer encoder-decoder (Vaswani et al. 2017) with pre-LN blocks (Xiong et al. 2020), built from
the package's attention layers: encoder self-attention under the source padding mask, decoder masked
self-attention with a KV cache, and cross-attention ``Q = H^dec W^Q, K = H^enc W^K, V = H^enc W^V`` on the
same attention op (``kernels.attention``). Learned position embeddings; the output layer is tied to the
target embedding, and ``shared_embeddings`` ties source and target embeddings too (one joint vocabulary).

The calling convention is ``models.seq2seq``'s: ``model(target_in, source=, source_mask=)`` teacher-forces
(logits (B, T, V), aux with ``attention``: the last decoder layer's cross-attention weights averaged over
heads, (B, T, S)); ``cache = model.start(source, mask)`` then ``model(token (B, 1), cache=cache)`` decodes
step by step (``models.beam``). The cache holds the encoder's keys and values per layer (computed once) and
the decoder's self-attention keys and values for ``max_len`` positions.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from nlp_jax import ops
from nlp_jax.nn import MLP, CrossAttention, LayerNorm, SelfAttention, keys_for
from nlp_jax.validate import COMPUTE_DTYPES, at_least, check_fields, in_unit, one_of

Array = jax.Array


@dataclasses.dataclass(frozen=True, kw_only=True)
class TransformerSeq2SeqConfig:
    src_vocab: int = 8000  # source token ids
    tgt_vocab: int = 8000  # target token ids
    d_model: int = 256  # width; head dim = d_model / n_head
    n_head: int = 4  # attention heads
    enc_layers: int = 4  # encoder blocks
    dec_layers: int = 4  # decoder blocks
    d_ff: int = 1024  # feed-forward width
    dropout: float = 0.1  # embeddings, residual branches, attention probabilities
    max_len: int = 64  # longest source or target in pieces (position embeddings, the decoding cache)
    shared_embeddings: bool = False  # one embedding for source and target (needs one joint vocabulary)
    activation: str = "relu"  # the feed-forward nonlinearity ('relu' as Vaswani et al., or 'gelu')
    attention: str | None = None  # kernels.attention implementation (None: by the platform)
    compute_dtype: str = "float32"  # matmul and activation dtype: 'float32' or 'bfloat16'; params stay float32

    def __post_init__(self):
        check_fields(self, src_vocab=at_least(5), tgt_vocab=at_least(5), d_model=at_least(1), n_head=at_least(1),
                     enc_layers=at_least(1), dec_layers=at_least(1), d_ff=at_least(1), dropout=in_unit(),
                     max_len=at_least(2), compute_dtype=one_of(*COMPUTE_DTYPES))
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_head={self.n_head}")
        if self.shared_embeddings and self.src_vocab != self.tgt_vocab:
            raise ValueError(f"shared_embeddings needs one vocabulary, got src_vocab={self.src_vocab} and "
                             f"tgt_vocab={self.tgt_vocab}")

    @classmethod
    def tiny(cls, **kw) -> TransformerSeq2SeqConfig:
        return cls(**{**dict(src_vocab=31, tgt_vocab=29, d_model=16, n_head=2, enc_layers=2, dec_layers=2, d_ff=32,
                             dropout=0.0, max_len=16), **kw})


def _layers(cfg: TransformerSeq2SeqConfig, rngs: nnx.Rngs, n: int, *, decoder: bool):
    proj_std = 0.02 / math.sqrt(2 * n)
    common = dict(bias=True, dropout=cfg.dropout, proj_std=proj_std, implementation=cfg.attention,
                  dtype=jnp.dtype(cfg.compute_dtype), rngs=rngs)
    return nnx.List([Block(cfg, common, decoder=decoder) for _ in range(n)])


class Block(nnx.Module):
    """Pre-LN: ``x + SelfAttn(LN(x))``, (decoder) ``x + CrossAttn(LN(x), H^enc)``, ``x + FFN(LN(x))``."""

    def __init__(self, cfg: TransformerSeq2SeqConfig, common: dict, *, decoder: bool):
        ln = functools.partial(LayerNorm, cfg.d_model)
        self.ln_1, self.ln_3 = ln(), ln()
        self.attn = SelfAttention(cfg.d_model, cfg.n_head, causal=decoder, **common)
        self.cross = CrossAttention(cfg.d_model, cfg.n_head, **common) if decoder else None
        self.ln_2 = ln() if decoder else None
        self.mlp = MLP(cfg.d_model, hidden=cfg.d_ff, activation=cfg.activation,
                       **{k: v for k, v in common.items() if k != "implementation"})

    def __call__(self, x, *, mask=None, key=None, cache=None, index=0, cross_kv=None, enc_mask=None):
        """Returns (x, the self-attention cache, the cross-attention's input (None in the encoder))."""
        k1, k2, k3 = keys_for(key, 3)
        a, cache = self.attn(self.ln_1(x), mask=mask, key=k1, cache=cache, index=index)
        x = x + a
        cross_in = None
        if self.cross is not None:
            cross_in = self.ln_2(x)
            x = x + self.cross(cross_in, kv=cross_kv, enc_mask=enc_mask, key=k2)
        return x + self.mlp(self.ln_3(x), key=k3), cache, cross_in

    def cross_weights(self, cross_in: Array, kv: dict, enc_mask: Array) -> Array:
        """(B, T, S): this block's cross-attention probabilities softmax(Q K^T / sqrt(Dh)), mean over heads."""
        q = ops.split_heads(self.cross.q(cross_in), self.cross.num_heads)  # (B, T, H, Dh)
        scores = jnp.einsum("bthd,bshd->bhts", q, kv["k"]) / math.sqrt(q.shape[-1])
        return ops.masked_softmax(scores, enc_mask[:, None, None, :]).mean(axis=1)


class TransformerSeq2Seq(nnx.Module):
    def __init__(self, cfg: TransformerSeq2SeqConfig, *, rngs: nnx.Rngs):
        self.config = cfg
        init = nnx.initializers.normal(0.02)
        self.tgt_embed = nnx.Embed(cfg.tgt_vocab, cfg.d_model, embedding_init=init, rngs=rngs)
        self.src_embed = None if cfg.shared_embeddings else nnx.Embed(cfg.src_vocab, cfg.d_model,
                                                                      embedding_init=init, rngs=rngs)
        self.src_pos = nnx.Embed(cfg.max_len, cfg.d_model, embedding_init=init, rngs=rngs)
        self.tgt_pos = nnx.Embed(cfg.max_len, cfg.d_model, embedding_init=init, rngs=rngs)
        self.encoder = _layers(cfg, rngs, cfg.enc_layers, decoder=False)
        self.decoder = _layers(cfg, rngs, cfg.dec_layers, decoder=True)
        self.ln_enc, self.ln_dec = LayerNorm(cfg.d_model), LayerNorm(cfg.d_model)

    @property
    def max_length(self) -> int:
        return self.config.max_len

    def _check_length(self, t: int, what: str) -> None:
        if t > self.config.max_len:
            raise ValueError(f"{what} length {t} exceeds max_len {self.config.max_len}")

    def start(self, source: Array, source_mask: Array, *, key: Array | None = None) -> dict:
        """Encode ``source`` (B, S) once: per decoder layer its cross-attention keys and values, the source
        mask, an empty self-attention cache of ``max_len`` positions and the write index."""
        cfg = self.config
        self._check_length(source.shape[1], "source")
        keys = keys_for(key, cfg.enc_layers + 1)
        embed = self.tgt_embed if self.src_embed is None else self.src_embed
        x = embed(source) + self.src_pos(jnp.arange(source.shape[1]))  # (B, S, D)
        x = ops.dropout(x, cfg.dropout, keys[-1]).astype(cfg.compute_dtype)
        mask = source_mask.astype(bool)
        for block, k in zip(self.encoder, keys):
            x, _, _ = block(x, mask=mask, key=k)
        h_enc = self.ln_enc(x)  # (B, S, D)
        shape = (source.shape[0], cfg.max_len, cfg.n_head, cfg.d_model // cfg.n_head)
        return {"cross": [blk.cross.encode(h_enc) for blk in self.decoder], "source_mask": mask,
                "self": [{"k": jnp.zeros(shape, cfg.compute_dtype), "v": jnp.zeros(shape, cfg.compute_dtype)}
                         for _ in range(cfg.dec_layers)],
                "index": jnp.zeros((), jnp.int32)}

    def __call__(self, tokens: Array, *, positions: Array | None = None, attention_mask: Array | None = None,
                 cache: dict | None = None, key: Array | None = None, source: Array | None = None,
                 source_mask: Array | None = None, attention_weights: bool = False) -> tuple[Array, dict]:
        """Target inputs ``tokens`` (B, T) -> logits (B, T, V) (module docstring). Target padding only
        follows the real tokens under the causal mask: it changes no real position (mask it in the loss).
        ``attention_weights``: also return the last layer's cross-attention weights (for heatmaps)."""
        cfg = self.config
        keys = keys_for(key, cfg.dec_layers + 2)
        decoding = cache is not None
        if not decoding:
            if source is None or source_mask is None:
                raise ValueError("TransformerSeq2Seq needs source and source_mask, or a cache from start()")
            cache = self.start(source, source_mask, key=keys[-2])
        t = tokens.shape[1]
        index = cache["index"] if decoding else 0
        self._check_length(t if not decoding else 1, "target")
        if positions is None:
            positions = index + jnp.arange(t)
        x = ops.dropout(self.tgt_embed(tokens) + self.tgt_pos(positions), cfg.dropout, keys[-1])  # (B, T, D)
        x = x.astype(cfg.compute_dtype)
        new_self = []
        for i, block in enumerate(self.decoder):
            x, c, cross_in = block(x, key=keys[i], cache=cache["self"][i] if decoding else None, index=index,
                                   cross_kv=cache["cross"][i], enc_mask=cache["source_mask"])
            new_self.append(c)
        h = self.ln_dec(x)
        logits = self.tgt_embed.attend(h.astype(jnp.float32))  # (B, T, V): tied output layer, float32
        aux = {"cache": {**cache, "self": new_self, "index": index + t} if decoding else None}
        if attention_weights:
            aux["attention"] = self.decoder[-1].cross_weights(cross_in, cache["cross"][-1], cache["source_mask"])
        return logits, aux
