"""Parameters of one recurrent layer, named as the gate equations name them (U_f, W_f, b_f, ...), for the
pure step functions in ``nlp_jax.ops.recurrent``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from nlp_jax.ops import recurrent as R


class RecurrentParams(nnx.Module):
    """U (H, H), W (D_in, H) and b (H,) per gate ('lstm') or once ('rnn'), all ~ U(-scale, scale);
    ``forget_bias`` (LSTM only) replaces the biases: b_f = forget_bias, the other gates' b = 0."""

    def __init__(self, cell: str, d_in: int, hidden: int, *, scale: float, rngs: nnx.Rngs,
                 forget_bias: float | None = None):
        if cell not in ("lstm", "rnn"):
            raise ValueError(f"cell must be 'lstm' or 'rnn', got {cell!r}")
        suffixes = [f"_{g}" for g in R.GATES] if cell == "lstm" else [""]
        self.names = tuple(f"{m}{sfx}" for sfx in suffixes for m in "UWb")
        for name in self.names:
            shape = {"U": (hidden, hidden), "W": (d_in, hidden), "b": (hidden,)}[name[0]]
            if name[0] == "b" and forget_bias is not None:
                value = jnp.full(shape, forget_bias if name == "b_f" else 0.0, jnp.float32)
            else:
                value = jax.random.uniform(rngs.params(), shape, jnp.float32, -scale, scale)
            setattr(self, name, nnx.Param(value))

    def params(self) -> dict:
        return {n: getattr(self, n)[...] for n in self.names}
