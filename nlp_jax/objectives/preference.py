"""Objectives for learning from preference pairs: the reward model's Bradley-Terry loss and the DPO family
on a policy. A batch holds ``chosen``/``rejected`` (B, T) ids with their ``*_mask`` and ``*_response``
masks (``data.preferences.encode_pairs``); DPO reads the reference log-probs from the batch
(``ref_chosen`` / ``ref_rejected``, computed once by ``train.preference.reference_logprobs``) or, when
absent, from a frozen reference model (``frozen['reference']``)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from nlp_jax import ops
from nlp_jax.models.reward import RewardModel, pair_batch, response_logprobs
from nlp_jax.objectives.base import Objective, one_per_setting
from nlp_jax.ops.preference import NORMALISED, REFERENCE_FREE

Array = jax.Array


REF_KEYS = ("ref_chosen", "ref_rejected")


def reward_loss(model: RewardModel, batch: dict, key: Array | None, *, center_coef: float = 0.0,
                ) -> tuple[Array, dict]:
    """Bradley-Terry on the reward of the chosen and the rejected sequence (prompt + response):
    aux ``accuracy``, ``margin``, ``tokens``."""
    tokens, mask, _ = pair_batch(batch)
    rewards, _ = model(tokens, attention_mask=mask, key=key)
    r_chosen, r_rejected = jnp.split(rewards, 2)
    loss, metrics = ops.bradley_terry_loss(r_chosen, r_rejected, batch.get("margin"), center_coef)
    return loss, {**metrics, "tokens": jnp.sum(mask)}


def reference_logps(batch: dict, keys: tuple[str, str], frozen: dict, tokens, mask, response, who: str):
    """The reference's summed response log-probs of the stacked rows: from the batch (``keys``, computed once
    by ``train.preference.reference_logprobs``) or from ``frozen['reference']`` (no gradient)."""
    if all(k in batch for k in keys):
        return jnp.concatenate([batch[k] for k in keys])
    if "reference" in frozen:
        return jax.lax.stop_gradient(response_logprobs(frozen["reference"], tokens, mask, response)[0])
    raise ValueError(f"{who} needs the reference log-probs: put {'/'.join(keys)} in the batch (reference_logprobs) "
                     "or pass frozen={'reference': model}")


def pair_loss(loss_type: str, *, label_smoothing: float = 0.0, gamma: float = 0.0):
    """The per-pair loss ``(h, beta, preference) -> (B,)`` of the DPO family member ``loss_type`` (one op
    each in ``ops.preference``; ``preference`` q, soft labels, applies to ``sigmoid`` only)."""
    if loss_type == "sigmoid":
        return lambda h, beta, q: ops.dpo_sigmoid_loss(h, beta) if q is None else ops.dpo_soft_loss(h, beta, q)
    one = {"sigmoid_norm": ops.dpo_sigmoid_loss, "ipo": ops.ipo_loss, "hinge": ops.dpo_hinge_loss,
           "cdpo": functools.partial(ops.cdpo_loss, label_smoothing=label_smoothing),
           "robust": functools.partial(ops.robust_dpo_loss, label_smoothing=label_smoothing),
           "simpo": functools.partial(ops.simpo_loss, gamma=gamma)}[loss_type]
    return lambda h, beta, q: one(h, beta)


@one_per_setting
def dpo_objective(*, beta: float, loss_type: str = "sigmoid", label_smoothing: float = 0.0, gamma: float = 0.0,
                  reference_free: bool = False, soft_labels: float = 0.0) -> Objective:
    """An :class:`Objective` whose loss is the DPO family member ``loss_type`` (``ops.DPO_LOSSES``) of the
    policy being trained against the reference, averaged over the pairs; aux: ``rewards/*``
    (``ops.implicit_rewards``, on the log-probs the loss compares: per-token means for the normalised losses;
    ``orpo``: ``ops.orpo_loss`` with beta as its lambda, no reference),
    ``logps/chosen`` and ``logps/rejected`` (summed), ``tokens``. Arguments are checked here
    (``ops.check_dpo_arguments``). ``soft_labels`` tau > 0: each pair's label is Bradley-Terry's
    sigma((s_w - s_l) / tau) of the scores ``chosen_score`` / ``rejected_score`` in the batch (the optimum:
    pi ~ pi_ref exp(s / (beta tau)))."""
    if not soft_labels >= 0:
        raise ValueError(f"soft_labels (the temperature on the score difference) must be >= 0, got {soft_labels}")
    ops.check_dpo_arguments(loss_type=loss_type, beta=beta, label_smoothing=label_smoothing, gamma=gamma,
                            soft=bool(soft_labels))
    per_pair = None if loss_type == "orpo" else pair_loss(loss_type, label_smoothing=label_smoothing, gamma=gamma)
    free = reference_free or loss_type in REFERENCE_FREE

    def loss(model, batch, key, state, frozen):
        tokens, mask, response = pair_batch(batch)
        total, _, _ = response_logprobs(model, tokens, mask, response, key)
        if free:
            ref = jnp.zeros_like(total)
        else:
            ref = reference_logps(batch, REF_KEYS, frozen, tokens, mask, response, "DPO")
        (sum_w, sum_l), (rw, rl) = jnp.split(total, 2), jnp.split(ref, 2)
        pw, pl = sum_w, sum_l
        if loss_type in NORMALISED:  # per-token means of the response log-probs
            nw, nl = jnp.split(jnp.maximum(response[:, 1:].sum(-1), 1).astype(total.dtype), 2)
            pw, pl, rw, rl = pw / nw, pl / nl, rw / nw, rl / nl
        if per_pair is None:  # ORPO: SFT on the chosen + the odds ratio, not a function of the margin alone
            value = ops.orpo_loss(pw, pl, beta).mean()
        else:
            value = per_pair(ops.dpo_margin(pw, pl, rw, rl), beta, soft_label(batch, soft_labels)).mean()
        logps = {"logps/chosen": sum_w.mean(), "logps/rejected": sum_l.mean()}
        return value, {**ops.implicit_rewards(pw, pl, rw, rl, beta), **logps, "tokens": jnp.sum(mask)}, state

    return Objective(loss=loss)


KTO_KEYS = ("completion", "completion_mask", "completion_response", "kl", "kl_mask", "kl_response", "desirable")
KTO_REF_KEYS = ("ref_completion", "ref_kl")


@one_per_setting
def kto_objective(*, beta: float, desirable_weight: float = 1.0, undesirable_weight: float = 1.0) -> Objective:
    """KTO (Ethayarajh et al. 2024) on unpaired examples (``data.preferences.encode_unpaired``): each
    completion's summed log-ratio to the reference against the reference point ``z0`` estimated from the
    batch's mismatched ``kl`` rows (``ops.kto_reference_point``), ``ops.kto_loss`` averaged over the batch.
    The reference's log-probs come from the batch (``ref_completion`` / ``ref_kl``) or from
    ``frozen['reference']``. aux: ``kl`` (z0), ``rewards/desirable`` and ``rewards/undesirable`` (mean
    ``beta`` x log-ratio of each kind), ``tokens``. TRL weighs the kinds so that
    ``desirable_weight * n_D / (undesirable_weight * n_U)`` lies in [1, 4/3]."""
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if not (desirable_weight > 0 and undesirable_weight > 0):
        raise ValueError(f"desirable_weight and undesirable_weight must be > 0, got {desirable_weight}, "
                         f"{undesirable_weight}")

    def loss(model, batch, key, state, frozen):
        missing = [k for k in KTO_KEYS if k not in batch]
        if missing:
            raise KeyError(f"a KTO batch needs {missing} (data.preferences.encode_unpaired; got {sorted(batch)})")
        cat = lambda k: jnp.concatenate([batch[f"completion{k}"], batch[f"kl{k}"]])  # noqa: E731
        tokens, mask, response = cat(""), cat("_mask"), cat("_response")
        total, _, _ = response_logprobs(model, tokens, mask, response, key)
        ref = reference_logps(batch, KTO_REF_KEYS, frozen, tokens, mask, response, "KTO")
        (logp, logp_kl), (ref_logp, ref_kl) = jnp.split(total, 2), jnp.split(ref, 2)
        z0 = ops.kto_reference_point(logp_kl, ref_kl)
        desirable = batch["desirable"]
        value = ops.kto_loss(logp - ref_logp, desirable, z0, beta, desirable_weight, undesirable_weight).mean()
        rewards = beta * (logp - ref_logp)
        kind_mean = lambda m: jnp.sum(jnp.where(m, rewards, 0.0)) / jnp.maximum(jnp.sum(m), 1)  # noqa: E731
        aux = {"kl": z0, "rewards/desirable": kind_mean(desirable), "rewards/undesirable": kind_mean(~desirable),
               "tokens": jnp.sum(batch["completion_mask"])}
        return value, aux, state

    return Objective(loss=loss)


def soft_label(batch: dict, tau: float) -> jax.Array | None:
    """sigma((s_w - s_l) / tau) of the batch's pair scores; None for hard labels (tau = 0)."""
    if not tau:
        return None
    if not {"chosen_score", "rejected_score"} <= set(batch):
        raise ValueError("soft_labels needs each pair's scores: put chosen_score and rejected_score in the batch "
                         "(data.preferences.pairs_from_samples returns them)")
    return jax.nn.sigmoid((batch["chosen_score"] - batch["rejected_score"]) / tau)
