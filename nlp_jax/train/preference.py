"""Objectives for learning from preference pairs, trained by the one loop (``train.loop.train``):

- :func:`dpo_objective`: the DPO family on a policy (``ops.dpo_loss``), the reference log-probs read from
  the batch (``ref_chosen`` / ``ref_rejected``, computed once by :func:`reference_logprobs` and cached on
  disk) or, when absent, computed in the step from a frozen reference model (``frozen['reference']``).
- the reward model's Bradley-Terry objective is ``models.reward.reward_loss`` (stateless).
- :func:`train_on_pairs`: either objective for whole epochs over a set of pairs, by the one loop.

A batch holds ``chosen``/``rejected`` (B, T) ids with their ``*_mask`` and ``*_response`` masks
(``data.preferences.encode_pairs``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from nlp_jax import ops
from nlp_jax.data.corpus import ShuffledBatches
from nlp_jax.models.reward import pair_batch, response_logprobs
from nlp_jax.train.config import OptimConfig, TrainConfig
from nlp_jax.train.loop import train
from nlp_jax.train.records import Interrupted
from nlp_jax.train.trainer import Objective

REF_KEYS = ("ref_chosen", "ref_rejected")


def dpo_objective(*, beta: float, loss_type: str = "sigmoid", label_smoothing: float = 0.0, gamma: float = 0.0,
                  reference_free: bool = False, soft_labels: float = 0.0) -> Objective:
    """An :class:`Objective` whose loss is ``ops.dpo_loss`` of the policy being trained against the
    reference; aux: the ``rewards/*`` and ``logps/*`` metrics and ``tokens``. Arguments are checked here.
    ``soft_labels`` tau > 0: each pair's label is Bradley-Terry's sigma((s_w - s_l) / tau) of the scores
    ``chosen_score`` / ``rejected_score`` in the batch (the optimum: pi ~ pi_ref exp(s / (beta tau)))."""
    one = jnp.zeros(1)
    if not soft_labels >= 0:
        raise ValueError(f"soft_labels (the temperature on the score difference) must be >= 0, got {soft_labels}")
    ops.dpo_loss(one, one, one, one, beta=beta, loss_type=loss_type, label_smoothing=label_smoothing,
                 gamma=gamma, chosen_lengths=one + 1, rejected_lengths=one + 1, reference_free=reference_free,
                 preference=one + 1 if soft_labels else None)
    free = reference_free or loss_type == "simpo"

    def loss(model, batch, key, state, frozen):
        tokens, mask, response = pair_batch(batch)
        total, _, _ = response_logprobs(model, tokens, mask, response, key)
        if free:
            ref = jnp.zeros_like(total)
        elif all(k in batch for k in REF_KEYS):
            ref = jnp.concatenate([batch["ref_chosen"], batch["ref_rejected"]])
        elif "reference" in frozen:
            ref = jax.lax.stop_gradient(response_logprobs(frozen["reference"], tokens, mask, response)[0])
        else:
            raise ValueError("DPO needs the reference log-probs: put ref_chosen/ref_rejected in the batch "
                             "(reference_logprobs) or pass frozen={'reference': model}")
        lengths = response[:, 1:].sum(-1)
        (pw, pl), (rw, rl), (nw, nl) = (jnp.split(x, 2) for x in (total, ref, lengths))
        value, metrics = ops.dpo_loss(pw, pl, rw, rl, beta=beta, loss_type=loss_type, label_smoothing=label_smoothing,
                                      gamma=gamma, chosen_lengths=nw, rejected_lengths=nl,
                                      reference_free=reference_free, preference=soft_label(batch, soft_labels))
        return value, {**metrics, "tokens": jnp.sum(mask)}, state

    return Objective(loss=loss)


def soft_label(batch: dict, tau: float) -> jax.Array | None:
    """sigma((s_w - s_l) / tau) of the batch's pair scores; None for hard labels (tau = 0)."""
    if not tau:
        return None
    if not {"chosen_score", "rejected_score"} <= set(batch):
        raise ValueError("soft_labels needs each pair's scores: put chosen_score and rejected_score in the batch "
                         "(data.preferences.pairs_from_samples returns them)")
    return jax.nn.sigmoid((batch["chosen_score"] - batch["rejected_score"]) / tau)


def _fingerprint(model: nnx.Module, pairs: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)):
        h.update(np.asarray(leaf).tobytes())
    for k in sorted(pairs):
        h.update(k.encode() + np.ascontiguousarray(pairs[k]).tobytes())
    return h.hexdigest()


@nnx.jit
def pair_logprobs(model, batch) -> tuple[jax.Array, jax.Array]:
    """(chosen, rejected) (B,): ``model``'s summed response log-probs of a batch of pairs, in one pass."""
    tokens, mask, response = pair_batch(batch)
    return jnp.split(response_logprobs(model, tokens, mask, response)[0], 2)


def reference_logprobs(reference: nnx.Module, pairs: dict[str, np.ndarray], cache: str | Path | None = None,
                       *, batch_size: int = 16) -> dict[str, np.ndarray]:
    """``{'ref_chosen', 'ref_rejected'}`` (N,): the reference's summed response log-probs of every pair, in
    evaluation mode, computed once. With ``cache`` (an .npz path) they are stored with a fingerprint of
    the reference's parameters and the pairs, and reused while both are unchanged (a changed one is
    recomputed, never read stale)."""
    fingerprint = _fingerprint(reference, pairs)
    cache = None if cache is None else Path(cache)
    if cache is not None and cache.exists():
        with np.load(cache) as stored:
            if str(stored["fingerprint"]) == fingerprint:
                return {k: stored[k] for k in REF_KEYS}
        print(f"{cache}: made for another reference model or other pairs; recomputing")
    n = len(pairs["chosen"])
    parts = []
    for i in tqdm(range(0, n, batch_size), desc="reference log-probs", leave=False):
        batch = {k: jnp.asarray(v[i:i + batch_size]) for k, v in pairs.items() if k not in REF_KEYS}
        parts.append([np.asarray(x) for x in pair_logprobs(reference, batch)])
    out = {k: np.concatenate([p[j] for p in parts]) for j, k in enumerate(REF_KEYS)}
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp.npz")
        np.savez(tmp, fingerprint=fingerprint, **out)
        os.replace(tmp, cache)  # a crash mid-write leaves the old cache or none, never half of one
    return out


def train_on_pairs(model: nnx.Module, objective, pairs: dict[str, np.ndarray], *, epochs: int, batch_size: int,
                   optim_cfg: OptimConfig, workdir: str | Path, config, seed: int = 0, multiple: int = 8,
                   log_every: int = 25, ckpt_every: int = 100, progress: bool = True,
                   stage: str | None = None) -> nnx.Module:
    """``model`` trained by ``objective`` (:func:`dpo_objective`, ``models.reward.reward_loss``) for
    ``epochs`` over ``pairs`` in shuffled batches of ``batch_size`` (at most the number of pairs), each cut
    to its longest pair (a multiple of ``multiple`` wide), checkpointed in ``workdir`` under ``config``
    (a rerun resumes it, or reads a finished run back). A run stopped by a signal raises
    ``records.Interrupted`` naming ``stage`` (default: the workdir's name)."""
    source = ShuffledBatches(pairs, min(batch_size, len(pairs["chosen"])), seed,
                             trim_by=("chosen_mask", "rejected_mask"), multiple=multiple)
    train_cfg = TrainConfig(steps=epochs * source.steps_per_epoch, log_every=log_every, eval_every=0,
                            ckpt_every=ckpt_every, progress=progress)
    model, result = train(model, objective, source, train_cfg=train_cfg, optim_cfg=optim_cfg, workdir=workdir,
                          config=config)
    if result.interrupted:
        raise Interrupted(stage or Path(workdir).name, result)
    return model
