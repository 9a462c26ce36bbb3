"""Models for learning from preferences, built on any backbone of the package's calling convention
(``backbone(tokens, *, positions, attention_mask, key) -> (out, aux)`` with ``aux['hidden']`` (B, T, D)):

- :class:`RewardModel`: a scalar head on the hidden state of the last non-padding token, r(x, y) (B,)
  (Ziegler et al. 2019; Ouyang et al. 2022), or on the mean over the real tokens (``pooling='mean'``, the
  pooling a sentence encoder such as all-MiniLM-L6-v2 was trained with). GPT-2 and BERT's encoder both
  serve as backbones.
- :class:`PolicyWithValue`: a decoder LM and a value head V(s_t) on every position, sharing the forward
  pass (the PPO policy); it keeps the decoder's cache interface, so the one sampler draws from it.

Padding may sit on either side: positions count real tokens (``cumsum(mask) - 1``), so a left-padded
rollout (the sampler's layout) scores as it would unpadded.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from nlp_jax import kernels, ops
from nlp_jax.models.bert import mean_pool
from nlp_jax.nn.layers import Linear

Array = jax.Array


def positions_from_mask(attention_mask: Array) -> Array:
    """Position ids (B, T) that count real tokens only: 0 at each row's first real token."""
    return jnp.maximum(jnp.cumsum(attention_mask.astype(jnp.int32), axis=1) - 1, 0)


def last_token_index(attention_mask: Array) -> Array:
    """(B,) index of the last True of each row (left or right padding); 0 for a row with none."""
    chex.assert_rank(attention_mask, 2)
    t = attention_mask.shape[1]
    return (t - 1 - jnp.argmax(attention_mask[:, ::-1].astype(bool), axis=1)).astype(jnp.int32)


def scalar_head(width: int, rngs: nnx.Rngs) -> Linear:
    """A (D -> 1) linear head, kernel ~ N(0, 1 / (D + 1)) as in Ziegler et al.'s reward head, bias 0."""
    return Linear(width, 1, bias=True, std=(width + 1) ** -0.5, dtype=jnp.float32, rngs=rngs)


def _backbone_call(backbone, tokens, positions, attention_mask, key, **kwargs):
    if attention_mask is not None and positions is None:
        positions = positions_from_mask(attention_mask)
    return backbone(tokens, positions=positions, attention_mask=attention_mask, key=key, **kwargs)


class RewardModel(nnx.Module):
    """r(x, y) = w . h + b, h the backbone's final state at the last real token (``pooling='last'``) or its
    mean over the real tokens (``'mean'``)."""

    def __init__(self, backbone: nnx.Module, *, pooling: str = "last", rngs: nnx.Rngs):
        if pooling not in ("last", "mean"):
            raise ValueError(f"pooling must be 'last' or 'mean', got {pooling!r}")
        self.backbone = backbone
        self.config = backbone.config
        self.pooling = pooling
        self.head = scalar_head(backbone.config.n_embd, rngs)

    def __call__(self, tokens: Array, *, positions: Array | None = None, attention_mask: Array | None = None,
                 key: Array | None = None) -> tuple[Array, dict]:
        """tokens (B, T) -> (rewards (B,), aux with ``hidden`` and ``last`` (B,) the last real position)."""
        _, aux = _backbone_call(self.backbone, tokens, positions, attention_mask, key)
        mask = jnp.ones(tokens.shape, bool) if attention_mask is None else attention_mask
        last = last_token_index(mask)
        if self.pooling == "mean":
            h = mean_pool(aux["hidden"], mask)
        else:
            h = jnp.take_along_axis(aux["hidden"], last[:, None, None], axis=1)[:, 0]  # (B, D)
        return self.head(h.astype(jnp.float32))[:, 0], {"hidden": aux["hidden"], "last": last}


class PolicyWithValue(nnx.Module):
    """A decoder policy with a value head: ``(logits (B, T, V), aux + {'values': (B, T)})``."""

    def __init__(self, policy: nnx.Module, *, rngs: nnx.Rngs):
        self.policy = policy
        self.config = policy.config
        self.value_head = scalar_head(policy.config.n_embd, rngs)

    @property
    def max_length(self) -> int:
        return self.policy.max_length

    def init_cache(self, batch: int, length: int) -> dict:
        return self.policy.init_cache(batch, length)

    def __call__(self, tokens: Array, *, positions: Array | None = None, attention_mask: Array | None = None,
                 cache: dict | None = None, key: Array | None = None) -> tuple[Array, dict]:
        if cache is None:
            logits, aux = _backbone_call(self.policy, tokens, positions, attention_mask, key)
        else:  # the sampler passes its own positions and the chunk's mask
            logits, aux = self.policy(tokens, positions=positions, attention_mask=attention_mask, cache=cache, key=key)
        values = self.value_head(aux["hidden"].astype(jnp.float32))[..., 0]  # (B, T)
        return logits, {**aux, "values": values}


def response_logprobs(model: nnx.Module, tokens: Array, attention_mask: Array, response_mask: Array,
                      key: Array | None = None) -> tuple[Array, Array, dict]:
    """(sum, mean (B,), aux) of ``log pi(response | prompt)`` from one forward pass of a decoder over
    prompt + response (padding on either side; ``response_mask`` True on the response tokens). A backbone
    whose config sets ``loss_chunk`` (GPT-2) is read through its chunked output layer (no logits in aux)."""
    chunk = getattr(model.config, "loss_chunk", 0)
    if chunk:
        _, aux = _backbone_call(model, tokens, None, attention_mask, key, logits=False)
        token_lp = -kernels.linear_cross_entropy(aux["hidden"][:, :-1].astype(jnp.float32), model.output_weight,
                                                 tokens[:, 1:], reduction="none", chunk=chunk)
        return (*ops.response_sums(token_lp, response_mask), aux)
    logits, aux = _backbone_call(model, tokens, None, attention_mask, key)
    total, mean = ops.sequence_logprobs(logits, tokens, response_mask)
    return total, mean, {**aux, "logits": logits}


def pair_batch(batch: dict) -> tuple[Array, Array, Array]:
    """Chosen and rejected stacked into one batch of 2B rows (one forward pass for both):
    (tokens, attention_mask, response_mask). Keys ``chosen``/``rejected`` (B, T) ids with ``*_mask``
    (attention) and ``*_response`` (response tokens)."""
    for name in ("chosen", "chosen_mask", "chosen_response", "rejected", "rejected_mask", "rejected_response"):
        if name not in batch:
            raise KeyError(f"a preference batch needs {name!r} (got {sorted(batch)})")
    chex.assert_equal_shape([batch["chosen"], batch["rejected"]])
    cat = lambda k: jnp.concatenate([batch[f"chosen{k}"], batch[f"rejected{k}"]], axis=0)  # noqa: E731
    return cat(""), cat("_mask"), cat("_response")


