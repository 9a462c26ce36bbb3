"""Training on preference pairs through the one loop (``train.loop.train``); the objectives themselves
(``objectives.dpo_objective``, ``objectives.reward_loss``) live in ``nlp_jax.objectives``.

- :func:`reference_logprobs`: the reference policy's log-probs of every pair, computed once and cached on
  disk with a fingerprint of the reference and the pairs;
- :func:`train_on_pairs`: either objective for whole epochs over a set of pairs, by the one loop.

A batch holds ``chosen``/``rejected`` (B, T) ids with their ``*_mask`` and ``*_response`` masks
(``data.preferences.encode_pairs``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from nlp_jax.data.atomic import atomic_path
from nlp_jax.data.corpus import ShuffledBatches
from nlp_jax.models.reward import pair_batch, response_logprobs
from nlp_jax.objectives.preference import REF_KEYS
from nlp_jax.train.config import OptimConfig, TrainConfig
from nlp_jax.train.stages import train_stage


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
        with atomic_path(cache, ".npz") as tmp:  # a crash mid-write leaves the old cache or none
            np.savez(tmp, fingerprint=fingerprint, **out)
    return out


PAIRS_TRAIN = TrainConfig(steps=0, log_every=25, eval_every=0, ckpt_every=100)  # steps 0: from the epochs


def train_on_pairs(model: nnx.Module, objective, pairs: dict[str, np.ndarray], *, epochs: int, batch_size: int,
                   optim_cfg: OptimConfig, workdir: str | Path, config, train_cfg: TrainConfig = PAIRS_TRAIN,
                   multiple: int = 8, stage: str | None = None) -> nnx.Module:
    """``model`` trained by ``objective`` (``objectives.dpo_objective``, ``objectives.reward_loss``) for
    ``epochs`` over ``pairs`` in shuffled batches of ``batch_size`` (at most the number of pairs, in an order
    seeded by ``train_cfg.seed``), each cut to its longest pair (a multiple of ``multiple`` wide), checkpointed
    in ``workdir`` under ``config`` (``stages.train_stage``: a rerun resumes it, or reads a finished run back).
    ``train_cfg.steps`` 0 means ``epochs`` passes over the pairs."""
    source = ShuffledBatches(pairs, min(batch_size, len(pairs["chosen"])), train_cfg.seed,
                             trim_by=("chosen_mask", "rejected_mask"), multiple=multiple)
    steps = train_cfg.steps or epochs * source.steps_per_epoch
    model, _ = train_stage(model, objective, source, train_cfg=dataclasses.replace(train_cfg, steps=steps),
                           optim_cfg=optim_cfg, workdir=workdir, config=config, stage=stage)
    return model
