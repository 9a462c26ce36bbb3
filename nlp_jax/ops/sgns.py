"""Skip-gram and CBOW with negative sampling (Mikolov et al. 2013), as a loss and as sparse SGD updates.

Loss for one input vector h and its targets (the true word u_0 and k negatives u_1..u_k):

    L = -log sigma(u_0 . h) - sum_{i=1..k} log sigma(-u_i . h)

Its gradient is closed-form: with labels y = (1, 0, ..., 0) and g_i = y_i - sigma(u_i . h),
dL/dh = -sum_i g_i u_i and dL/du_i = -g_i h. An SGD step of rate lr therefore adds lr g_i h to every
target row and lr sum_i g_i u_i to the input row(s) -- a handful of rows out of the whole embedding, so
the updates below gather those rows, compute the step in closed form, and scatter-add it back: no dense
gradient over the vocabulary. All rows of a batch are read before any is written (the batch analogue of
word2vec.c's lock-free updates); updates to a row that occurs several times in a batch add up.

Skip-gram: h is the input ("in") vector of the centre word, u_0 the output ("out") vector of one context
word. CBOW: h is the mean of the context words' input vectors, u_0 the centre word's output vector, and
every context word's input row receives the full dL/dh step (word2vec.c and gensim with cbow_mean=1).

``sgns_train`` runs many steps: it scans the batched updates above (any backend). The C++ CPU kernel
(sequential per-example SGD, several threads) is ``nlp_jax.kernels.sgns_train``, equal to this path with
batches of one example (tested).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from nlp_jax.ops.sampling import draw_alias


def sgns_loss(h: jax.Array, u: jax.Array, weight: jax.Array | None = None) -> jax.Array:
    """Negative-sampling loss per example.

    Args:
      h: (B, D) input vectors.
      u: (B, 1 + k, D) output vectors: the true target first, then k negatives.
      weight: optional (B, 1 + k) weights of each term (0 drops a term, e.g. a negative equal to the
        target).
    Returns: (B,) loss.
    """
    chex.assert_rank(h, 2)
    chex.assert_rank(u, 3)
    scores = jnp.einsum("bd,bkd->bk", h, u)
    sign = jnp.where(jnp.arange(u.shape[1]) == 0, 1.0, -1.0)
    terms = -jax.nn.log_sigmoid(sign * scores)
    return (terms if weight is None else terms * weight).sum(axis=1)


def sgns_step(h: jax.Array, u: jax.Array, weight: jax.Array, lr: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The SGD step -lr dL/dh (B, D) and -lr dL/du (B, 1 + k, D) of ``sgns_loss``, in closed form."""
    scores = (h[:, None, :] * u).sum(-1)  # (B, 1 + k)
    label = (jnp.arange(u.shape[1]) == 0).astype(h.dtype)
    g = (label - jax.nn.sigmoid(scores)) * weight * lr  # (B, 1 + k)
    return (g[..., None] * u).sum(1), g[..., None] * h[:, None, :]


def _targets(true_ids: jax.Array, negatives: jax.Array, valid: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(B, 1 + k) target ids and weights: negatives equal to the true word are skipped, as in word2vec.c."""
    ids = jnp.concatenate([true_ids[:, None], negatives], axis=1)
    weight = jnp.concatenate([jnp.ones_like(true_ids[:, None]), negatives != true_ids[:, None]], axis=1)
    return ids, weight.astype(jnp.float32) * valid[:, None]


def skipgram_update(w_in: jax.Array, w_out: jax.Array, centres: jax.Array, contexts: jax.Array,
                    negatives: jax.Array, valid: jax.Array, lr: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One SGD step on a batch of (centre, context) pairs.

    Args:
      w_in, w_out: (V, D) input and output embeddings.
      centres, contexts: (B,) word ids of each pair.
      negatives: (B, k) noise word ids.
      valid: (B,) 1 for real pairs, 0 for padding.
      lr: scalar learning rate.
    Returns: the updated (w_in, w_out).
    """
    chex.assert_equal_shape([centres, contexts, valid])
    targets, weight = _targets(contexts, negatives, valid)
    dh, du = sgns_step(w_in[centres], w_out[targets], weight, lr)
    return w_in.at[centres].add(dh), w_out.at[targets.reshape(-1)].add(du.reshape(-1, w_out.shape[1]))


def cbow_update(w_in: jax.Array, w_out: jax.Array, centres: jax.Array, contexts: jax.Array,
                negatives: jax.Array, valid: jax.Array, lr: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One SGD step on a batch of CBOW windows: ``contexts`` is (B, C) with -1 padding, ``centres`` (B,);
    the other arguments as in ``skipgram_update``."""
    chex.assert_rank(contexts, 2)
    present = (contexts >= 0).astype(w_in.dtype)  # (B, C)
    rows = jnp.maximum(contexts, 0)
    count = jnp.maximum(present.sum(1, keepdims=True), 1.0)
    h = (w_in[rows] * present[..., None]).sum(1) / count  # (B, D) mean of the context vectors
    targets, weight = _targets(centres, negatives, valid)
    dh, du = sgns_step(h, w_out[targets], weight, lr)
    w_in = w_in.at[rows.reshape(-1)].add((present[..., None] * dh[:, None, :]).reshape(-1, w_in.shape[1]))
    return w_in, w_out.at[targets.reshape(-1)].add(du.reshape(-1, w_out.shape[1]))


def window_contexts(docs: jax.Array, reach: jax.Array, window: int) -> tuple[jax.Array, jax.Array]:
    """Context positions of every centre of a padded token chunk.

    A chunk holds m = P + 2 window positions: P centres preceded and followed by ``window`` positions of
    context-only margin. Returns positions (P, 2 window) -- slots are offsets -1..-window then
    +1..+window, as in the CPU kernel -- and a mask: within the centre's ``reach`` (its sampled dynamic
    window) and in its document.
    """
    centres = jnp.arange(window, docs.shape[0] - window)  # (P,)
    offsets = jnp.concatenate([-jnp.arange(1, window + 1), jnp.arange(1, window + 1)])  # (2W,)
    pos = centres[:, None] + offsets
    ok = (jnp.abs(offsets) <= reach[centres][:, None]) & (docs[pos] == docs[centres][:, None])
    return pos, ok


def _chunk_examples(tokens, docs, reach, bounds, window: int, sg: bool):
    """The XLA path's examples of a chunk, in centre order: skip-gram (centre, context, valid) per slot,
    or CBOW (centre, contexts (P, 2W) with -1, valid); the centre position of each; all centre positions."""
    pos, ok = window_contexts(docs, reach, window)
    centre_pos = jnp.arange(window, docs.shape[0] - window)
    ok &= ((centre_pos >= bounds[0]) & (centre_pos < bounds[1]))[:, None]
    if sg:
        examples = (jnp.repeat(tokens[centre_pos], 2 * window), tokens[pos].reshape(-1), ok.reshape(-1))
        return examples, jnp.repeat(centre_pos, 2 * window), centre_pos
    return (tokens[centre_pos], jnp.where(ok, tokens[pos], -1), ok.any(axis=1)), centre_pos, centre_pos


def sgns_train(w_in: jax.Array, w_out: jax.Array, tokens: jax.Array, docs: jax.Array, reach: jax.Array,
               bounds: jax.Array, lrs: jax.Array, noise: tuple[jax.Array, jax.Array], key: jax.Array, *,
               window: int, negative: int, sg: bool, batch: int,
               negatives: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Train on one chunk of the token stream: every centre in ``bounds[0] .. bounds[1] - 1``.

    Args:
      tokens, docs, reach: (m,) word ids, document ids and sampled window (1..window) of a chunk whose
        first and last ``window`` positions are context-only margin (see ``window_contexts``).
      bounds: (2,) the centre positions to train; lrs: (2,) the learning rate at the first centre and
        after the last (linear in between).
      noise: (prob, alias), the ``ops.sampling.alias_table`` of the noise distribution; ``negative`` words
        per example are drawn with ``key``.
      batch: examples (skip-gram pairs, CBOW windows) per SGD step.
      negatives: optional given noise words instead of drawn ones, (m, 2 window, k) for skip-gram (one
        set per context slot) or (m, k) for CBOW: with batch=1 this path and the CPU kernel (threads=1) agree.
    Returns the updated (w_in, w_out).
    """
    examples, first, centre_pos = _chunk_examples(tokens, docs, reach, bounds, window, sg)
    steps = -(-first.shape[0] // batch)
    pad = steps * batch - first.shape[0]
    shaped = [jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1)).reshape(steps, batch, *x.shape[1:]) for x in examples]
    progress = (first[::batch] - bounds[0]) / jnp.maximum(bounds[1] - bounds[0], 1)
    step_lrs = lrs[0] + (lrs[1] - lrs[0]) * jnp.clip(progress, 0.0, 1.0)
    if negatives is None:
        negatives = draw_alias(key, *noise, (steps, batch, negative))
    else:
        negatives = negatives[centre_pos].reshape(first.shape[0], -1)
        negatives = jnp.pad(negatives, [(0, pad), (0, 0)]).reshape(steps, batch, -1)
    update = skipgram_update if sg else cbow_update
    centres, contexts, valid = shaped

    def step(params, xs):
        return update(*params, *xs), None

    (w_in, w_out), _ = jax.lax.scan(step, (w_in, w_out), (centres, contexts, negatives, valid.astype(jnp.float32),
                                                          step_lrs))
    return w_in, w_out
