"""Recurrent language models: the cheat sheet's simple RNN (output tied to the embedding) and the LSTM
of Zaremba, Sutskever & Vinyals (2014), trained with truncated backpropagation through time.

``RNNLM(config, rngs)(tokens, cache=...) -> (logits, {'cache': new state})`` (the package's model
convention; a recurrent model's cache is its hidden state): the state at the last position is handed
back so that the next batch continues where this one stopped.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nlp_jax import kernels, ops
from nlp_jax.data.atomic import atomic_path, write_atomic
from nlp_jax.data.exports import read_json_file, read_safetensors, verify_checksums, write_checksums
from nlp_jax.nn.recurrent import RecurrentParams
from nlp_jax.ops import recurrent as R
from nlp_jax.validate import COMPUTE_DTYPES, at_least, check_fields, in_unit, one_of

Array = jax.Array


@dataclasses.dataclass(frozen=True, kw_only=True)
class RNNLMConfig:
    vocab_size: int = 10_000  # token ids
    cell: str = "lstm"  # 'lstm' (Zaremba et al.) or 'rnn' (tanh Elman RNN, output tied to E)
    hidden: int = 200  # units per layer (= embedding size)
    layers: int = 2  # stacked recurrent layers
    dropout: float = 0.0  # on non-recurrent connections: embedding, between layers, before the output
    init_scale: float = 0.1  # parameters ~ U(-init_scale, init_scale)
    compute_dtype: str = "float32"  # matmul dtype ('bfloat16': mixed precision); params, state, logits float32

    def __post_init__(self):
        check_fields(self, vocab_size=at_least(1), hidden=at_least(1), layers=at_least(1), dropout=in_unit(),
                     init_scale=at_least(0.0), compute_dtype=one_of(*COMPUTE_DTYPES))
        if self.cell not in ("lstm", "rnn"):
            raise ValueError(f"cell must be 'lstm' or 'rnn', got {self.cell!r}")

    @classmethod
    def tiny(cls, **kw) -> RNNLMConfig:
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

    def __call__(self, tokens: Array, *, positions: Array | None = None, attention_mask: Array | None = None,
                 cache: list | None = None, key: Array | None = None) -> tuple[Array, dict]:
        """tokens (B, T) -> logits (B, T, V); ``cache``: the state from :meth:`init_carry` or the previous
        call (None = zeros). Positions are implicit in a recurrence; padding is not supported."""
        if attention_mask is not None:
            raise ValueError("RNNLM reads unpadded streams: attention_mask is not supported")
        cfg = self.config
        carry = self.init_carry(tokens.shape[0]) if cache is None else cache
        keys = [None] * (cfg.layers + 1) if key is None else list(jax.random.split(key, cfg.layers + 1))
        cast = lambda a: a.astype(cfg.compute_dtype)  # noqa: E731  (mixed precision: float32 state, cast weights)
        h = self.embedding[...][tokens]  # (B, T, H): e_t = E x_t
        new_carry = []
        for layer, state, k in zip(self.layers, carry, keys):
            h, params = cast(ops.dropout(h, cfg.dropout, k)), jax.tree.map(cast, layer.params())
            if cfg.cell == "lstm":
                h, state = kernels.lstm_layer(params, h, state)
            else:
                h, state = R.scan_rnn(R.rnn_step, params, state, h)
            new_carry.append(state)
        h = cast(ops.dropout(h, cfg.dropout, keys[-1]))
        if cfg.cell == "lstm":
            logits = kernels.dense(h, cast(self.out_w[...]), cast(self.out_b[...]))
        else:
            logits = R.tied_output_logits(cast(self.embedding[...]), h)  # y_t = softmax(E^T h_t)
        return logits.astype(jnp.promote_types(logits.dtype, jnp.float32)), {"cache": new_carry}




CONFIG_FILE = "rnn_lm.json"  # an RNNLM export: this, model.safetensors and (optionally) the tokenizer's files


def save_rnn_lm(model: RNNLM, directory: str | Path, *, tokenizer=None, **extra_config) -> Path:
    """Write ``model`` to ``directory``: ``rnn_lm.json`` (its config and ``extra_config``), the parameters as
    ``model.safetensors`` (named by their path, ``layers.0.w_ih``), the ``tokenizer``'s files if given, and
    ``checksums.sha256`` over them all (``data.exports``). :func:`load_rnn_lm` reads it back."""
    from safetensors.numpy import save_file

    directory = Path(directory)
    tensors = {".".join(map(str, path)): np.ascontiguousarray(np.asarray(var[...], np.float32))
               for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    with atomic_path(directory / "model.safetensors") as tmp:
        save_file(tensors, tmp)
    write_atomic(directory / CONFIG_FILE, json.dumps({**dataclasses.asdict(model.config), **extra_config}, indent=2))
    if tokenizer is not None:
        tokenizer.save(directory)
    write_checksums(directory)
    return directory


def load_rnn_lm(directory: str | Path) -> tuple[RNNLM, dict]:
    """(the :class:`RNNLM` saved in ``directory`` by :func:`save_rnn_lm`, the config file's other keys); the
    checksums are verified first and a missing or misshapen tensor is named."""
    directory = Path(directory)
    if not (directory / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{directory}: no {CONFIG_FILE} (not an RNNLM export of save_rnn_lm)")
    verify_checksums(directory)
    stored = read_json_file(directory / CONFIG_FILE)
    names = {f.name for f in dataclasses.fields(RNNLMConfig)}
    cfg = RNNLMConfig(**{k: v for k, v in stored.items() if k in names})
    model = nnx.eval_shape(lambda: RNNLM(cfg, rngs=nnx.Rngs(0)))
    tensors = read_safetensors(directory / "model.safetensors")
    flat = []
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        name = ".".join(map(str, path))
        if name not in tensors or tensors[name].shape != var.shape:
            found = tensors[name].shape if name in tensors else "no tensor"
            raise ValueError(f"{directory / 'model.safetensors'}: {name} should be {var.shape}, found {found}")
        flat.append((path, var.replace(jnp.asarray(tensors[name]))))
    nnx.update(model, nnx.from_flat_state(flat))
    return model, {k: v for k, v in stored.items() if k not in names}
