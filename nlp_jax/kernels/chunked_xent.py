"""The output layer and its softmax cross-entropy in one, token chunk by token chunk, so that the
(tokens x vocabulary) logits are never held at once: ``ops.cross_entropy(hidden @ weight.T, targets)``
for GPT-2's 50,257-piece vocabulary at a fraction of the memory.

The forward pass computes each chunk's logits (float32 accumulation, whatever the input dtype), keeps
only its log-sum-exp and the target's logit, and drops the logits; the custom VJP recomputes them a chunk
at a time for ``dL/dz = g (softmax(z) - q)`` (q the one-hot target, or its label-smoothed form), from which
``dL/dh = (dL/dz) W`` and ``dL/dW = sum over chunks (dL/dz)^T h``. Peak memory is one chunk's logits
(``chunk x V`` floats) besides the inputs and their gradients, against three to four (tokens x V) arrays
on the plain path (the logits, their softmax, the gradient). The reference is ``ops.cross_entropy`` on
the full logits; tests prove the two equal in float64, gradients included.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from nlp_jax import ops

Array = jax.Array
_LOGIT_BUDGET = 1 << 24  # floats of one chunk's logits when no chunk size is given (64 MiB in float32)


def _acc(*xs: Array):
    """The accumulation dtype: float32, or float64 for float64 inputs."""
    return jnp.promote_types(jnp.result_type(*xs), jnp.float32)


def _logits(h: Array, w: Array) -> Array:
    return jnp.einsum("nd,vd->nv", h, w, preferred_element_type=_acc(h, w))


def _chunks(x: Array, chunk: int) -> Array:
    """(N, ...) -> (N / chunk, chunk, ...), N already a multiple of chunk."""
    return x.reshape(x.shape[0] // chunk, chunk, *x.shape[1:])


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _per_token(h: Array, w: Array, t: Array, chunk: int, eps: float) -> Array:
    """(N,) ``(1 - eps) (lse - z_t) + eps (lse - mean z)`` of ``z = h W^T``; h (N, D), w (V, D), t (N,) in [0, V)."""
    return _forward(h, w, t, chunk, eps)[0]


def _forward(h, w, t, chunk, eps):
    def one(args):
        hc, tc = args
        z = _logits(hc, w)  # (chunk, V)
        lse = jax.nn.logsumexp(z, axis=-1)
        zt = jnp.take_along_axis(z, tc[:, None], axis=-1)[:, 0]
        loss = lse - zt if not eps else (1.0 - eps) * (lse - zt) + eps * (lse - z.mean(-1))
        return loss, lse

    loss, lse = jax.lax.map(one, (_chunks(h, chunk), _chunks(t, chunk)))
    return loss.reshape(-1), (h, w, t, lse.reshape(-1))


def _backward(chunk, eps, res, g):
    h, w, t, lse = res
    v = w.shape[0]

    def one(dw, args):
        hc, tc, lc, gc = args
        z = _logits(hc, w)
        dz = jnp.exp(z - lc[:, None]) - (1.0 - eps) * jax.nn.one_hot(tc, v, dtype=z.dtype) - eps / v
        dz = dz * gc[:, None]  # (chunk, V)
        dh = jnp.einsum("nv,vd->nd", dz, w, preferred_element_type=z.dtype).astype(h.dtype)
        return dw + jnp.einsum("nv,nd->vd", dz, hc, preferred_element_type=z.dtype), dh

    dw, dh = jax.lax.scan(one, jnp.zeros(w.shape, _acc(h, w)),
                          (_chunks(h, chunk), _chunks(t, chunk), _chunks(lse, chunk), _chunks(g, chunk)))
    return dh.reshape(h.shape), dw.astype(w.dtype), None


_per_token.defvjp(_forward, _backward)


def default_chunk(tokens: int, vocab: int) -> int:
    """Tokens a chunk when none is given: as many as keep one chunk's logits within 2^24 floats."""
    return max(1, min(tokens, _LOGIT_BUDGET // max(vocab, 1)))


def linear_cross_entropy(hidden: Array, weight: Array, targets: Array, *, mask: Array | None = None,
                         ignore_index: int | None = None, label_smoothing: float = 0.0, reduction: str = "mean",
                         chunk: int | None = None) -> Array:
    """``ops.cross_entropy(hidden @ weight.T, targets, ...)`` without forming the logits (module docstring).

    Args:
      hidden: (..., D) final states (any float dtype; the logits accumulate in float32).
      weight: (V, D) the output layer (a tied embedding); rows past the real vocabulary are the caller's to
        slice off (``weight[:vocab_size]``).
      targets: (...) integer ids; an id outside [0, V) gives NaN, as on the plain path.
      mask, ignore_index, label_smoothing, reduction: as :func:`nlp_jax.ops.cross_entropy`.
      chunk: tokens whose logits exist at once (default :func:`default_chunk`); the tokens are padded to a
        multiple of it.
    """
    if hidden.ndim < 1 or weight.ndim != 2 or hidden.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear_cross_entropy: hidden (..., D) and weight (V, D) must share D, got hidden "
                         f"{hidden.shape} and weight {weight.shape}")
    if hidden.shape[:-1] != targets.shape or not jnp.issubdtype(targets.dtype, jnp.integer):
        raise ValueError(f"linear_cross_entropy: targets must be integer ids of shape hidden.shape[:-1] = "
                         f"{hidden.shape[:-1]}, got {targets.dtype} {targets.shape}")
    ops.losses.check_label_smoothing(label_smoothing)
    if chunk is not None and chunk < 1:
        raise ValueError(f"chunk must be >= 1 token (or None for the default), got {chunk}")
    v = weight.shape[0]
    safe = ops.losses.safe_labels(targets, ignore_index)
    flat, n = safe.reshape(-1), safe.size
    chunk = default_chunk(n, v) if chunk is None else min(chunk, max(n, 1))
    pad = -n % chunk
    h = jnp.pad(hidden.reshape(n, -1), ((0, pad), (0, 0)))
    t = jnp.pad(jnp.clip(flat, 0, v - 1).astype(jnp.int32), (0, pad))
    per_token = _per_token(h, weight, t, chunk, float(label_smoothing))[:n]
    per_token = jnp.where((flat >= 0) & (flat < v), per_token, jnp.nan).reshape(targets.shape)
    return ops.losses.reduce(per_token, ops.losses.label_weights(targets, mask, ignore_index), reduction)
