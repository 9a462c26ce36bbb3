"""The RNN encoder-decoder with attention (Bahdanau, Cho & Bengio 2015; the cheat sheet's
Encoder-Decoder and Attention sections), composed from ``ops.recurrent`` and ``ops.attention``.

Encoder: a bidirectional LSTM over the source embeddings, ``h^e_j = h^f_j (+) h^b_j`` (2H wide), padding
masked (the backward direction starts at each sentence's true end). Decoder: an LSTM of 2H units started
from ``tanh(W_init [h^f_n ; h^b_1])``; at step i

    c_i = sum_j alpha_ij h^e_j,   alpha_ij = softmax_j score(h^d_{i-1}, h^e_j)   (padding j masked)
    h^d_i = LSTM(h^d_{i-1}, [e(y_{i-1}) ; c_i])
    p(y_i | y_<i, x) = softmax(E_tgt tanh(W_o [h^d_i ; c_i ; e(y_{i-1})] + b_o) + b_v)

with ``score`` by config: ``dot`` (h^d . h^e_j), ``bilinear`` (h^d W_s h^e_j, the sheet's learned score),
``additive`` (Bahdanau's v . tanh(W_q h^d + W_k h^e_j)), or ``none``: no attention, c_i = [h^f_n ; h^b_1]
for every i, the single context vector of the bottleneck (Cho et al. 2014). The output layer is tied to
the target embedding through the tanh layer (Press & Wolf 2017), so the V-wide matmul is E wide.

Calling convention (the package's, with the source as the condition): ``model(tokens, source=...,
source_mask=...)`` teacher-forces the target inputs ``tokens`` (B, T) -> (logits (B, T, V), aux) with
``aux['attention']`` (B, T, S) and ``aux['cache']``; for decoding, ``cache = model.start(source, mask)``
once, then ``model(last_token (B, 1), cache=cache)`` per step. The cache is a dict of (B, ...) arrays
(the encoder memory and the decoder state), so beam search may reorder it row by row.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from nlp_jax import ops
from nlp_jax.nn.recurrent import RecurrentParams
from nlp_jax.ops import recurrent as R
from nlp_jax.validate import COMPUTE_DTYPES, at_least, check_fields, in_unit, one_of

Array = jax.Array
SCORES = ("none", "dot", "bilinear", "additive")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Seq2SeqConfig:
    src_vocab: int = 8000  # source token ids
    tgt_vocab: int = 8000  # target token ids
    emb: int = 256  # embedding width, source and target (and the tied output layer's)
    hidden: int = 256  # encoder LSTM units per direction; the decoder has 2 x hidden (the states' width)
    attention: str = "additive"  # the score: 'none' (one context vector), 'dot', 'bilinear', 'additive'
    attn_dim: int = 256  # the additive score's inner width A
    dropout: float = 0.3  # on embeddings and before the output layer
    init_scale: float = 0.08  # LSTM and projection parameters ~ U(-init_scale, init_scale)
    max_len: int = 64  # longest source or target in pieces (decoding's default limit)
    # matmul dtype ('bfloat16': mixed precision); parameters, LSTM states, attention softmax, logits float32
    compute_dtype: str = "float32"

    def __post_init__(self):
        check_fields(self, src_vocab=at_least(5), tgt_vocab=at_least(5), emb=at_least(1), hidden=at_least(1),
                     attn_dim=at_least(1), dropout=in_unit(), init_scale=at_least(0.0), max_len=at_least(2),
                     compute_dtype=one_of(*COMPUTE_DTYPES))
        if self.attention not in SCORES:
            raise ValueError(f"attention must be one of {SCORES}, got {self.attention!r}")

    @classmethod
    def tiny(cls, **kw) -> Seq2SeqConfig:
        return cls(**{**dict(src_vocab=31, tgt_vocab=29, emb=8, hidden=6, attn_dim=5, dropout=0.0, max_len=16),
                      **kw})


def _uniform(rngs, shape, scale):
    return nnx.Param(jax.random.uniform(rngs.params(), shape, jnp.float32, -scale, scale))


class LSTMSeq2Seq(nnx.Module):
    def __init__(self, cfg: Seq2SeqConfig, *, rngs: nnx.Rngs):
        self.config = cfg
        e, h, s = cfg.emb, cfg.hidden, cfg.init_scale
        self.src_embed = nnx.Param(jax.random.normal(rngs.params(), (cfg.src_vocab, e)) * e ** -0.5)
        self.tgt_embed = nnx.Param(jax.random.normal(rngs.params(), (cfg.tgt_vocab, e)) * e ** -0.5)
        self.enc_f = RecurrentParams("lstm", e, h, scale=s, rngs=rngs, forget_bias=1.0)
        self.enc_b = RecurrentParams("lstm", e, h, scale=s, rngs=rngs, forget_bias=1.0)
        self.init_w, self.init_b = _uniform(rngs, (2 * h, 2 * h), s), nnx.Param(jnp.zeros((2 * h,)))
        self.dec = RecurrentParams("lstm", e + 2 * h, 2 * h, scale=s, rngs=rngs, forget_bias=1.0)
        if cfg.attention == "bilinear":
            self.w_s = _uniform(rngs, (2 * h, 2 * h), s)
        if cfg.attention == "additive":
            self.w_q, self.w_k = _uniform(rngs, (2 * h, cfg.attn_dim), s), _uniform(rngs, (2 * h, cfg.attn_dim), s)
            self.v = _uniform(rngs, (cfg.attn_dim,), s)
        self.out_w, self.out_b = _uniform(rngs, (4 * h + e, e), s), nnx.Param(jnp.zeros((e,)))
        self.vocab_b = nnx.Param(jnp.zeros((cfg.tgt_vocab,)))

    @property
    def max_length(self) -> int:
        return self.config.max_len

    def _w(self, name: str) -> Array:
        """Parameter ``name`` in the compute dtype."""
        return getattr(self, name)[...].astype(self.config.compute_dtype)

    # ---- encoder -------------------------------------------------------------------------------------

    def start(self, source: Array, source_mask: Array, *, key: Array | None = None) -> dict:
        """Encode ``source`` (B, S) (``source_mask`` True on real pieces, at least one per row) into the
        decoding cache: the states ``keys`` (B, S, 2H), their ``mask``, the ``context`` of the no-attention
        model, the decoder's first ``h`` and ``c`` and, for the additive score, the projected keys ``proj``."""
        cfg = self.config
        cdt, lengths = cfg.compute_dtype, source_mask.sum(axis=1)
        x = ops.dropout(self.src_embed[...][source], cfg.dropout, key).astype(cdt)  # (B, S, E)
        run = lambda p, xs, n: R.lstm_layer(self._cast(p.params()), xs, None, n)  # noqa: E731
        states, ((h_f, _), (h_b, _)) = R.bidirectional(run, self.enc_f, self.enc_b, x, lengths)  # (B, S, 2H)
        final = jnp.concatenate([h_f, h_b], axis=-1)  # (B, 2H): h^f_n (+) h^b_1 (float32, as the states)
        h0 = jnp.tanh(final.astype(cdt) @ self._w("init_w") + self._w("init_b")).astype(final.dtype)
        memory = {"keys": states.astype(cdt), "mask": source_mask.astype(bool), "context": final, "h": h0,
                  "c": jnp.zeros_like(h0)}
        if cfg.attention == "additive":
            memory["proj"] = memory["keys"] @ self._w("w_k")  # (B, S, A): W_k h^e_j, the same at every step
        return memory

    def _cast(self, params: dict) -> dict:
        return jax.tree.map(lambda p: p.astype(self.config.compute_dtype), params)

    def _attend(self, memory: dict, h: Array) -> tuple[Array, Array]:
        """(c_i (B, 2H), alpha_i (B, S)) for the previous decoder state h (B, 2H)."""
        att = self.config.attention
        if att == "none":
            return memory["context"], jnp.zeros(memory["mask"].shape, h.dtype)
        q = h.astype(self.config.compute_dtype)
        if att == "dot":
            scores = ops.dot_score(q, memory["keys"])
        elif att == "bilinear":
            scores = ops.bilinear_score(q, memory["keys"], self._w("w_s"))
        else:
            scores = ops.additive_score(q, memory["proj"], self._w("w_q"), None, self._w("v"))
        return ops.attention_context(scores.astype(h.dtype), memory["keys"], memory["mask"])  # softmax in float32

    # ---- decoder -------------------------------------------------------------------------------------

    def __call__(self, tokens: Array, *, positions: Array | None = None, attention_mask: Array | None = None,
                 cache: dict | None = None, key: Array | None = None, source: Array | None = None,
                 source_mask: Array | None = None, attention_weights: bool = True) -> tuple[Array, dict]:
        """Target inputs ``tokens`` (B, T) -> logits (B, T, V). Without ``cache`` the source is encoded
        first. ``positions`` and ``attention_mask`` are unused: a recurrence has implicit positions, and
        target padding only follows the real tokens (mask it in the loss). The attention weights come at
        no cost and are always in aux (``attention_weights`` is accepted for the transformer's interface)."""
        cfg = self.config
        keys = [None] * 3 if key is None else list(jax.random.split(key, 3))
        if cache is None:
            if source is None or source_mask is None:
                raise ValueError("LSTMSeq2Seq needs source and source_mask, or a cache from start()")
            cache = self.start(source, source_mask, key=keys[0])
        cdt = cfg.compute_dtype
        e = ops.dropout(self.tgt_embed[...][tokens], cfg.dropout, keys[1]).astype(cdt)  # (B, T, E)
        fused = R.fuse_lstm_params(self._cast(self.dec.params()))
        w_e, w_c = fused["W"][:cfg.emb], fused["W"][cfg.emb:]
        e_proj = e @ w_e + fused["b"]  # (B, T, 8H): the embedding's share of every step's gates, hoisted

        def step(state, x_proj):
            h, c = state
            ctx, alpha = self._attend(cache, h)  # from h^d_{i-1}
            h, c = R.lstm_fused_step(fused, (h, c), x_proj + ctx.astype(cdt) @ w_c)
            return (h, c), (h, ctx, alpha)

        (h, c), (hs, ctxs, alphas) = jax.lax.scan(step, (cache["h"], cache["c"]), jnp.swapaxes(e_proj, 0, 1))
        hs, ctxs, alphas = (jnp.swapaxes(a, 0, 1) for a in (hs, ctxs, alphas))  # (B, T, ...)
        feats = jnp.concatenate([hs.astype(cdt), ctxs.astype(cdt), e], axis=-1)  # (B, T, 4H + E)
        out = jnp.tanh(ops.dropout(feats, cfg.dropout, keys[2]) @ self._w("out_w") + self._w("out_b"))  # (B, T, E)
        logits = out @ self._w("tgt_embed").T + self._w("vocab_b")  # (B, T, V)
        return logits.astype(hs.dtype), {"cache": {**cache, "h": h, "c": c}, "attention": alphas}


