"""Critic-free RL's objective (GRPO, Dr. GRPO, RLOO, REINFORCE++): the clipped surrogate on a minibatch of
the rollout held in the objective state, which ``train.group_rl.GroupRollouts`` fills from the current policy
(k completions per prompt, each advantage from the rewards of its group: ``ops.policy_gradient``), plus an
optional KL penalty to the reference in the loss (GRPO's k3 estimator, or k1). No value model."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from nlp_jax import ops
from nlp_jax.objectives.base import Objective, one_per_setting
from nlp_jax.objectives.ppo import response_forward
from nlp_jax.validate import at_least, check_fields

METHODS = ("grpo", "dr_grpo", "rloo", "reinforce_pp")
STATS = ("reward", "reward_std", "completion_length")  # of the rollout, as TRL names them


@dataclasses.dataclass(frozen=True, kw_only=True)
class GroupRLConfig:
    method: str = "grpo"  # advantages: 'grpo' (group standard score), 'dr_grpo' (centred), 'rloo', 'reinforce_pp'
    prompts_per_rollout: int = 16  # prompts of one rollout batch
    samples: int = 4  # completions per prompt (the group, k)
    minibatches: int = 1  # minibatches per pass over a rollout (its prompts_per_rollout * samples rows divide)
    epochs: int = 1  # passes over each rollout (GRPO's mu; > 1 makes the ratio differ from 1)
    max_new_tokens: int = 16  # completion length (completions stop early at eos_id)
    temperature: float = 1.0  # sampling temperature of the rollouts
    kl_coef: float = 0.0  # beta of the KL to the reference in the loss (0: the reference is not read)
    kl_estimator: str = "k3"  # 'k3' (GRPO's, never negative) or 'k1'
    clip_low: float = 0.2  # the ratio's clip below 1 (1 - eps_low)
    clip_high: float = 0.2  # above 1 (DAPO's clip-higher: 0.28)
    ratio: str = "token"  # 'token' (GRPO) or 'sequence' (GSPO)
    aggregation: str = "sequence_mean"  # ops.AGGREGATIONS: 'sequence_mean' (GRPO), 'token_mean' (DAPO), 'constant'

    def __post_init__(self):
        check_fields(self, method=((lambda v: v in METHODS), f"one of {METHODS}"),
                     prompts_per_rollout=at_least(1), samples=at_least(2), minibatches=at_least(1),
                     epochs=at_least(1), max_new_tokens=at_least(1), kl_coef=at_least(0.0),
                     kl_estimator=((lambda v: v in ("k1", "k3")), "'k1' or 'k3'"),
                     clip_low=((lambda v: 0 <= v < 1), "in [0, 1) (the ratio's floor 1 - clip_low stays positive)"),
                     clip_high=at_least(0.0), ratio=((lambda v: v in ("token", "sequence")), "'token' or 'sequence'"),
                     aggregation=((lambda v: v in ops.AGGREGATIONS), f"one of {ops.AGGREGATIONS}"))
        if self.rollout_rows % self.minibatches:
            raise ValueError(f"prompts_per_rollout * samples = {self.rollout_rows} must be a multiple of "
                             f"minibatches={self.minibatches}")

    @property
    def rollout_rows(self) -> int:
        return self.prompts_per_rollout * self.samples

    @property
    def steps_per_rollout(self) -> int:
        return self.epochs * self.minibatches


def init_state(cfg: GroupRLConfig, prompt_len: int) -> dict:
    """The objective state's shape: one rollout (its rows, the sampling policy's and the reference's log-probs,
    one advantage a completion), its index and statistics."""
    b, n = cfg.rollout_rows, cfg.max_new_tokens
    return {"tokens": jnp.zeros((b, prompt_len + n), jnp.int32), "mask": jnp.zeros((b, prompt_len + n), bool),
            "logprobs": jnp.zeros((b, n), jnp.float32), "ref_logprobs": jnp.zeros((b, n), jnp.float32),
            "advantages": jnp.zeros((b,), jnp.float32), "rollout": jnp.full((), -1, jnp.int32),
            **{k: jnp.float32(0) for k in STATS}}


@one_per_setting
def group_rl_objective(cfg: GroupRLConfig, prompt_len: int) -> Objective:
    """The update on a minibatch of the rollout in the objective state (``batch['index']``): the clipped
    surrogate of the token (or GSPO's sequence) ratio to the sampling policy, ``+ kl_coef`` x the per-token KL
    estimate to the reference, aggregated as ``cfg.aggregation`` says. Metrics as TRL names them: ``reward``,
    ``reward_std``, ``completion_length`` (of the rollout), ``kl`` (mean per-token estimate), ``clip_ratio``."""

    def loss(model, batch, key, state, frozen):
        pick = lambda k: state[k][batch["index"]]  # noqa: E731
        tokens, mask = pick("tokens"), pick("mask")
        response = mask[:, prompt_len:]
        logprobs, _, _ = response_forward(model, tokens, mask, prompt_len)
        old = pick("logprobs")
        ratio = (ops.sequence_ratio(logprobs, old, response) if cfg.ratio == "sequence"
                 else ops.token_ratio(logprobs, old))
        per_token, clipped = ops.clipped_surrogate(ratio, pick("advantages"), cfg.clip_low, cfg.clip_high)
        kl = ops.kl_estimators(logprobs, pick("ref_logprobs"))[cfg.kl_estimator]
        if cfg.kl_coef:
            per_token = per_token + cfg.kl_coef * kl
        value = ops.aggregate(per_token, response, cfg.aggregation, cfg.max_new_tokens)
        metrics = {"kl": ops.masked_mean(kl, response), "clip_ratio": ops.masked_mean(clipped.astype(jnp.float32),
                                                                                      response),
                   "tokens": jnp.sum(mask), **{k: state[k] for k in STATS}}
        return value, metrics, state

    return Objective(loss=loss, init_state=lambda: init_state(cfg, prompt_len))
