"""The one function that samples a policy on prompts for the objectives and judges that need it (online
DPO's pairs, PPO's rollouts, a policy's reward and KL): the model-agnostic sampler
(``models.sampler.sample``, KV cache, EOS, ragged left-padded prompts) with its output laid out as those
callers read it."""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from nlp_jax.models.sampler import sample


def rollout(policy: nnx.Module, prompts: np.ndarray, prompt_mask: np.ndarray, *, key: jax.Array,
            max_new_tokens: int, eos_id: int | None, pad_id: int = 0, temperature: float = 1.0
            ) -> dict[str, np.ndarray]:
    """One sampled response per left-padded prompt (B, T0): ``tokens`` (B, T0 + N) prompt then response,
    ``mask`` (B, T0 + N) the real tokens, ``response`` (B, T0 + N) the generated ones, ``logprobs`` (B, N) each
    generated token's log-prob under ``policy`` (0 after EOS) and ``logprob`` (B,) their sum."""
    s = sample(policy, prompts, prompt_mask, max_new_tokens=max_new_tokens, key=key, temperature=temperature,
               eos_id=eos_id, pad_id=pad_id)
    generated = np.asarray(s.mask)
    logprobs = np.where(generated, np.asarray(s.logprobs), 0.0)
    return {"tokens": np.asarray(s.tokens), "mask": np.concatenate([prompt_mask, generated], axis=1),
            "response": np.concatenate([np.zeros_like(prompt_mask), generated], axis=1), "logprobs": logprobs,
            "logprob": logprobs.sum(1)}
