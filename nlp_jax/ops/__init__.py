"""The equations of the field as pure functions on arrays (jax, numpy and scipy only; no flax, no kernel):
one place each, every one the reference its fast path in ``nlp_jax.kernels`` is tested against."""

from nlp_jax.ops.activations import gelu
from nlp_jax.ops.attention import (
    additive_score,
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
    self_attention,
    split_heads,
)
from nlp_jax.ops.counting import cooccurrence, pmi
from nlp_jax.ops.dropout import dropout
from nlp_jax.ops.linalg import randomized_svd
from nlp_jax.ops.linear import dense
from nlp_jax.ops.losses import (
    cross_entropy,
    masked_mean,
    nll,
    perplexity,
    smooth_labels,
    softmax_cross_entropy,
    softmax_cross_entropy_with_integer_labels,
)
from nlp_jax.ops.mlm import mlm_loss, mlm_mask, mlm_positions
from nlp_jax.ops.normalization import layer_norm
from nlp_jax.ops.policy_gradient import (
    AGGREGATIONS,
    aggregate,
    batch_normalised,
    clipped_surrogate,
    group_advantages,
    rloo_advantages,
    sequence_ratio,
    token_ratio,
)
from nlp_jax.ops.ppo import (
    adaptive_kl_coef,
    entropy,
    gae,
    kl_estimators,
    last_token_mask,
    per_token_rewards,
    policy_loss,
    value_loss,
    whiten,
)
from nlp_jax.ops.preference import (
    DPO_LOSSES,
    bradley_terry_loss,
    cdpo_loss,
    check_dpo_arguments,
    dpo_hinge_loss,
    dpo_margin,
    dpo_sigmoid_loss,
    dpo_soft_loss,
    implicit_rewards,
    ipo_loss,
    kto_loss,
    kto_reference_point,
    orpo_loss,
    response_mask_targets,
    response_sums,
    robust_dpo_loss,
    sequence_logprobs,
    simpo_loss,
    token_logprobs,
)
from nlp_jax.ops.sampling import alias_table, draw_alias, sample_logits, top_k_filter, top_p_filter
from nlp_jax.ops.sgns import cbow_update, sgns_loss, sgns_train, skipgram_update

__all__ = [
    "DPO_LOSSES", "adaptive_kl_coef", "bradley_terry_loss", "cdpo_loss", "check_dpo_arguments", "dpo_hinge_loss",
    "dpo_margin", "dpo_sigmoid_loss", "dpo_soft_loss", "entropy", "gae", "implicit_rewards", "ipo_loss",
    "kl_estimators", "kto_loss", "kto_reference_point", "orpo_loss", "robust_dpo_loss", "simpo_loss",
    "AGGREGATIONS", "aggregate", "batch_normalised", "clipped_surrogate", "group_advantages", "rloo_advantages",
    "sequence_ratio", "token_ratio",
    "last_token_mask", "per_token_rewards", "policy_loss", "response_mask_targets", "response_sums",
    "sequence_logprobs", "token_logprobs", "value_loss", "whiten",
    "additive_score", "alias_table", "attention_context", "bilinear_score", "causal_mask", "cbow_update",
    "cooccurrence", "cross_attention", "cross_entropy", "dense", "dot_score", "draw_alias", "dropout", "gelu",
    "key_padding_mask", "layer_norm", "masked_mean", "masked_softmax", "merge_heads", "mlm_loss", "mlm_mask",
    "mlm_positions", "nll", "padding_mask", "perplexity", "pmi",
    "randomized_svd", "sample_logits", "scaled_dot_product_attention", "self_attention", "sgns_loss",
    "sgns_train", "skipgram_update", "smooth_labels", "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels", "split_heads", "top_k_filter", "top_p_filter",
]
