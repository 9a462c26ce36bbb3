"""Decoding a conditioned decoder: greedy search and beam search, jitted and batched over sentences.

Any model with ``cache = model.start(source, source_mask)`` and ``model(tokens (B, 1), cache=cache) ->
(logits (B, 1, V), {'cache': new cache})`` decodes here (the encoder-decoders of ``models.seq2seq`` and
``models.transformer_seq2seq``); every cache leaf of rank >= 1 has the batch as its first axis, so
beam search tiles it K times and reorders it row by row.

Greedy takes the most probable piece at each step. Beam search (the variant of Wu et al. 2016 and
``transformers``) keeps K live hypotheses per sentence and K finished ones: at each step the 2K best
extensions of the live ones are ranked; an extension by ``</s>`` among the K best becomes a finished
hypothesis, scored ``log p / length ** length_penalty`` (length counting ``</s>``), and the K best others
stay live. The search stops when every sentence has K finished hypotheses that no live one can beat
(exactly, for ``length_penalty`` = 0; else bounded by the longest length), or at ``max_len``; a sentence
with none finished returns its best live hypothesis. With K = 1 and no length penalty this is greedy search
(tested). Both return (B, max_len) pieces after ``<s>``, ``pad_id`` after ``</s>``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

Array = jax.Array
_NEG = -1e9  # finite: a masked score stays comparable and never NaN


def _check(model, source, source_mask, max_len: int, beam: int = 1) -> None:
    if source.ndim != 2 or source_mask.shape != source.shape:
        raise ValueError(f"source must be (batch, length) with a mask of the same shape, got {source.shape} "
                         f"and {source_mask.shape}")
    if not np.asarray(source_mask).any(axis=1).all():
        raise ValueError("every source row needs at least one real piece (an empty line encodes as </s> alone)")
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    limit = getattr(model, "max_length", None)
    if limit is not None and max_len > limit:
        raise ValueError(f"max_len={max_len} exceeds the model's maximum length {limit}")
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")


def _step(model, tok, cache):
    logits, aux = model(tok[:, None], cache=cache)
    return jax.nn.log_softmax(logits[:, -1].astype(jnp.float32), axis=-1), aux["cache"]


@functools.partial(jax.jit, static_argnames=("graphdef", "max_len", "bos_id", "eos_id", "pad_id"))
def _greedy(graphdef, state, source, source_mask, *, max_len, bos_id, eos_id, pad_id):
    model = nnx.merge(graphdef, state)
    b = source.shape[0]
    out = jnp.full((b, max_len), pad_id, jnp.int32)
    init = (0, jnp.full((b,), bos_id, jnp.int32), model.start(source, source_mask), jnp.zeros((b,), bool), out,
            jnp.zeros((b,), jnp.float32))

    def body(carry):
        i, last, cache, done, out, score = carry
        logp, cache = _step(model, last, cache)
        tok = jnp.argmax(logp, axis=-1).astype(jnp.int32)
        score = score + jnp.where(done, 0.0, jnp.take_along_axis(logp, tok[:, None], 1)[:, 0])
        tok = jnp.where(done, pad_id, tok)
        return i + 1, tok, cache, done | (tok == eos_id), out.at[:, i].set(tok), score

    _, _, _, _, out, score = jax.lax.while_loop(lambda c: (c[0] < max_len) & ~c[3].all(), body, init)
    return out, score


def greedy(model: nnx.Module, source: Array, source_mask: Array, *, max_len: int, bos_id: int, eos_id: int,
           pad_id: int = 0) -> tuple[Array, Array]:
    """(pieces (B, max_len), log-prob of each (B,)): the most probable piece at every step."""
    _check(model, source, source_mask, max_len)
    graphdef, state = nnx.split(model)
    return _greedy(graphdef, state, jnp.asarray(source), jnp.asarray(source_mask, bool), max_len=max_len,
                   bos_id=bos_id, eos_id=eos_id, pad_id=pad_id)


def _gather_beams(tree, idx):
    """Rows ``idx`` (B, K') of each (B, K, ...) leaf."""
    return jax.tree.map(lambda x: jnp.take_along_axis(x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), axis=1)
                        if x.ndim >= 2 else x, tree)  # (a scalar, e.g. a cache's write index, is shared)


def _flat(tree, b, k):
    return jax.tree.map(lambda x: x.reshape((b * k,) + x.shape[2:]) if x.ndim >= 2 else x, tree)


def _unflat(tree, b, k):
    return jax.tree.map(lambda x: x.reshape((b, k) + x.shape[1:]) if x.ndim >= 1 else x, tree)


@functools.partial(jax.jit, static_argnames=("graphdef", "beam", "max_len", "length_penalty", "bos_id", "eos_id",
                                             "pad_id"))
def _beam(graphdef, state, source, source_mask, *, beam, max_len, length_penalty, bos_id, eos_id, pad_id):
    model = nnx.merge(graphdef, state)
    b, k = source.shape[0], beam
    cache = _unflat(model.start(source, source_mask), b, 1)
    cache = jax.tree.map(lambda x: jnp.repeat(x, k, axis=1) if x.ndim >= 2 else x, cache)  # (B, K, ...)
    alive = {"seq": jnp.full((b, k, max_len), pad_id, jnp.int32), "cache": cache,
             "score": jnp.tile(jnp.array([0.0] + [_NEG] * (k - 1), jnp.float32), (b, 1))}  # one live start
    done = {"seq": jnp.full((b, k, max_len), pad_id, jnp.int32), "score": jnp.full((b, k), _NEG, jnp.float32)}
    norm = lambda score, n: score / (n.astype(jnp.float32) ** length_penalty)  # noqa: E731

    def body(carry):
        i, alive, done = carry
        last = jnp.where(i == 0, bos_id, alive["seq"][:, :, jnp.maximum(i - 1, 0)])
        logp, cache = _step(model, last.reshape(b * k), _flat(alive["cache"], b, k))
        v = logp.shape[-1]
        cand = (alive["score"][:, :, None] + logp.reshape(b, k, v)).reshape(b, k * v)
        top, flat = jax.lax.top_k(cand, 2 * k)  # (B, 2K) best extensions, best first
        parent, tok = flat // v, (flat % v).astype(jnp.int32)
        seqs = _gather_beams(alive["seq"], parent).at[:, :, i].set(tok)
        is_eos = tok == eos_id
        # finished: the extensions by </s> among the K best, merged with the finished so far
        new_done = jnp.where(is_eos & (jnp.arange(2 * k) < k), norm(top, jnp.full_like(parent, i + 1)), _NEG)
        pool_score = jnp.concatenate([done["score"], new_done], axis=1)
        keep = jax.lax.top_k(pool_score, k)[1]
        done = {"seq": _gather_beams(jnp.concatenate([done["seq"], seqs], axis=1), keep),
                "score": jnp.take_along_axis(pool_score, keep, 1)}
        # alive: the K best extensions by anything else
        live = jax.lax.top_k(jnp.where(is_eos, _NEG, top), k)[1]
        cache = _gather_beams(_unflat(cache, b, k), jnp.take_along_axis(parent, live, 1))
        alive = {"seq": _gather_beams(seqs, live), "cache": cache, "score": jnp.take_along_axis(top, live, 1)}
        return i + 1, alive, done

    def running(carry):
        i, alive, done = carry
        # the best a live hypothesis could still reach: its score now (log-probs only fall), normalised by
        # the most favourable length (max_len when a penalty rewards length)
        best_len = jnp.where(length_penalty > 0, max_len, i + 1)
        bound = norm(alive["score"][:, 0], jnp.full((b,), best_len))
        settled = (done["score"][:, -1] > _NEG / 2) & (done["score"][:, -1] >= bound)
        return (i < max_len) & ~settled.all()

    _, alive, done = jax.lax.while_loop(running, body, (0, alive, done))
    any_done = done["score"][:, 0] > _NEG / 2
    seq = jnp.where(any_done[:, None], done["seq"][:, 0], alive["seq"][:, 0])
    lengths = jnp.maximum((alive["seq"][:, 0] != pad_id).sum(-1), 1)
    score = jnp.where(any_done, done["score"][:, 0], norm(alive["score"][:, 0], lengths))
    return seq, score


def beam_search(model: nnx.Module, source: Array, source_mask: Array, *, beam: int = 5, max_len: int,
                bos_id: int, eos_id: int, pad_id: int = 0, length_penalty: float = 1.0) -> tuple[Array, Array]:
    """(best pieces (B, max_len), their normalised score (B,)) by beam search of width ``beam``."""
    _check(model, source, source_mask, max_len, beam)
    if length_penalty < 0:
        raise ValueError(f"length_penalty must be >= 0, got {length_penalty}")
    graphdef, state = nnx.split(model)
    return _beam(graphdef, state, jnp.asarray(source), jnp.asarray(source_mask, bool), beam=beam, max_len=max_len,
                 length_penalty=float(length_penalty), bos_id=bos_id, eos_id=eos_id, pad_id=pad_id)
