"""Training on preference pairs through the one loop (``train.loop.train``); the objectives themselves
(``objectives.dpo_objective``, ``objectives.reward_loss``) live in ``nlp_jax.objectives``.

- :func:`reference_logprobs`: the reference policy's log-probs of every pair (or KTO example), computed once
  and cached on disk with a fingerprint of the reference and the data;
- :func:`train_on_pairs`: either objective for whole epochs over a set of pairs, by the one loop.

A batch holds ``chosen``/``rejected`` (B, T) ids with their ``*_mask`` and ``*_response`` masks
(``data.preferences.encode_pairs``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from nlp_jax.data.atomic import atomic_path
from nlp_jax.data.corpus import ShuffledBatches
from nlp_jax.models.reward import response_logprobs
from nlp_jax.train.config import OptimConfig, TrainConfig
from nlp_jax.train.stages import train_stage


def _fingerprint(model: nnx.Module, pairs: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)):
        h.update(np.asarray(leaf).tobytes())
    for k in sorted(pairs):
        h.update(k.encode() + np.ascontiguousarray(pairs[k]).tobytes())
    return h.hexdigest()


@functools.partial(nnx.jit, static_argnames=("sides",))
def pair_logprobs(model, batch, sides: tuple[str, str] = ("chosen", "rejected")) -> tuple[jax.Array, jax.Array]:
    """The two rows' (B,) summed response log-probs under ``model`` in one pass: ``(chosen, rejected)`` of a
    batch of pairs, or of any two ``sides`` with their ``*_mask`` and ``*_response`` (KTO's completion and
    KL rows)."""
    cat = lambda k: jnp.concatenate([batch[f"{sides[0]}{k}"], batch[f"{sides[1]}{k}"]])  # noqa: E731
    return jnp.split(response_logprobs(model, cat(""), cat("_mask"), cat("_response"))[0], 2)


def reference_logprobs(reference: nnx.Module, pairs: dict[str, np.ndarray], cache: str | Path | None = None,
                       *, batch_size: int = 16, sides: tuple[str, str] = ("chosen", "rejected")
                       ) -> dict[str, np.ndarray]:
    """``{'ref_chosen', 'ref_rejected'}`` (N,): the reference's summed response log-probs of every pair, in
    evaluation mode, computed once (``sides=('completion', 'kl')``: KTO's examples, ``{'ref_completion',
    'ref_kl'}``). With ``cache`` (an .npz path) they are stored with a fingerprint of the reference's
    parameters and the data, and reused while both are unchanged (a changed one is recomputed, never read
    stale)."""
    keys = tuple(f"ref_{side}" for side in sides)
    rows = {f"{side}{x}": pairs[f"{side}{x}"] for side in sides for x in ("", "_mask", "_response")}
    fingerprint = _fingerprint(reference, rows)
    cache = None if cache is None else Path(cache)
    if cache is not None and cache.exists():
        with np.load(cache) as stored:
            if str(stored["fingerprint"]) == fingerprint and set(keys) <= set(stored.files):
                return {k: stored[k] for k in keys}
        print(f"{cache}: made for another reference model or other data; recomputing")
    n = len(pairs[sides[0]])
    parts = []
    for i in tqdm(range(0, n, batch_size), desc="reference log-probs", leave=False):
        batch = {k: jnp.asarray(v[i:i + batch_size]) for k, v in rows.items()}
        parts.append([np.asarray(x) for x in pair_logprobs(reference, batch, sides)])
    out = {k: np.concatenate([p[j] for p in parts]) for j, k in enumerate(keys)}
    if cache is not None:
        with atomic_path(cache, ".npz") as tmp:  # a crash mid-write leaves the old cache or none
            np.savez(tmp, fingerprint=fingerprint, **out)
    return out


PAIRS_TRAIN = TrainConfig(steps=0, log_every=25, eval_every=0, ckpt_every=100)  # steps 0: from the epochs


def train_on_pairs(model: nnx.Module, objective, pairs: dict[str, np.ndarray], *, epochs: int, batch_size: int,
                   optim_cfg: OptimConfig, workdir: str | Path, config, train_cfg: TrainConfig = PAIRS_TRAIN,
                   multiple: int = 8, stage: str | None = None, sides: tuple[str, str] = ("chosen", "rejected")
                   ) -> nnx.Module:
    """``model`` trained by ``objective`` (``objectives.dpo_objective``, ``objectives.reward_loss``) for
    ``epochs`` over ``pairs`` in shuffled batches of ``batch_size`` (at most the number of pairs, in an order
    seeded by ``train_cfg.seed``), each cut to its longest pair (a multiple of ``multiple`` wide), checkpointed
    in ``workdir`` under ``config`` (``stages.train_stage``: a rerun resumes it, or reads a finished run back).
    ``train_cfg.steps`` 0 means ``epochs`` passes over the pairs. ``sides``: the two row kinds of an example
    (``('completion', 'kl')`` for KTO's, ``objectives.kto_objective``)."""
    source = ShuffledBatches(pairs, min(batch_size, len(pairs[sides[0]])), train_cfg.seed,
                             trim_by=tuple(f"{side}_mask" for side in sides), multiple=multiple)
    steps = train_cfg.steps or epochs * source.steps_per_epoch
    model, _ = train_stage(model, objective, source, train_cfg=dataclasses.replace(train_cfg, steps=steps),
                           optim_cfg=optim_cfg, workdir=workdir, config=config, stage=stage)
    return model
