"""Reward and KL of a policy on held-out prompts: what every preference-learning method is judged by.

- :func:`draw`: ``n`` samples per prompt from a policy with the one sampler, in fixed-size batches (one
  compilation), rows prompt-major (row ``p * n + j`` is prompt p's j-th sample), with each sample's
  summed log-prob under the policy.
- :func:`sequence_logprobs_of`: a model's summed log-prob of given responses (the reference's, for KL);
  :func:`reward_scores`: a reward model's score of given rows; :func:`pairwise_accuracy` of two scores.
- ``KL(pi || pi_ref)`` per sequence is estimated from the policy's own samples, as the mean of
  ``log pi(y|x) - log pi_ref(y|x)`` (the k1 estimator: unbiased; its spread is reported beside it).
- :func:`best_of_n_kl`: the KL of best-of-n sampling from the reference, ``log n - (n - 1) / n``
  (Stiennon et al. 2020, appendix G; an upper bound, tight for continuous rewards), which samples
  cannot estimate since best-of-n has no tractable log-prob.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from nlp_jax.models.reward import response_logprobs
from nlp_jax.objectives.sampling import rollout

Judge = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (tokens (B, T), attention mask (B, T)) -> (B,)


def draw(policy: nnx.Module, prompts: np.ndarray, prompt_mask: np.ndarray, *, n: int, key: jax.Array,
         max_new_tokens: int, eos_id: int | None, pad_id: int = 0, temperature: float = 1.0,
         batch_size: int = 64) -> dict[str, np.ndarray]:
    """``{'tokens', 'mask', 'response'}`` (P n, T0 + N) and ``'logprob'`` (P n,): n samples of each
    left-padded prompt (P, T0); ``mask`` marks real tokens, ``response`` the generated ones."""
    if n < 1:
        raise ValueError(f"n must be >= 1 samples per prompt, got {n}")
    rows = np.repeat(np.arange(len(prompts)), n)
    parts = []
    for b, i in enumerate(tqdm(range(0, len(rows), batch_size), desc=f"sampling {n} per prompt", leave=False)):
        idx = rows[i:i + batch_size]
        full = np.resize(idx, batch_size)  # the last batch padded with repeats: one compiled shape
        drawn = rollout(policy, prompts[full], prompt_mask[full], max_new_tokens=max_new_tokens,
                        key=jax.random.fold_in(key, b), temperature=temperature, eos_id=eos_id, pad_id=pad_id)
        parts.append({k: drawn[k][:len(idx)] for k in ("tokens", "mask", "response", "logprob")})
    return {key_: np.concatenate([p[key_] for p in parts]) for key_ in parts[0]}


def by_length(fn, arrays: list[np.ndarray], batch_size: int, multiple: int = 32) -> np.ndarray:
    """``fn(*batch)`` (B, ...) over the rows of ``arrays`` (the second one the attention mask), returned in
    input order. Rows go in order of their last real column, each batch cut after its longest row (rounded
    up to ``multiple``: a few compiled widths, little padding), the last batch filled with repeats (one
    batch size). Columns after every row's last real token change no row's output (causal or masked
    attention)."""
    mask = arrays[1].astype(bool)
    n, width = mask.shape
    used = np.where(mask.any(1), width - np.argmax(mask[:, ::-1], axis=1), 1)
    order, out = np.argsort(used, kind="stable"), None
    for i in range(0, n, batch_size):
        idx = order[i:i + batch_size]
        full, cols = np.resize(idx, batch_size), min(width, -(-int(used[idx].max()) // multiple) * multiple)
        values = np.asarray(fn(*(jnp.asarray(a[full][:, :cols]) for a in arrays)))[:len(idx)]
        out = np.zeros((n, *values.shape[1:]), values.dtype) if out is None else out
        out[idx] = values
    return np.zeros((0,), np.float32) if out is None else out


@nnx.jit
def _logprobs(model, tokens, mask, response):
    return response_logprobs(model, tokens, mask, response)[0]


@nnx.jit
def _rewards(model, tokens, mask):
    return model(tokens, attention_mask=mask)[0]


def sequence_logprobs_of(model: nnx.Module, drawn: dict[str, np.ndarray], batch_size: int = 64) -> np.ndarray:
    """(N,) ``log model(response | prompt)`` of each drawn row, summed over the response tokens."""
    return by_length(lambda *a: _logprobs(model, *a), [drawn[k] for k in ("tokens", "mask", "response")],
                       batch_size)


def reward_scores(model: nnx.Module, tokens: np.ndarray, mask: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """(N,) a reward model's score r(x, y) of each row (prompt + response, ``mask`` on its real tokens)."""
    return by_length(lambda *a: _rewards(model, *a), [tokens, mask], batch_size)


def pairwise_accuracy(chosen: np.ndarray, rejected: np.ndarray) -> float:
    """The fraction of pairs whose chosen score is the higher, a tie counting one half (a scorer that cannot
    tell two responses apart scores 0.5, neither 0 nor 1)."""
    chosen, rejected = np.asarray(chosen, np.float64), np.asarray(rejected, np.float64)
    if chosen.shape != rejected.shape or chosen.ndim != 1 or not len(chosen):
        raise ValueError(f"chosen and rejected scores must be equal-length non-empty vectors, got shapes "
                         f"{chosen.shape} and {rejected.shape}")
    return float(np.mean((chosen > rejected) + 0.5 * (chosen == rejected)))


def best_of_n_kl(n: int) -> float:
    """KL(best-of-n || reference) = log n - (n - 1) / n nats (module docstring)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return math.log(n) - (n - 1) / n


def evaluate(policy: nnx.Module, reference: nnx.Module, prompts: np.ndarray, prompt_mask: np.ndarray,
             judges: dict[str, Judge], *, key: jax.Array, max_new_tokens: int, eos_id: int | None,
             pad_id: int = 0, samples: int = 1, batch_size: int = 64) -> dict[str, float]:
    """``samples`` samples per prompt: ``reward/<judge>`` means with ``reward_sem/<judge>`` (their standard
    errors over the samples), ``kl`` (mean k1 per sequence, nats) with ``kl_sem``, ``length`` (mean response
    tokens)."""
    drawn = draw(policy, prompts, prompt_mask, n=samples, key=key, max_new_tokens=max_new_tokens, eos_id=eos_id,
                 pad_id=pad_id, batch_size=batch_size)
    k1 = drawn["logprob"] - sequence_logprobs_of(reference, drawn, batch_size)
    scores = {name: np.asarray(judge(drawn["tokens"], drawn["mask"]), np.float64) for name, judge in judges.items()}
    return {**{f"reward/{name}": float(v.mean()) for name, v in scores.items()},
            **{f"reward_sem/{name}": _sem(v) for name, v in scores.items()},
            "kl": float(k1.mean()), "kl_sem": _sem(k1), "length": float(drawn["response"].sum(1).mean())}


def _sem(values: np.ndarray) -> float:
    """The standard error of the mean of ``values`` (0 for fewer than two)."""
    return float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0
