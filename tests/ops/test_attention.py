import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from nlp_jax import ops


def np_attention(q, k, v, mask):
    """Float64 loops: softmax(q k^T / sqrt(d)) v per batch, head and query; zeros for a fully masked row."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    b, t, h, d = q.shape
    s = k.shape[1]
    mask = np.broadcast_to(mask, (b, h, t, s))
    out = np.zeros((b, t, h, d))
    for bi in range(b):
        for hi in range(h):
            for i in range(t):
                allowed = [j for j in range(s) if mask[bi, hi, i, j]]
                if not allowed:
                    continue
                scores = np.array([q[bi, i, hi] @ k[bi, j, hi] / np.sqrt(d) for j in allowed])
                w = np.exp(scores - scores.max())
                w /= w.sum()
                out[bi, i, hi] = sum(wj * v[bi, j, hi] for wj, j in zip(w, allowed))
    return out


def qkv(b=2, t=5, s=7, h=3, d=4, seed=0):
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.normal(size=(b, t, h, d)), jnp.float32),
            jnp.asarray(rng.normal(size=(b, s, h, d)), jnp.float32),
            jnp.asarray(rng.normal(size=(b, s, h, d)), jnp.float32))


class TestSDPA(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_matches_float64_reference_with_causal_and_padding_masks(self):
        q, k, v = qkv()
        lengths = jnp.array([7, 4])
        pad = ops.key_padding_mask(lengths, 7)  # (B, 1, 1, S)
        for is_causal in (False, True):
            f = self.variant(lambda q, k, v: ops.scaled_dot_product_attention(q, k, v, mask=pad, is_causal=is_causal))
            full = np.asarray(pad) & (np.asarray(ops.causal_mask(5, 7)) if is_causal else True)
            np.testing.assert_allclose(f(q, k, v), np_attention(q, k, v, full), atol=2e-6)

    def test_gradients_against_float64_finite_differences(self):
        q, k, v = qkv(t=6, s=6)
        with jax.enable_x64(True):
            q64, k64, v64 = (x.astype(jnp.float64) for x in (q, k, v))
            check_grads(lambda q, k, v: ops.scaled_dot_product_attention(q, k, v, is_causal=True),
                        (q64, k64, v64), order=1, modes=["rev"])


def test_fully_masked_row_is_zero_and_gradients_finite():
    q, k, v = qkv(t=3, s=4)
    mask = jnp.ones((2, 1, 3, 4), bool).at[0, :, 1, :].set(False)  # batch 0, query 1 sees nothing
    out = ops.scaled_dot_product_attention(q, k, v, mask=mask)
    assert np.all(np.asarray(out[0, 1]) == 0)
    assert np.all(np.isfinite(out))
    loss = lambda q, k, v: ops.scaled_dot_product_attention(q, k, v, mask=mask).sum()  # noqa: E731
    grads = jax.grad(loss, argnums=(0, 1, 2))(q, k, v)
    assert all(np.all(np.isfinite(g)) for g in grads)


def test_causal_attention_ignores_the_future():
    q, k, v = qkv(t=6, s=6)
    out = ops.scaled_dot_product_attention(q, k, v, is_causal=True)
    k2, v2 = k.at[:, 4:].add(10.0), v.at[:, 4:].add(-3.0)  # change only positions 4 and 5
    out2 = ops.scaled_dot_product_attention(q, k2, v2, is_causal=True)
    np.testing.assert_array_equal(out[:, :4], out2[:, :4])
    assert not np.allclose(out[:, 4:], out2[:, 4:])


def test_causal_mask_for_queries_at_the_end_of_a_cache():
    m = np.asarray(ops.causal_mask(2, 5))
    np.testing.assert_array_equal(m, [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])


def test_split_merge_heads_roundtrip_and_errors():
    x = jnp.arange(2 * 3 * 12.0).reshape(2, 3, 12)
    heads = ops.split_heads(x, 4)
    chex.assert_shape(heads, (2, 3, 4, 3))
    np.testing.assert_array_equal(heads[0, 0, 1], x[0, 0, 3:6])
    np.testing.assert_array_equal(ops.merge_heads(heads), x)
    with pytest.raises(ValueError, match="divisible"):
        ops.split_heads(x, 5)


def test_scores_and_context_vector():
    rng = np.random.default_rng(5)
    hd, he, w = rng.normal(size=4), rng.normal(size=(6, 4)), rng.normal(size=(4, 4))
    np.testing.assert_allclose(ops.dot_score(jnp.asarray(hd), jnp.asarray(he)), he @ hd, rtol=1e-5)
    np.testing.assert_allclose(ops.bilinear_score(jnp.asarray(hd), jnp.asarray(he), jnp.asarray(w)),
                               [hd @ w @ h for h in he], rtol=1e-5)
    scores = he @ hd
    mask = np.array([1, 1, 1, 0, 0, 1], bool)
    ctx, alpha = ops.attention_context(jnp.asarray(scores), jnp.asarray(he), jnp.asarray(mask))
    a = np.where(mask, np.exp(scores - scores[mask].max()), 0)
    a /= a.sum()
    np.testing.assert_allclose(alpha, a, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ctx, a @ he, rtol=1e-5, atol=1e-6)


def test_additive_score_is_bahdanaus_in_float64_and_takes_precomputed_keys():
    rng = np.random.default_rng(8)
    hd, he = rng.normal(size=(2, 5)), rng.normal(size=(2, 7, 6))
    wq, wk, v = rng.normal(size=(5, 3)), rng.normal(size=(6, 3)), rng.normal(size=3)
    expected = [[v @ np.tanh(wq.T @ hd[b] + wk.T @ he[b, j]) for j in range(7)] for b in range(2)]
    with jax.enable_x64(True):
        got = ops.additive_score(*(jnp.asarray(x, jnp.float64) for x in (hd, he, wq, wk, v)))
        np.testing.assert_allclose(got, expected, rtol=1e-12)
        pre = ops.additive_score(jnp.asarray(hd), jnp.asarray(he @ wk), jnp.asarray(wq), None, jnp.asarray(v))
        np.testing.assert_allclose(pre, expected, rtol=1e-12)
    with pytest.raises(AssertionError):
        ops.additive_score(jnp.asarray(hd), jnp.asarray(he), jnp.asarray(wq), jnp.asarray(wk), jnp.ones(4))


def test_cross_attention_against_reference():
    rng = np.random.default_rng(6)
    h_dec, h_enc = rng.normal(size=(2, 3, 5)), rng.normal(size=(2, 4, 6))
    wq, wk, wv = rng.normal(size=(5, 8)), rng.normal(size=(6, 8)), rng.normal(size=(6, 8))
    enc_mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], bool)
    out = ops.cross_attention(*(jnp.asarray(a, jnp.float32) for a in (h_dec, h_enc, wq, wk, wv)),
                              num_heads=2, enc_mask=jnp.asarray(enc_mask))
    q, k, v = (x.reshape(2, -1, 2, 4) for x in (h_dec @ wq, h_enc @ wk, h_enc @ wv))
    expected = np_attention(q, k, v, enc_mask[:, None, None, :]).reshape(2, 3, 8)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    chex.assert_shape(out, (2, 3, 8))


def test_self_attention_is_projections_then_attention():
    rng = np.random.default_rng(7)
    x = jnp.asarray(rng.normal(size=(2, 5, 6)), jnp.float32)
    wq, wk, wv = (jnp.asarray(rng.normal(size=(6, 8)), jnp.float32) for _ in range(3))
    pad = ops.key_padding_mask(jnp.array([5, 3]), 5)
    for causal in (False, True):
        out = ops.self_attention(x, wq, wk, wv, pad, num_heads=2, is_causal=causal)
        q, k, v = (np.asarray(x @ w).reshape(2, 5, 2, 4) for w in (wq, wk, wv))
        full = np.asarray(pad) & (np.tril(np.ones((5, 5), bool)) if causal else True)
        np.testing.assert_allclose(out, np_attention(q, k, v, full).reshape(2, 5, 8), rtol=1e-4, atol=1e-4)


def test_wrong_shapes_and_masks_name_the_problem():
    q, k, v = qkv()
    with pytest.raises(AssertionError):
        ops.scaled_dot_product_attention(q, k[:, :, :2], v)
    with pytest.raises(TypeError, match="boolean"):
        ops.scaled_dot_product_attention(q, k, v, mask=jnp.ones((5, 7)))


def test_nan_in_padded_values_does_not_leak():
    q, k, v = qkv()
    pad = ops.key_padding_mask(jnp.array([7, 4]), 7)
    poisoned = v.at[1, 4:].set(jnp.nan)  # batch 1's padding positions hold NaN
    out = ops.scaled_dot_product_attention(q, k, poisoned, mask=pad)
    np.testing.assert_allclose(out, ops.scaled_dot_product_attention(q, k, v, mask=pad), atol=1e-6)
