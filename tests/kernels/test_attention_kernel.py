"""The C++ causal-attention kernel against float64 (the reference path in float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nlp_jax import ops
from nlp_jax.kernels import sdpa as A


def qkv(shape, seed):
    rng = np.random.default_rng(seed)
    return tuple(jnp.asarray(rng.normal(size=shape), jnp.float32) for _ in range(3))


def reference64(q, k, v, c):
    """Causal attention and the gradients of sum(attention * c), in float64."""
    def loss(q, k, v):
        out = ops.scaled_dot_product_attention(q, k, v, is_causal=True)
        return jnp.sum(out * c), out

    with jax.enable_x64(True):
        args = [jnp.asarray(np.asarray(x), jnp.float64) for x in (q, k, v)]
        c = jnp.asarray(np.asarray(c), jnp.float64)
        grads, out = jax.grad(loss, argnums=(0, 1, 2), has_aux=True)(*args)
        return np.asarray(out), [np.asarray(g) for g in grads]


@pytest.fixture
def impl():
    if not A.kernel_available():
        pytest.skip("no C++ compiler: the kernel is unavailable")
    return A.causal_attention_kernel


# lengths on both sides of the 16-lane vectors and of the 64/128-row blocks; head dims not multiples of 16
@pytest.mark.parametrize("t, d", [(1, 8), (7, 32), (64, 32), (130, 40), (257, 16)])
def test_values_and_gradients_equal_float64(impl, t, d):
    q, k, v = qkv((2, t, 3, d), seed=t)
    c = jax.random.normal(jax.random.key(t), q.shape)
    out = jax.jit(impl)(q, k, v)
    grads = jax.jit(jax.grad(lambda q, k, v: jnp.sum(impl(q, k, v) * c), argnums=(0, 1, 2)))(q, k, v)
    want_out, want_grads = reference64(q, k, v, c)
    np.testing.assert_allclose(out, want_out, atol=2e-6, rtol=1e-5)
    for got, want in zip(grads, want_grads):
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_the_future_does_not_leak(impl):
    q, k, v = qkv((1, 100, 2, 16), seed=1)
    k2, v2 = k.at[:, 60:].set(9.0), v.at[:, 60:].set(-9.0)
    np.testing.assert_array_equal(impl(q, k, v)[:, :60], impl(q, k2, v2)[:, :60])


def test_large_scores_stay_finite(impl):
    q, k, v = qkv((1, 33, 1, 16), seed=2)
    out = impl(q * 30, k * 30, v)  # scores of several thousand: the softmax must subtract its row maximum
    want, _ = reference64(q * 30, k * 30, v, jnp.ones_like(q))
    assert np.isfinite(np.asarray(out)).all()
    np.testing.assert_allclose(out, want, atol=2e-4)  # float32 scores near 1e3 carry errors near 1e-4


def test_kernel_under_vmap_and_extra_batch_dimensions(impl):
    q, k, v = qkv((3, 2, 20, 2, 8), seed=3)
    batched = jax.vmap(impl)(q, k, v)
    for i in range(3):
        np.testing.assert_allclose(batched[i], ops.scaled_dot_product_attention(q[i], k[i], v[i], is_causal=True),
                                   atol=2e-6)


def test_dispatch_takes_the_kernel_for_float32_plain_causal_only(impl, vector_kernels):
    q, k, v = qkv((1, 5, 1, 4), seed=4)
    lowered = lambda f, *a: jax.jit(f).lower(*a).as_text()  # noqa: E731
    assert "nlp_jax_causal_attention_fwd" in lowered(lambda q, k, v: A.attention(q, k, v, is_causal=True), q, k, v)
    half = tuple(x.astype(jnp.bfloat16) for x in (q, k, v))
    assert "nlp_jax_causal" not in lowered(lambda q, k, v: A.attention(q, k, v, is_causal=True), *half)
    mask = jnp.ones((5, 5), bool)
    assert "nlp_jax_causal" not in lowered(lambda q, k, v: A.attention(q, k, v, mask=mask, is_causal=True), q, k, v)
    with pytest.raises(ValueError, match="causal self-attention"):
        A.attention(q, k, v, mask=mask, is_causal=True, implementation="cpu")
