"""Thin Flax NNX layers that own parameters and call ``nlp_jax.ops``."""

from nlp_jax.nn.recurrent import RecurrentParams
from nlp_jax.nn.transformer import MLP, CausalSelfAttention, LayerNorm, Linear, keys_for, linear

__all__ = ["MLP", "CausalSelfAttention", "Linear", "RecurrentParams", "keys_for", "linear"]
