"""PPO's objective (Ziegler et al. 2019; Ouyang et al. 2022): the clipped surrogate, the clipped value loss
and an entropy bonus on a minibatch of the rollout held in the objective state, which
``train.ppo.PPORollouts`` fills from the current policy."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from nlp_jax import ops
from nlp_jax.models.reward import positions_from_mask
from nlp_jax.objectives.base import Objective, one_per_setting
from nlp_jax.validate import at_least, check_fields

STATS = ("objective/kl", "objective/scores", "objective/rlhf_reward", "objective/entropy")


@dataclasses.dataclass(frozen=True, kw_only=True)
class PPOConfig:
    rollout_size: int = 64  # prompts per rollout batch
    minibatches: int = 4  # minibatches per epoch over a rollout (rollout_size must divide by it)
    epochs: int = 4  # passes over each rollout
    max_new_tokens: int = 16  # response length (responses stop early at eos_id)
    temperature: float = 1.0  # sampling temperature of the rollouts
    kl_coef: float = 0.1  # beta of the KL penalty (its start value when adaptive)
    kl_target: float = 0.0  # > 0: Ziegler et al.'s adaptive controller aims the per-sequence KL at it
    kl_horizon: float = 10_000.0  # the controller's horizon in samples
    gamma: float = 1.0  # discount
    lam: float = 0.95  # GAE lambda
    clip: float = 0.2  # policy ratio clip
    clip_value: float = 0.2  # value clip
    vf_coef: float = 0.1  # value loss weight
    ent_coef: float = 0.0  # entropy bonus weight
    whiten_advantages: bool = True

    def __post_init__(self):
        check_fields(self, rollout_size=at_least(1), minibatches=at_least(1), epochs=at_least(1),
                     max_new_tokens=at_least(1), kl_coef=at_least(0.0), kl_target=at_least(0.0))
        if self.rollout_size % self.minibatches:
            raise ValueError(f"rollout_size={self.rollout_size} must be a multiple of minibatches={self.minibatches}")

    @property
    def steps_per_rollout(self) -> int:
        return self.epochs * self.minibatches


def response_forward(model, tokens, mask, prompt_len):
    """Per-token log-probs (B, N), entropies (B, N) and values (B, N) of the response part of each row
    (positions prompt_len..T-1), from one forward pass over prompt + response."""
    logits, aux = model(tokens, positions=positions_from_mask(mask), attention_mask=mask)
    logprobs = ops.token_logprobs(logits, tokens)[:, prompt_len - 1:]
    entropy = ops.entropy(logits[:, prompt_len - 1:-1])
    values = aux["values"][:, prompt_len - 1:-1] if "values" in aux else jnp.zeros_like(logprobs)
    return logprobs, entropy, values


def init_state(cfg: PPOConfig, prompt_len: int) -> dict:
    """The objective state's shape: one rollout buffer, its index, the KL coefficient, its statistics."""
    b, n = cfg.rollout_size, cfg.max_new_tokens
    zeros = lambda *shape: jnp.zeros(shape, jnp.float32)  # noqa: E731
    return {"tokens": jnp.zeros((b, prompt_len + n), jnp.int32), "mask": jnp.zeros((b, prompt_len + n), bool),
            "logprobs": zeros(b, n), "values": zeros(b, n), "advantages": zeros(b, n), "returns": zeros(b, n),
            "rollout": jnp.full((), -1, jnp.int32), "kl_coef": jnp.float32(cfg.kl_coef),
            **{k: jnp.float32(0) for k in STATS}}


@one_per_setting
def ppo_objective(cfg: PPOConfig, prompt_len: int) -> Objective:
    """The PPO update on a minibatch of the rollout held in the objective state (``batch['index']``):
    clipped surrogate + ``vf_coef`` x clipped value loss - ``ent_coef`` x entropy."""

    def loss(model, batch, key, state, frozen):
        pick = lambda k: state[k][batch["index"]]  # noqa: E731
        tokens, mask = pick("tokens"), pick("mask")
        response = mask[:, prompt_len:]
        logprobs, entropy, values = response_forward(model, tokens, mask, prompt_len)
        pg, pg_m = ops.policy_loss(logprobs, pick("logprobs"), pick("advantages"), response, cfg.clip)
        vf, vf_m = ops.value_loss(values, pick("values"), pick("returns"), response, cfg.clip_value)
        ent = ops.masked_mean(entropy, response)
        total = pg + cfg.vf_coef * vf - cfg.ent_coef * ent
        metrics = {"policy/approxkl_avg": pg_m["policy/approxkl"], "policy/clipfrac_avg": pg_m["policy/clipfrac"],
                   "val/ratio": pg_m["val/ratio"], "val/clipfrac_avg": vf_m["val/clipfrac"], "loss/value_avg": vf,
                   "loss/policy_avg": pg, "objective/kl_coef": state["kl_coef"], "tokens": jnp.sum(mask),
                   **{k: state[k] for k in STATS}}
        return total, metrics, state

    return Objective(loss=loss, init_state=lambda: init_state(cfg, prompt_len))
