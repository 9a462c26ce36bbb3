"""Critic-free RL (GRPO, Dr. GRPO, RLOO, REINFORCE++) through the one loop, as PPO runs
(``train.ppo``): every ``epochs * minibatches`` optimizer steps the data source draws a rollout from the
*current* policy, ``samples`` completions for each of ``prompts_per_rollout`` prompts, scores them with a
reward that is a model or a program (a verifier), and writes the rollout, the sampling policy's and the
reference's log-probs and one advantage per completion into the trainer's objective state; each batch is
only the indices of a minibatch. The rollout lives in the objective state, so checkpoints hold it and a
resumed run continues exactly, mid-rollout included. Dropout is off in rollouts and updates (the ratio is
exactly 1 at each rollout's first update)."""

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
from nlp_jax.objectives.group_rl import GroupRLConfig, group_rl_objective
from nlp_jax.objectives.ppo import response_forward
from nlp_jax.objectives.sampling import rollout
from nlp_jax.train.config import OptimConfig, TrainConfig
from nlp_jax.train.stages import train_stage


@functools.partial(nnx.jit, static_argnames=("prompt_len",))
def _logprobs(model, tokens, mask, *, prompt_len):
    return response_forward(model, tokens, mask, prompt_len)[0]


def advantages(rewards: np.ndarray, method: str) -> np.ndarray:
    """One advantage per completion from the (N, k) rewards of N groups: ``grpo`` (the group's standard
    score), ``dr_grpo`` (centred in the group), ``rloo`` (less the mean of the others), ``reinforce_pp``
    (centred in the group, then normalised over the whole batch: REINFORCE++ with the group baseline). (N, k)."""
    r = jnp.asarray(rewards, jnp.float32)
    if method == "grpo":
        return np.asarray(ops.group_advantages(r))
    if method == "dr_grpo":
        return np.asarray(ops.group_advantages(r, scale=False))
    if method == "rloo":
        return np.asarray(ops.rloo_advantages(r))
    if method == "reinforce_pp":
        return np.asarray(ops.batch_normalised(ops.group_advantages(r, scale=False)))
    raise ValueError(f"method must be one of grpo, dr_grpo, rloo, reinforce_pp; got {method!r}")


class GroupRollouts:
    """``source(step)`` for critic-free RL: ``{'index': (rows / minibatches,)}`` into the rollout of the
    objective state, drawing a new rollout from the current policy every ``cfg.steps_per_rollout`` steps.

    ``prompts`` (P, T0) left-padded with ``prompt_mask``; rollout r uses ``cfg.prompts_per_rollout`` prompts
    in a seeded order (an epoch over the prompts is a permutation), each repeated ``cfg.samples`` times;
    ``reward_fn(tokens, attention_mask, prompt_rows) -> (B,)`` numpy rewards of whole sequences (a reward
    model, the oracle, or a program that checks the answer to prompt ``prompt_rows[i]``); ``reference`` the
    frozen policy of the ``kl`` metric and, when ``cfg.kl_coef`` > 0, of the loss's KL term (None: the metric
    is 0)."""

    def __init__(self, prompts: np.ndarray, prompt_mask: np.ndarray, *, reference: nnx.Module | None,
                 reward_fn: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray], cfg: GroupRLConfig,
                 seed: int = 0, eos_id: int | None = None, pad_id: int = 0):
        if len(prompts) < cfg.prompts_per_rollout:
            raise ValueError(f"{len(prompts)} prompts, fewer than prompts_per_rollout={cfg.prompts_per_rollout}")
        if cfg.kl_coef and reference is None:
            raise ValueError(f"kl_coef={cfg.kl_coef} needs the reference policy (reference=)")
        self.prompts, self.prompt_mask = np.asarray(prompts), np.asarray(prompt_mask, bool)
        self.reference, self.reward_fn, self.cfg, self.seed = reference, reward_fn, cfg, seed
        self.eos_id, self.pad_id = eos_id, pad_id
        self.trainer = None

    @property
    def prompt_len(self) -> int:
        return self.prompts.shape[1]

    def bind(self, trainer) -> None:
        self.trainer = trainer

    def rollout(self, r: int) -> dict:
        """Rollout r from the trainer's current policy, as the new objective state (host work done)."""
        cfg, state = self.cfg, self.trainer.objective_state
        rows = np.repeat(epoch_rows(self.seed, r, len(self.prompts), cfg.prompts_per_rollout), cfg.samples)
        policy = self.trainer.model
        drawn = rollout(policy, self.prompts[rows], self.prompt_mask[rows], max_new_tokens=cfg.max_new_tokens,
                        key=jax.random.fold_in(jax.random.key(self.seed), r), temperature=cfg.temperature,
                        eos_id=self.eos_id, pad_id=self.pad_id)
        tokens, mask = drawn["tokens"], drawn["mask"]
        logprobs = _logprobs(policy, tokens, mask, prompt_len=self.prompt_len)
        ref = (logprobs if self.reference is None  # (no reference: the KL metric is 0, not a number to read)
               else _logprobs(self.reference, tokens, mask, prompt_len=self.prompt_len))
        try:
            rewards = np.asarray(self.reward_fn(tokens, mask, rows), np.float32)
        except Exception as err:  # (the last checkpoint is kept: a rerun resumes from it)
            err.add_note(f"in reward_fn on rollout {r} (steps {r * cfg.steps_per_rollout}-"
                         f"{(r + 1) * cfg.steps_per_rollout - 1}) of {len(rows)} completions")
            raise
        if rewards.shape != (len(rows),) or not np.isfinite(rewards).all():
            raise ValueError(f"reward_fn must return {len(rows)} finite rewards, got shape {rewards.shape} "
                             f"with {int(np.sum(~np.isfinite(rewards)))} non-finite")
        adv = advantages(rewards.reshape(cfg.prompts_per_rollout, cfg.samples), cfg.method).reshape(-1)
        stats = {"reward": rewards.mean(), "reward_std": rewards.reshape(-1, cfg.samples).std(1, ddof=1).mean(),
                 "completion_length": mask[:, self.prompt_len:].sum(1).mean()}
        new = {"tokens": tokens.astype(np.int32), "mask": mask, "logprobs": logprobs, "ref_logprobs": ref,
               "advantages": adv, "rollout": np.int32(r), **stats}
        return {k: jnp.asarray(v, state[k].dtype) for k, v in new.items()}

    def __call__(self, step: int) -> dict:
        if self.trainer is None:
            raise RuntimeError("GroupRollouts must be bound to the Trainer (train() calls source.bind(trainer))")
        r, k = divmod(step, self.cfg.steps_per_rollout)
        if int(self.trainer.objective_state["rollout"]) != r:  # a resumed run already holds its rollout
            self.trainer.objective_state = self.rollout(r)
        epoch, mb = divmod(k, self.cfg.minibatches)
        size = self.cfg.rollout_rows // self.cfg.minibatches
        order = np.random.default_rng([self.seed, r, epoch, 1]).permutation(self.cfg.rollout_rows)
        return {"index": order[mb * size:(mb + 1) * size].astype(np.int32)}


def train_group_rl(policy: nnx.Module, reference: nnx.Module | None,
                   reward_fn: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray], prompts: np.ndarray,
                   prompt_mask: np.ndarray, *, cfg: GroupRLConfig, rollouts: int, optim_cfg: OptimConfig,
                   workdir: str | Path, config, eos_id: int | None = None, pad_id: int = 0,
                   train_cfg: TrainConfig = TrainConfig(steps=0, seed=7), stage: str | None = None,
                   eval_fn: Callable[[nnx.Module], dict] | None = None, eval_every: int = 0) -> nnx.Module:
    """``policy`` trained by ``cfg.method`` on ``rollouts`` rollout batches of ``prompts``
    (:class:`GroupRollouts`), logged once a rollout and checkpointed every 10 in ``workdir`` under ``config``
    (``stages.train_stage``: a rerun resumes it, or reads a finished run back). ``train_cfg`` gives the seed
    of the rollouts and the progress bar; its steps, logging and checkpoints follow the rollouts.
    ``eval_fn(policy) -> {name: value}`` is logged every ``eval_every`` rollouts (0: never) and after the last."""
    source = GroupRollouts(prompts, prompt_mask, reference=reference, reward_fn=reward_fn, cfg=cfg,
                           seed=train_cfg.seed, eos_id=eos_id, pad_id=pad_id)
    n = cfg.steps_per_rollout
    train_cfg = dataclasses.replace(train_cfg, steps=rollouts * n, log_every=n, eval_every=eval_every * n,
                                    ckpt_every=10 * n)
    model, _ = train_stage(policy, group_rl_objective(cfg, source.prompt_len), source, train_cfg=train_cfg,
                           optim_cfg=optim_cfg, workdir=workdir, config=config, stage=stage, eval_fn=eval_fn)
    return model
