"""A bidirectional LSTM sentence classifier: h = h^f_(last word) (+) h^b_(first word), then a linear layer.

A bidirectional model sees the whole sentence in both directions, so it suits tagging and
classification (it cannot be a left-to-right language model).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from nlp_jax import kernels, ops
from nlp_jax.nn.recurrent import RecurrentParams
from nlp_jax.ops import recurrent as R

Array = jax.Array


@dataclasses.dataclass(frozen=True, kw_only=True)
class BiLSTMConfig:
    vocab_size: int = 20_000  # token ids (0 = padding)
    embed: int = 128  # embedding width
    hidden: int = 128  # LSTM units per direction
    classes: int = 2  # output classes
    dropout: float = 0.3  # on the embeddings and the sentence vector
    init_scale: float = 0.1  # LSTM and embedding init U(-s, s)


class BiLSTMClassifier(nnx.Module):
    def __init__(self, cfg: BiLSTMConfig, *, rngs: nnx.Rngs):
        self.config = cfg
        s = cfg.init_scale
        self.embedding = nnx.Param(jax.random.uniform(rngs.params(), (cfg.vocab_size, cfg.embed), jnp.float32, -s, s))
        direction = lambda: RecurrentParams("lstm", cfg.embed, cfg.hidden, scale=s, rngs=rngs, forget_bias=1.0)  # noqa: E731
        self.forward_lstm, self.backward_lstm = direction(), direction()
        self.out = nnx.Linear(2 * cfg.hidden, cfg.classes, rngs=rngs)

    def __call__(self, tokens: Array, *, positions: Array | None = None, attention_mask: Array | None = None,
                 cache=None, key: Array | None = None) -> tuple[Array, dict]:
        """tokens (B, T) right-padded, attention_mask (B, T) bool (True on words; None = no padding) ->
        logits (B, classes); aux ``sentence`` (B, 2H)."""
        if cache is not None:
            raise ValueError("BiLSTMClassifier reads whole sentences: cache is not supported")
        lengths = None if attention_mask is None else jnp.sum(attention_mask, axis=1).astype(jnp.int32)
        k_emb, k_out = (None, None) if key is None else jax.random.split(key)
        x = ops.dropout(self.embedding[...][tokens], self.config.dropout, k_emb)  # (B, T, E)
        run = lambda p, xs, n: kernels.lstm_layer(p, xs, lengths=n)  # noqa: E731
        _, ((h_f, _), (h_b, _)) = R.bidirectional(run, self.forward_lstm.params(), self.backward_lstm.params(),
                                                  x, lengths)
        sentence = ops.dropout(jnp.concatenate([h_f, h_b], -1), self.config.dropout, k_out)  # (B, 2H)
        return self.out(sentence), {"sentence": sentence}


