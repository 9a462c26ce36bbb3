"""RLHF with PPO through the one loop (Ziegler et al. 2019; Ouyang et al. 2022): every
``epochs * minibatches`` optimizer steps, the data source draws a rollout batch from the *current* policy.

How the loop stays one loop: :class:`PPORollouts` is an ordinary ``source(step)`` that the loop binds to its
:class:`Trainer` (``source.bind(trainer)``, called once before the first batch). At a rollout boundary it
samples responses from ``trainer.model`` with the jitted KV-cache sampler, scores them, computes the
reference log-probs, old log-probs and values, the per-token rewards (KL penalty + score), GAE advantages
and returns, and writes all of it into the trainer's *objective state*; each batch is then only the
indices of a minibatch. The rollout, the KL coefficient (Ziegler et al.'s adaptive controller) and the
rollout's statistics live in the objective state, so the trainer's checkpoints hold them and a resumed
run continues exactly, mid-rollout included. Dropout is off in rollouts and updates (the ratio is then
exactly 1 before the first update).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nlp_jax import ops
from nlp_jax.data.corpus import epoch_rows
from nlp_jax.objectives.ppo import PPOConfig, ppo_objective, response_forward
from nlp_jax.objectives.sampling import rollout
from nlp_jax.train.config import OptimConfig, TrainConfig
from nlp_jax.train.stages import train_stage


@functools.partial(nnx.jit, static_argnames=("prompt_len",))
def _score_tokens(policy, reference, tokens, mask, *, prompt_len):
    logprobs, entropy, values = response_forward(policy, tokens, mask, prompt_len)
    ref_logprobs, _, _ = response_forward(reference, tokens, mask, prompt_len)
    return logprobs, entropy, values, ref_logprobs


@functools.partial(jax.jit, static_argnames=("whiten",))
def _advantages(logprobs, ref_logprobs, values, scores, response, kl_coef, gamma, lam, *, whiten):
    rewards = ops.per_token_rewards(logprobs, ref_logprobs, scores, response, kl_coef)
    adv, returns = ops.gae(rewards, values, response, gamma, lam)
    return (ops.whiten(adv, response) if whiten else adv), returns


class PPORollouts:
    """``source(step)`` for PPO: ``{'index': (rollout_size / minibatches,)}`` into the rollout of the
    objective state, drawing a new rollout from the current policy every ``cfg.steps_per_rollout`` steps.

    ``prompts`` (P, T0) left-padded with ``prompt_mask``; rollout r uses prompts in a seeded order (an
    epoch over the prompts is a permutation); ``score_fn(tokens, attention_mask) -> (B,)`` numpy rewards
    of whole sequences (the oracle or a reward model); ``reference`` the frozen SFT policy."""

    def __init__(self, prompts: np.ndarray, prompt_mask: np.ndarray, *, reference: nnx.Module,
                 score_fn: Callable[[np.ndarray, np.ndarray], np.ndarray], cfg: PPOConfig, seed: int = 0,
                 eos_id: int | None = None, pad_id: int = 0):
        if len(prompts) < cfg.rollout_size:
            raise ValueError(f"{len(prompts)} prompts, fewer than rollout_size={cfg.rollout_size}")
        self.prompts, self.prompt_mask = np.asarray(prompts), np.asarray(prompt_mask, bool)
        self.reference, self.score_fn, self.cfg, self.seed = reference, score_fn, cfg, seed
        self.eos_id, self.pad_id = eos_id, pad_id
        self.trainer = None

    @property
    def prompt_len(self) -> int:
        return self.prompts.shape[1]

    def bind(self, trainer) -> None:
        self.trainer = trainer

    def _prompt_rows(self, r: int) -> np.ndarray:
        return epoch_rows(self.seed, r, len(self.prompts), self.cfg.rollout_size)

    def rollout(self, r: int) -> dict:
        """Rollout r from the trainer's current policy, as the new objective state (host work done)."""
        cfg, state = self.cfg, self.trainer.objective_state
        rows = self._prompt_rows(r)
        policy = self.trainer.model
        drawn = rollout(policy, self.prompts[rows], self.prompt_mask[rows], max_new_tokens=cfg.max_new_tokens,
                        key=jax.random.fold_in(jax.random.key(self.seed), r), temperature=cfg.temperature,
                        eos_id=self.eos_id, pad_id=self.pad_id)
        tokens, mask = drawn["tokens"], drawn["mask"]
        response = mask[:, self.prompt_len:]
        logprobs, entropy, values, ref = _score_tokens(policy, self.reference, tokens, mask,
                                                       prompt_len=self.prompt_len)
        scores = np.asarray(self.score_fn(tokens, mask), np.float32)
        coef = state["kl_coef"]  # the last rollout's; the controller updates it from that rollout's KL
        if cfg.kl_target > 0 and int(state["rollout"]) >= 0:
            coef = ops.adaptive_kl_coef(coef, state["objective/kl"], cfg.rollout_size, target=cfg.kl_target,
                                        horizon=cfg.kl_horizon)
        adv, returns = _advantages(logprobs, ref, values, scores, response, coef, cfg.gamma, cfg.lam,
                                   whiten=cfg.whiten_advantages)
        kl = float(np.sum(np.where(response, np.asarray(logprobs) - np.asarray(ref), 0.0), axis=1).mean())
        stats = {"objective/kl": kl, "objective/scores": float(scores.mean()),
                 "objective/rlhf_reward": float(scores.mean()) - float(coef) * kl,
                 "objective/entropy": float(ops.masked_mean(entropy, response))}
        new = {"tokens": tokens.astype(np.int32), "mask": mask, "logprobs": logprobs, "values": values,
               "advantages": adv, "returns": returns, "rollout": np.int32(r), "kl_coef": coef, **stats}
        return {k: jnp.asarray(v, state[k].dtype) for k, v in new.items()}

    def __call__(self, step: int) -> dict:
        if self.trainer is None:
            raise RuntimeError("PPORollouts must be bound to the Trainer (train() calls source.bind(trainer))")
        r, k = divmod(step, self.cfg.steps_per_rollout)
        if int(self.trainer.objective_state["rollout"]) != r:  # a resumed run already holds its rollout
            self.trainer.objective_state = self.rollout(r)
        epoch, mb = divmod(k, self.cfg.minibatches)
        size = self.cfg.rollout_size // self.cfg.minibatches
        order = np.random.default_rng([self.seed, r, epoch, 1]).permutation(self.cfg.rollout_size)
        return {"index": order[mb * size:(mb + 1) * size].astype(np.int32)}


def train_ppo(policy: nnx.Module, reference: nnx.Module, score_fn: Callable[[np.ndarray, np.ndarray], np.ndarray],
              prompts: np.ndarray, prompt_mask: np.ndarray, *, cfg: PPOConfig, rollouts: int,
              optim_cfg: OptimConfig, workdir: str | Path, config, eos_id: int | None = None, pad_id: int = 0,
              train_cfg: TrainConfig = TrainConfig(steps=0, seed=7), stage: str | None = None,
              eval_fn: Callable[[nnx.Module], dict] | None = None, eval_every: int = 0) -> nnx.Module:
    """``policy`` (a ``models.reward.PolicyWithValue``) trained by PPO on ``rollouts`` rollout batches of
    ``prompts`` (:class:`PPORollouts`: ``score_fn`` scores them, ``reference`` is the KL anchor), logged
    once a rollout and checkpointed every 10 in ``workdir`` under ``config`` (``stages.train_stage``: a rerun
    resumes it, or reads a finished run back). ``train_cfg`` gives the seed of the rollouts and the progress
    bar; its steps, logging and checkpoints follow the rollouts. ``eval_fn(policy) -> {name: value}`` is logged
    every ``eval_every`` rollouts (0: never) and after the last."""
    source = PPORollouts(prompts, prompt_mask, reference=reference, score_fn=score_fn, cfg=cfg,
                         seed=train_cfg.seed, eos_id=eos_id, pad_id=pad_id)
    n = cfg.steps_per_rollout
    train_cfg = dataclasses.replace(train_cfg, steps=rollouts * n, log_every=n, eval_every=eval_every * n,
                                    ckpt_every=10 * n)
    model, _ = train_stage(policy, ppo_objective(cfg, source.prompt_len), source, train_cfg=train_cfg,
                           optim_cfg=optim_cfg, workdir=workdir, config=config, stage=stage, eval_fn=eval_fn)
    return model
