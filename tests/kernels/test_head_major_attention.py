"""The head-major XLA attention path ('auto' on CPU for masks, bidirectional and dropout) against the
reference in float64, values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nlp_jax import ops
from nlp_jax.kernels import sdpa as A


def _inputs(b, t, s, h, d, seed):
    rng = np.random.default_rng(seed)
    return tuple(jnp.asarray(rng.normal(size=shape)) for shape in ((b, t, h, d), (b, s, h, d), (b, s, h, d)))


def _masks(b, t, s, h):
    lengths = np.array([s, 1, max(1, s // 2)][:b])
    key_padding = jnp.asarray(np.arange(s)[None, :] < lengths[:, None])[:, None, None, :]  # (B, 1, 1, S)
    per_head = jnp.asarray(np.random.default_rng(9).random((b, h, t, s)) > 0.3)
    empty_row = per_head.at[0, 0, 0, :].set(False)  # a query that sees no key at all
    return {"none": None, "key padding": key_padding, "per head": per_head, "an empty row": empty_row}


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("mask_name", ["none", "key padding", "per head", "an empty row"])
@pytest.mark.parametrize("t, s", [(7, 7), (3, 9)])
def test_values_and_gradients_equal_the_reference_in_float64(mask_name, causal, t, s):
    with jax.enable_x64(True):
        q, k, v = _inputs(3, t, s, 2, 5, seed=t + s)
        mask = _masks(3, t, s, 2)[mask_name]
        c = jnp.asarray(np.random.default_rng(1).normal(size=q.shape))
        kw = dict(mask=mask, is_causal=causal, scale=0.3)

        def loss(fn):
            return lambda q, k, v: jnp.sum(fn(q, k, v) * c)

        ref = lambda q, k, v: ops.scaled_dot_product_attention(q, k, v, **kw)  # noqa: E731
        fast = lambda q, k, v: A._head_major(q, k, v, **kw)  # noqa: E731
        np.testing.assert_allclose(jax.jit(fast)(q, k, v), jax.jit(ref)(q, k, v), atol=1e-12)
        for got, want in zip(jax.jit(jax.grad(loss(fast), argnums=(0, 1, 2)))(q, k, v),
                             jax.jit(jax.grad(loss(ref), argnums=(0, 1, 2)))(q, k, v)):
            np.testing.assert_allclose(got, want, atol=1e-12)


def test_an_empty_row_is_zero_and_padded_values_never_reach_the_output():
    q, k, v = (x.astype(jnp.float32) for x in _inputs(3, 6, 6, 2, 4, seed=2))
    mask = _masks(3, 6, 6, 2)["key padding"]
    v = v.at[1, 1:].set(jnp.nan)  # row 1 sees key 0 only: its padded values are NaN
    out = A._head_major(q, k, v, mask=mask, is_causal=False, scale=0.5)
    assert np.isfinite(np.asarray(out)).all()
    np.testing.assert_allclose(out, ops.scaled_dot_product_attention(q, k, v, mask=mask, scale=0.5), atol=2e-6)
    empty = A._head_major(q, k, v, mask=jnp.zeros((3, 1, 6, 6), bool), is_causal=False, scale=0.5)
    assert float(jnp.abs(empty).max()) == 0.0


def test_dropout_draws_the_reference_mask_from_the_same_key():
    q, k, v = (x.astype(jnp.float32) for x in _inputs(2, 8, 8, 3, 4, seed=3))
    mask = _masks(2, 8, 8, 3)["key padding"][:2]
    key = jax.random.key(4)
    want = ops.scaled_dot_product_attention(q, k, v, mask=mask, dropout_rate=0.3, dropout_key=key)
    got = A._head_major(q, k, v, mask=mask, is_causal=False, scale=0.5, dropout_rate=0.3, dropout_key=key)
    np.testing.assert_allclose(got, want, atol=2e-6)
    assert not np.allclose(want, ops.scaled_dot_product_attention(q, k, v, mask=mask))  # dropout did act


def test_auto_takes_the_head_major_path_on_cpu_for_a_padding_mask(monkeypatch):
    q, k, v = (x.astype(jnp.float32) for x in _inputs(2, 8, 8, 2, 4, seed=5))
    mask = _masks(2, 8, 8, 2)["key padding"][:2]
    traced = []
    original = A._head_major
    monkeypatch.setattr(A, "_head_major", lambda *a, **kw: traced.append(kw) or original(*a, **kw))
    out = jax.jit(lambda q, k, v: A.attention(q, k, v, mask=mask))(q, k, v)
    np.testing.assert_allclose(out, ops.scaled_dot_product_attention(q, k, v, mask=mask), atol=2e-6)
    if jax.default_backend() == "cpu":
        assert len(traced) == 1
    before = len(traced)
    A.attention(q, k, v, mask=mask, implementation="reference")
    assert len(traced) == before  # the reference never takes it
