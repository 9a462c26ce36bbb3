"""Attention: scores, masks, scaled dot-product attention, heads, cross-attention.

Layout convention (as ``jax.nn.dot_product_attention``): queries (B, T, H, Dh), keys/values (B, S, H, Dh).
Masks are boolean, True = may attend, broadcastable to (B, H, T, S). A query whose row is fully masked
gets a zero output (never NaN, never an average of the values).
"""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp

from nlp_jax.ops.dropout import dropout

Array = jax.Array
_NEG = -1e30  # finite "minus infinity": exp underflows to 0 and no inf - inf = NaN appears


# ---- scores and the encoder-decoder context vector (Bahdanau / Luong) ----------------------------------


def dot_score(query: Array, keys: Array) -> Array:
    """``score(h^d, h^e_j) = h^d . h^e_j``. query (..., D), keys (..., S, D) -> (..., S)."""
    chex.assert_equal_shape_suffix([query, keys], 1)
    return jnp.einsum("...d,...sd->...s", query, keys)


def bilinear_score(query: Array, keys: Array, w: Array) -> Array:
    """Learned score ``score(h^d, h^e_j) = h^d W_s h^e_j``. query (..., Dd), keys (..., S, De), W (Dd, De)."""
    chex.assert_shape(w, (query.shape[-1], keys.shape[-1]))
    return jnp.einsum("...d,de,...se->...s", query, w, keys)


def additive_score(query: Array, keys: Array, w_q: Array, w_k: Array, v: Array) -> Array:
    """Bahdanau et al. 2015's score ``score(h^d, h^e_j) = v . tanh(W_q h^d + W_k h^e_j)``.
    query (..., Dd), keys (..., S, De), W_q (Dd, A), W_k (De, A), v (A,) -> (..., S). ``keys @ W_k`` does
    not depend on the decoder step: precompute it once per sentence and pass ``w_k=None`` with the
    projected keys (..., S, A)."""
    projected = keys if w_k is None else keys @ w_k  # (..., S, A)
    chex.assert_shape(v, (projected.shape[-1],))
    return jnp.tanh((query @ w_q)[..., None, :] + projected) @ v


def masked_softmax(scores: Array, mask: Array | None = None, axis: int = -1) -> Array:
    """Softmax over ``axis`` that ignores masked entries; a fully masked row gives all zeros."""
    if mask is None:
        return jax.nn.softmax(scores, axis=axis)
    scores = jnp.where(mask, scores, _NEG)
    probs = jax.nn.softmax(scores, axis=axis)
    return jnp.where(mask, probs, 0.0)


def attention_context(scores: Array, values: Array, mask: Array | None = None) -> tuple[Array, Array]:
    """``alpha_ij = softmax_j(score_ij)``, ``c_i = sum_j alpha_ij h^e_j``.

    Args:
      scores: (..., S) scores of one decoder state against S encoder states.
      values: (..., S, D) encoder states.
      mask: optional (..., S) bool, False for padding positions.
    Returns: (context (..., D), alpha (..., S)).
    """
    alpha = masked_softmax(scores, mask)
    return jnp.einsum("...s,...sd->...d", alpha, values), alpha


# ---- masks ---------------------------------------------------------------------------------------------


def causal_mask(t: int, s: int | None = None) -> Array:
    """(T, S) bool; query i may see key j iff ``j <= i + (S - T)`` (queries are the last T of S positions)."""
    s = t if s is None else s
    return jnp.arange(s)[None, :] <= jnp.arange(t)[:, None] + (s - t)


def padding_mask(lengths: Array, max_len: int) -> Array:
    """(B, max_len) bool, True at positions < length."""
    return jnp.arange(max_len)[None, :] < jnp.asarray(lengths)[:, None]


def key_padding_mask(lengths: Array, max_len: int) -> Array:
    """Padding mask shaped to broadcast against (B, H, T, S) attention logits: (B, 1, 1, S)."""
    return padding_mask(lengths, max_len)[:, None, None, :]


# ---- heads ---------------------------------------------------------------------------------------------


def split_heads(x: Array, num_heads: int) -> Array:
    """(B, T, H*Dh) -> (B, T, H, Dh)."""
    if x.shape[-1] % num_heads:
        raise ValueError(f"model dim {x.shape[-1]} is not divisible by num_heads={num_heads}")
    return x.reshape(*x.shape[:-1], num_heads, x.shape[-1] // num_heads)


def merge_heads(x: Array) -> Array:
    """(B, T, H, Dh) -> (B, T, H*Dh)."""
    return x.reshape(*x.shape[:-2], x.shape[-2] * x.shape[-1])


# ---- scaled dot-product attention ----------------------------------------------------------------------


def full_mask(mask: Array | None, is_causal: bool, t: int, s: int) -> Array | None:
    """The user's mask combined with the causal mask (if ``is_causal``); None when there is neither."""
    if is_causal:
        causal = causal_mask(t, s)
        mask = causal if mask is None else jnp.logical_and(mask, causal)
    return mask


def check_inputs(q: Array, k: Array, v: Array, mask: Array | None) -> None:
    """Shapes (B, T, H, Dh) / (B, S, H, Dh) and a boolean mask, with errors that name the argument."""
    chex.assert_rank([q, k, v], 4)
    chex.assert_equal_shape([k, v])
    chex.assert_equal_shape_suffix([q, k], 2)
    chex.assert_equal(q.shape[0], k.shape[0])
    if mask is not None and mask.dtype != jnp.bool_:
        raise TypeError(f"attention mask must be boolean (True = may attend), got {mask.dtype}; "
                        "convert with mask > 0 or mask.astype(bool)")


def scaled_dot_product_attention(
    q: Array,
    k: Array,
    v: Array,
    *,
    mask: Array | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    dropout_rate: float = 0.0,
    dropout_key: Array | None = None,
) -> Array:
    """``Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V`` (Vaswani et al. 2017), per head.

    The reference every fast path is tested against (``nlp_jax.kernels.attention``, in kernels/sdpa.py,
    dispatches to them).

    Args:
      q: (B, T, H, Dh) queries; k, v: (B, S, H, Dh) keys and values.
      mask: optional bool, broadcastable to (B, H, T, S); True = may attend.
      is_causal: add the causal mask (query i sees keys j <= i + S - T).
      scale: logit scale, default 1/sqrt(Dh).
      dropout_rate, dropout_key: dropout on the attention probabilities (none without a key).
    Returns: (B, T, H, Dh); rows whose mask is all False are zero, and values at keys no query may see (padding)
    never reach the output, so a NaN there stays out.
    """
    check_inputs(q, k, v, mask)
    t, s = q.shape[1], k.shape[1]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    logits = jnp.einsum("bthd,bshd->bhts", q, k) * scale  # (B, H, T, S)
    logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))  # softmax statistics in >= float32
    full = full_mask(mask, is_causal, t, s)
    probs = masked_softmax(logits, full)
    if mask is not None:  # a key no query may see (padding) contributes nothing, even a NaN or inf value
        seen = jnp.broadcast_to(full, probs.shape).any(axis=2)  # (B, H, S)
        v = jnp.where(jnp.transpose(seen, (0, 2, 1))[..., None], v, 0)
    probs = dropout(probs.astype(v.dtype), dropout_rate, dropout_key)
    return jnp.einsum("bhts,bshd->bthd", probs, v)  # (B, T, H, Dh)


def self_attention(x: Array, wq: Array, wk: Array, wv: Array, mask: Array | None = None, *,
                   num_heads: int = 1, is_causal: bool = False) -> Array:
    """Self-attention: ``Q = X W^Q, K = X W^K, V = X W^V``, then scaled dot-product attention.

    Args:
      x: (B, T, D) states; wq, wk, wv: (D, D') with D' divisible by ``num_heads``.
      mask: optional bool broadcastable to (B, H, T, T), e.g. a key padding mask (B, 1, 1, T).
      is_causal: also mask the future (decoders); False for encoders (BERT).
    Returns: (B, T, D') (heads merged; the output projection belongs to the caller's layer).
    """
    chex.assert_rank(x, 3)
    q, k, v = (split_heads(x @ w, num_heads) for w in (wq, wk, wv))  # (B, T, H, Dh)
    return merge_heads(scaled_dot_product_attention(q, k, v, mask=mask, is_causal=is_causal))


def cross_attention(
    h_dec: Array,
    h_enc: Array,
    wq: Array,
    wk: Array,
    wv: Array,
    *,
    num_heads: int = 1,
    enc_mask: Array | None = None,
) -> Array:
    """Cross-attention: ``Q = H^dec W^Q, K = H^enc W^K, V = H^enc W^V``, then scaled dot-product attention.

    Args:
      h_dec: (B, T, Dd) decoder states (previous layer); h_enc: (B, S, De) encoder outputs.
      wq: (Dd, D); wk, wv: (De, D) with D divisible by ``num_heads``.
      enc_mask: optional (B, S) bool, False for encoder padding.
    Returns: (B, T, D) (heads merged; the output projection belongs to the caller's layer).
    """
    chex.assert_rank([h_dec, h_enc], 3)
    q = split_heads(h_dec @ wq, num_heads)  # (B, T, H, Dh)
    k = split_heads(h_enc @ wk, num_heads)  # (B, S, H, Dh)
    v = split_heads(h_enc @ wv, num_heads)
    mask = None if enc_mask is None else enc_mask[:, None, None, :]
    return merge_heads(scaled_dot_product_attention(q, k, v, mask=mask))
