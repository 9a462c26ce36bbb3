"""Thin Flax NNX layers that own parameters and call ``nlp_jax.ops`` through the dispatch (``nlp_jax.kernels``)."""

from nlp_jax.nn.attention import CrossAttention, SelfAttention
from nlp_jax.nn.layers import MLP, LayerNorm, Linear, keys_for
from nlp_jax.nn.recurrent import RecurrentParams

__all__ = ["MLP", "CrossAttention", "LayerNorm", "Linear", "RecurrentParams", "SelfAttention", "keys_for"]
