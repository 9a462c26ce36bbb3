"""One sampler for every decoder: greedy, temperature, top-k and top-p decoding with a KV cache, EOS
stopping and left-padded prompts of different lengths, jitted, returning tokens and per-token log-probs.

It needs only the package's model convention: ``model(tokens, *, positions, attention_mask, cache) ->
(logits, aux)`` with ``aux['cache']`` the updated cache, and ``model.init_cache(batch, length)``.

Prompts are left-padded: ``prompt_mask`` (B, T0) is False on the padding, so every prompt ends at column
T0 - 1 and the batch decodes in lock step. Positions count real tokens only (``cumsum(mask) - 1``) and
padding keys are masked, so a prompt decodes exactly as it would alone (tested). After a row emits
``eos_id`` it emits ``pad_id`` with log-prob 0 and ``mask`` False.

``logprobs`` are ``log softmax(logits / temperature)`` of the chosen token (``temperature=0``: of the
logits), before top-k / top-p filtering: the policy's own probability, as PPO needs it.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nlp_jax import ops

Array = jax.Array


class Sample(NamedTuple):
    tokens: Array  # (B, T0 + N) prompt (left-padded) then the new tokens
    logprobs: Array  # (B, N) log-prob of each new token (0 after EOS)
    mask: Array  # (B, N) bool: the token was generated (up to and including EOS)


def check_prompt(prompt, vocab_size: int) -> None:
    """A 2-D integer prompt of at least one token, with ids in [0, vocab_size)."""
    if prompt.ndim != 2 or prompt.shape[1] == 0:
        raise ValueError(f"prompt must be (batch, length >= 1) token ids, got shape {tuple(prompt.shape)}")
    if not jnp.issubdtype(prompt.dtype, jnp.integer):
        raise TypeError(f"prompt must hold integer token ids, got {prompt.dtype}")
    if not isinstance(prompt, jax.core.Tracer):
        lo, hi = int(prompt.min()), int(prompt.max())
        if lo < 0 or hi >= vocab_size:
            raise ValueError(f"prompt ids must be in [0, {vocab_size}), got ids from {lo} to {hi}")


def _check_sampling(max_new_tokens: int, temperature: float, top_k, top_p) -> None:
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if not (temperature >= 0 and np.isfinite(temperature)):  # also rejects NaN
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")


def _choose(key, logits, temperature, top_k, top_p):
    """(token, its log-prob) for each row of logits (B, V)."""
    logits = logits.astype(jnp.float32)
    tok = ops.sample_logits(key, logits, temperature=temperature, top_k=top_k, top_p=top_p)
    log_p = jax.nn.log_softmax(logits / (temperature or 1.0), axis=-1)
    return tok, jnp.take_along_axis(log_p, tok[:, None], axis=-1)[:, 0]


@functools.partial(jax.jit, static_argnames=("graphdef", "max_new_tokens", "temperature", "top_k", "top_p",
                                             "eos_id", "pad_id"))
def _sample(graphdef, state, prompt, prompt_mask, key, *, max_new_tokens, temperature, top_k, top_p, eos_id, pad_id):
    model = nnx.merge(graphdef, state)
    b, t0 = prompt.shape
    positions = jnp.maximum(jnp.cumsum(prompt_mask, axis=1) - 1, 0)  # (B, T0): real tokens counted
    cache = model.init_cache(b, t0 + max_new_tokens)
    logits, aux = model(prompt, positions=positions, attention_mask=prompt_mask, cache=cache)

    def step(carry, i):
        last, cache, pos, done, key = carry
        key, sub = jax.random.split(key)
        tok, logp = _choose(sub, last, temperature, top_k, top_p)
        live = ~done
        tok = jnp.where(live, tok, pad_id)
        done = done | (live & (tok == eos_id)) if eos_id is not None else done
        logits, aux = model(tok[:, None].astype(prompt.dtype), positions=pos[:, None], cache=cache)
        return (logits[:, -1], aux["cache"], pos + 1, done, key), (tok, jnp.where(live, logp, 0.0), live)

    init = (logits[:, -1], aux["cache"], positions[:, -1] + 1, jnp.zeros((b,), bool), key)
    _, (toks, logps, live) = jax.lax.scan(step, init, jnp.arange(max_new_tokens))
    return Sample(jnp.concatenate([prompt, toks.T.astype(prompt.dtype)], axis=1), logps.T, live.T)


def sample(model: nnx.Module, prompt: Array, prompt_mask: Array | None = None, *, max_new_tokens: int, key: Array,
           temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
           eos_id: int | None = None, pad_id: int = 0) -> Sample:
    """Decode ``max_new_tokens`` after each left-padded prompt (B, T0) (``prompt_mask`` (B, T0) bool, True on
    real tokens; None = no padding). ``temperature=0`` is greedy. Returns a :class:`Sample`."""
    prompt = jnp.asarray(prompt)
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    check_prompt(prompt, vocab if vocab is not None else np.iinfo(np.int32).max)
    _check_sampling(max_new_tokens, temperature, top_k, top_p)
    mask = jnp.ones(prompt.shape, bool) if prompt_mask is None else jnp.asarray(prompt_mask, bool)
    if mask.shape != prompt.shape:
        raise ValueError(f"prompt_mask has shape {mask.shape}, prompt {prompt.shape}")
    limit = getattr(model, "max_length", None)
    if limit is not None and prompt.shape[1] + max_new_tokens > limit:
        raise ValueError(f"prompt length {prompt.shape[1]} + max_new_tokens {max_new_tokens} exceeds the model's "
                         f"maximum length {limit}")
    if max_new_tokens == 0:
        return Sample(prompt, jnp.zeros((prompt.shape[0], 0)), jnp.zeros((prompt.shape[0], 0), bool))
    graphdef, state = nnx.split(model)
    return _sample(graphdef, state, prompt, mask, key, max_new_tokens=max_new_tokens, temperature=float(temperature),
                   top_k=top_k, top_p=top_p, eos_id=eos_id, pad_id=pad_id)
