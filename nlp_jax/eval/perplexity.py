"""Perplexity of a language model over a whole token stream.

Every token after the first is scored exactly once. Windows of ``context`` input tokens start every
``stride`` tokens; the first window scores all its targets, each later window only its last ``stride``
targets, which therefore see ``context - stride`` tokens of left context at least (the sliding-window
protocol for long texts). ``stride == context`` gives non-overlapping blocks: cheapest, least context.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nlp_jax import kernels, ops


def _stream(tokens) -> np.ndarray:
    """A 1-D int32 stream of at least 2 tokens (one to condition on, one to score)."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 1 or len(tokens) < 2:
        raise ValueError(f"perplexity needs a 1-D stream of at least 2 tokens, got shape {tokens.shape}")
    return tokens.astype(np.int32)


def windows(n_tokens: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """(start, end, first_scored) for each window: inputs ``[start, end)`` predict ``[start+1, end+1)``,
    and targets from position ``first_scored`` on are counted (absolute positions of the predicted token)."""
    if not 0 < stride <= context:
        raise ValueError(f"stride must be in [1, context={context}], got {stride}")
    n_targets = n_tokens - 1
    out, scored_until, start = [], 1, 0
    while scored_until <= n_targets:
        end = min(start + context, n_targets)
        out.append((start, end, scored_until))
        scored_until = end + 1
        start += stride
    return out


@functools.partial(jax.jit, static_argnums=0)
def _window_nll(graphdef, state, inputs, targets):
    model = nnx.merge(graphdef, state)
    logits, _ = model(inputs)
    return kernels.cross_entropy(logits, targets, reduction="none")  # (B, T)


def token_nlls(model: nnx.Module, tokens, *, context: int, stride: int | None = None,
               batch_size: int = 64) -> np.ndarray:
    """Per-token NLL (nats) of ``tokens[1:]`` under ``model`` (called as ``model(inputs) -> (logits, aux)``)."""
    tokens = _stream(tokens)
    plan = windows(len(tokens), context, context if stride is None else stride)
    graphdef, state = nnx.split(model)
    out = np.zeros(len(tokens) - 1, np.float64)
    for b in range(0, len(plan), batch_size):
        chunk = plan[b:b + batch_size]
        inputs = np.zeros((batch_size, context), np.int32)  # fixed shape: one compilation
        targets = np.zeros((batch_size, context), np.int32)
        for i, (start, end, _) in enumerate(chunk):
            inputs[i, :end - start] = tokens[start:end]
            targets[i, :end - start] = tokens[start + 1:end + 1]
        nll = np.asarray(_window_nll(graphdef, state, jnp.asarray(inputs), jnp.asarray(targets)))
        for i, (start, end, first) in enumerate(chunk):
            offset = first - 1 - start  # index within the window of the first counted target
            out[first - 1:end] = nll[i, offset:end - start]
    return out


def perplexity(model: nnx.Module, tokens, *, context: int, stride: int | None = None,
               batch_size: int = 64) -> dict[str, float]:
    """``{'loss': mean NLL in nats, 'ppl': exp(loss), 'tokens': N}`` over the whole stream."""
    nll = token_nlls(model, tokens, context=context, stride=stride, batch_size=batch_size)
    loss = float(nll.mean())
    return {"loss": loss, "ppl": float(ops.perplexity(loss)), "tokens": int(nll.size)}


@functools.partial(jax.jit, static_argnums=0)
def _carried_nll(graphdef, state, inputs, targets, carry):
    model = nnx.merge(graphdef, state)
    logits, aux = model(inputs, cache=carry)
    return kernels.cross_entropy(logits, targets, reduction="sum"), aux["cache"]


def recurrent_perplexity(model: nnx.Module, tokens, *, bptt: int = 35) -> dict[str, float]:
    """Perplexity of a recurrent LM over a whole stream read once, left to right, batch 1, with the
    hidden state carried across windows (each token predicted with its entire history). The model is
    called as ``model(inputs, cache=...) -> (logits, {'cache': ...})`` and has ``init_carry(batch)``."""
    tokens = _stream(tokens)
    graphdef, state = nnx.split(model)
    carry, total = model.init_carry(1), 0.0
    for start in range(0, len(tokens) - 1, bptt):
        end = min(start + bptt, len(tokens) - 1)
        x, y = tokens[None, start:end], tokens[None, start + 1:end + 1]
        nll, carry = _carried_nll(graphdef, state, jnp.asarray(x), jnp.asarray(y), carry)
        total += float(nll)
    loss = total / (len(tokens) - 1)
    return {"loss": loss, "ppl": float(ops.perplexity(loss)), "tokens": len(tokens) - 1}
