"""Pure functions on arrays (jax and numpy only, no flax): the equations of the field, one place each."""

from nlp_jax.ops.attention import (
    attention_context,
    bilinear_score,
    causal_mask,
    cross_attention,
    dot_score,
    key_padding_mask,
    masked_softmax,
    merge_heads,
    padding_mask,
    scaled_dot_product_attention,
    split_heads,
)
from nlp_jax.ops.activations import gelu
from nlp_jax.ops.dropout import dropout
from nlp_jax.ops.linear import dense
from nlp_jax.ops.normalization import layer_norm
from nlp_jax.ops.losses import cross_entropy, nll, perplexity
from nlp_jax.ops.counting import cooccurrence, pmi
from nlp_jax.ops.linalg import randomized_svd
from nlp_jax.ops.sampling import alias_table, draw_alias, sample_logits, top_k_filter, top_p_filter
from nlp_jax.ops.sgns import cbow_update, sgns_loss, sgns_train, skipgram_update

__all__ = [
    "alias_table", "attention_context", "bilinear_score", "causal_mask", "cbow_update", "cooccurrence",
    "cross_attention", "cross_entropy", "dense", "dot_score", "draw_alias", "dropout", "gelu", "key_padding_mask",
    "masked_softmax", "merge_heads", "nll", "padding_mask", "perplexity", "pmi", "randomized_svd", "sample_logits",
    "layer_norm", "scaled_dot_product_attention", "sgns_loss", "sgns_train", "skipgram_update", "split_heads", "top_k_filter",
    "top_p_filter",
]
