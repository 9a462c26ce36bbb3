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
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nlp_jax import ops
from nlp_jax.data.corpus import epoch_rows
from nlp_jax.models.reward import positions_from_mask
from nlp_jax.models.sampler import sample
from nlp_jax.train.config import OptimConfig, TrainConfig
from nlp_jax.train.loop import train
from nlp_jax.train.records import Interrupted
from nlp_jax.train.trainer import Objective
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


def _forward(model, tokens, mask, prompt_len):
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


def ppo_objective(cfg: PPOConfig, prompt_len: int) -> Objective:
    """The PPO update on a minibatch of the rollout held in the objective state (``batch['index']``):
    clipped surrogate + ``vf_coef`` x clipped value loss - ``ent_coef`` x entropy."""

    def loss(model, batch, key, state, frozen):
        pick = lambda k: state[k][batch["index"]]  # noqa: E731
        tokens, mask = pick("tokens"), pick("mask")
        response = mask[:, prompt_len:]
        logprobs, entropy, values = _forward(model, tokens, mask, prompt_len)
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


@functools.partial(nnx.jit, static_argnames=("prompt_len",))
def _score_tokens(policy, reference, tokens, mask, *, prompt_len):
    logprobs, entropy, values = _forward(policy, tokens, mask, prompt_len)
    ref_logprobs, _, _ = _forward(reference, tokens, mask, prompt_len)
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
        drawn = sample(policy, self.prompts[rows], self.prompt_mask[rows], max_new_tokens=cfg.max_new_tokens,
                       key=jax.random.fold_in(jax.random.key(self.seed), r), temperature=cfg.temperature,
                       eos_id=self.eos_id, pad_id=self.pad_id)
        response = np.asarray(drawn.mask)
        mask = np.concatenate([self.prompt_mask[rows], response], axis=1)
        tokens = np.asarray(drawn.tokens)
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
              seed: int = 7, progress: bool = True, stage: str | None = None) -> nnx.Module:
    """``policy`` (a ``models.reward.PolicyWithValue``) trained by PPO on ``rollouts`` rollout batches of
    ``prompts`` (:class:`PPORollouts`: ``score_fn`` scores them, ``reference`` is the KL anchor), logged
    once a rollout and checkpointed every 10 in ``workdir`` under ``config`` (a rerun resumes it, or reads a
    finished run back). A run stopped by a signal raises ``records.Interrupted`` naming ``stage`` (default:
    the workdir's name)."""
    source = PPORollouts(prompts, prompt_mask, reference=reference, score_fn=score_fn, cfg=cfg, seed=seed,
                         eos_id=eos_id, pad_id=pad_id)
    n = cfg.steps_per_rollout
    train_cfg = TrainConfig(steps=rollouts * n, log_every=n, eval_every=0, ckpt_every=10 * n, progress=progress)
    model, result = train(policy, ppo_objective(cfg, source.prompt_len), source, train_cfg=train_cfg,
                          optim_cfg=optim_cfg, workdir=workdir, config=config)
    if result.interrupted:
        raise Interrupted(stage or Path(workdir).name, result)
    return model
