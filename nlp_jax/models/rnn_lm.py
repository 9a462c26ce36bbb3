"""Recurrent language models: the cheat sheet's simple RNN (output tied to the embedding) and the LSTM
of Zaremba, Sutskever & Vinyals (2014), trained with truncated backpropagation through time.

``RNNLM(config, rngs)(tokens, carry=...) -> (logits, {'carry': new carry})``: the hidden state of the
last position is handed back so that the next batch continues where this one stopped.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from nlp_jax import ops
from nlp_jax.nn.recurrent import RecurrentParams
from nlp_jax.ops import recurrent as R

Array = jax.Array


@dataclasses.dataclass(frozen=True, kw_only=True)
class RNNLMConfig:
    vocab_size: int = 10_000  # token ids
    cell: str = "lstm"  # 'lstm' (Zaremba et al.) or 'rnn' (tanh Elman RNN, output tied to E)
    hidden: int = 200  # units per layer (= embedding size)
    layers: int = 2  # stacked recurrent layers
    dropout: float = 0.0  # on non-recurrent connections: embedding, between layers, before the output
    init_scale: float = 0.1  # parameters ~ U(-init_scale, init_scale)

    def __post_init__(self):
        if self.cell not in ("lstm", "rnn"):
            raise ValueError(f"cell must be 'lstm' or 'rnn', got {self.cell!r}")

    @classmethod
    def tiny(cls, **kw) -> "RNNLMConfig":
        return cls(**{**dict(vocab_size=23, hidden=8, layers=2), **kw})


class RNNLM(nnx.Module):
    def __init__(self, cfg: RNNLMConfig, *, rngs: nnx.Rngs):
        self.config = cfg
        s = cfg.init_scale
        self.embedding = nnx.Param(jax.random.uniform(rngs.params(), (cfg.vocab_size, cfg.hidden), jnp.float32, -s, s))
        self.layers = nnx.List([RecurrentParams(cfg.cell, cfg.hidden, cfg.hidden, scale=s, rngs=rngs)
                                for _ in range(cfg.layers)])
        if cfg.cell == "lstm":  # Zaremba et al.: a separate softmax layer
            self.out_w = nnx.Param(jax.random.uniform(rngs.params(), (cfg.hidden, cfg.vocab_size), jnp.float32, -s, s))
            self.out_b = nnx.Param(jax.random.uniform(rngs.params(), (cfg.vocab_size,), jnp.float32, -s, s))

    def init_carry(self, batch: int) -> list:
        z = jnp.zeros((batch, self.config.hidden), jnp.float32)
        return [(z, z) if self.config.cell == "lstm" else z for _ in range(self.config.layers)]

    def __call__(self, tokens: Array, *, key: Array | None = None, carry: list | None = None) -> tuple[Array, dict]:
        """tokens (B, T) -> logits (B, T, V); ``carry`` from :meth:`init_carry` or the previous call."""
        cfg = self.config
        carry = self.init_carry(tokens.shape[0]) if carry is None else carry
        keys = [None] * (cfg.layers + 1) if key is None else list(jax.random.split(key, cfg.layers + 1))
        h = self.embedding[...][tokens]  # (B, T, H): e_t = E x_t
        new_carry = []
        for layer, state, k in zip(self.layers, carry, keys):
            h = ops.dropout(h, cfg.dropout, k)
            if cfg.cell == "lstm":
                h, state = R.lstm_layer(layer.params(), h, state)
            else:
                h, state = R.scan_rnn(R.rnn_step, layer.params(), state, h)
            new_carry.append(state)
        h = ops.dropout(h, cfg.dropout, keys[-1])
        if cfg.cell == "lstm":
            logits = ops.dense(h, self.out_w[...], self.out_b[...])
        else:
            logits = R.tied_output_logits(self.embedding[...], h)  # y_t = softmax(E^T h_t)
        return logits, {"carry": new_carry}


def bptt_loss(model: RNNLM, batch: dict, key: Array | None) -> tuple[Array, dict]:
    """Zaremba et al.'s objective on ``{'inputs', 'targets', 'carry'}`` (B, T): the cross-entropy summed
    over the T steps of the window and averaged over the batch (so lr 1 and clip 5 mean what the paper
    means). aux: ``token_nll`` (the per-token mean, what perplexity exponentiates) and the carry."""
    logits, aux = model(batch["inputs"], key=key, carry=batch.get("carry"))
    carry = jax.tree.map(jax.lax.stop_gradient, aux["carry"])
    token_nll = ops.cross_entropy(logits, batch["targets"])
    return token_nll * batch["inputs"].shape[1], {"carry": carry, "token_nll": token_nll}
