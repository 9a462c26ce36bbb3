"""Online DPO through the one loop (Guo et al. 2024, "Direct language model alignment from online AI
feedback"): every step's pairs are drawn from the policy being trained, at that step.

Iterative DPO (the controlled-sentiment study) draws a round's pairs from the policy of the round before and then
trains on them for hundreds of steps, by which time they are no longer the policy's own. Here
:class:`OnlinePairs` is the loop's ``source(step)``, bound to its :class:`Trainer` like PPO's rollouts:
for step t it samples ``samples`` responses to each of ``batch_size`` prompts from ``trainer.model`` (the
parameters after step t - 1), scores them with ``score_fn`` (an oracle or a reward model), pairs each
prompt's best against its worst and adds the frozen reference's log-probs of both. The objective is
``objectives.dpo_objective`` unchanged; ``stages.train_stage`` trains it like any other stage. A batch is a
function of the step and the policy only (prompts and sampling key seeded by the step), so a run resumed
from a checkpoint draws the same batches again.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np
from flax import nnx

from nlp_jax.data.corpus import epoch_rows
from nlp_jax.data.preferences import pairs_at
from nlp_jax.objectives.preference import REF_KEYS
from nlp_jax.objectives.sampling import rollout
from nlp_jax.train.preference import pair_logprobs

Scorer = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (tokens (B, T), attention mask (B, T)) -> (B,)


class OnlinePairs:
    """``source(step)`` for online DPO: a batch of ``batch_size`` pairs (``data.preferences.encode_pairs``'
    keys, each side's score, and ``ref_chosen`` / ``ref_rejected``) drawn from the bound trainer's policy.

    ``prompts`` (P, T0) left-padded with ``prompt_mask``; step t uses the prompts of minibatch t of seeded
    epochs over them (``data.corpus.epoch_rows``). A prompt whose samples all score the same states no
    preference: its pair is its best sample against itself, whose DPO gradient is zero without dropout (the
    two log-ratios cancel exactly; the gradient's sums leave rounding only), so the batch keeps one shape
    (one compilation) and the step's gradient is the mean over the prompts that do state one, scaled by
    their share of the batch."""

    def __init__(self, prompts: np.ndarray, prompt_mask: np.ndarray, *, reference: nnx.Module, score_fn: Scorer,
                 batch_size: int, samples: int = 2, max_new_tokens: int, eos_id: int | None = None,
                 pad_id: int = 0, temperature: float = 1.0, seed: int = 0):
        if samples < 2:
            raise ValueError(f"samples must be >= 2 responses per prompt to make a pair, got {samples}")
        if not 1 <= batch_size <= len(prompts):
            raise ValueError(f"batch_size={batch_size} must be in [1, {len(prompts)}] (the number of prompts)")
        self.prompts, self.prompt_mask = np.asarray(prompts), np.asarray(prompt_mask, bool)
        self.reference, self.score_fn, self.batch_size, self.samples = reference, score_fn, batch_size, samples
        self.sample_kw = dict(max_new_tokens=max_new_tokens, eos_id=eos_id, pad_id=pad_id, temperature=temperature)
        self.seed, self.trainer = seed, None

    def bind(self, trainer) -> None:
        self.trainer = trainer

    def draw(self, policy: nnx.Module, step: int) -> dict[str, np.ndarray]:
        """``samples`` responses of ``policy`` to each of step ``step``'s prompts, rows prompt-major."""
        rows = np.repeat(epoch_rows(self.seed, step, len(self.prompts), self.batch_size), self.samples)
        key = jax.random.fold_in(jax.random.key(self.seed), step)
        drawn = rollout(policy, self.prompts[rows], self.prompt_mask[rows], key=key, **self.sample_kw)
        return {k: drawn[k] for k in ("tokens", "mask", "response")}

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        if self.trainer is None:
            raise RuntimeError("OnlinePairs must be bound to the Trainer (train() calls source.bind(trainer))")
        drawn = self.draw(self.trainer.model, step)
        scores = np.asarray(self.score_fn(drawn["tokens"], drawn["mask"]), np.float32)
        grouped = scores.reshape(-1, self.samples)
        starts = np.arange(0, len(scores), self.samples)
        best = starts + grouped.argmax(1)
        worst = np.where(grouped.max(1) > grouped.min(1), starts + grouped.argmin(1), best)
        pairs = pairs_at(drawn, scores, best, worst)
        refs = pair_logprobs(self.reference, pairs)
        return {**pairs, **{k: np.asarray(v) for k, v in zip(REF_KEYS, refs)}}
