"""The chunked output-layer cross-entropy equals the plain loss on the full logits (float64, gradients
included), in every reduction, with masks, ignore_index, label smoothing and a ragged last chunk; it never
builds the (tokens x vocabulary) logits (the compiled program's temporary memory is a chunk's worth)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nlp_jax import kernels, ops


def _data(n_batch=3, t=7, d=5, v=11, seed=0, dtype=np.float64):
    r = np.random.default_rng(seed)
    h = r.normal(size=(n_batch, t, d)).astype(dtype)
    w = r.normal(size=(v, d)).astype(dtype)
    targets = r.integers(0, v, (n_batch, t))
    mask = r.random((n_batch, t)) > 0.3
    return h, w, targets, mask


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("chunk", [1, 4, 21, 100])  # one token, ragged, exact, larger than all 21 tokens
def test_equals_plain_loss_and_gradients_float64(reduction, eps, chunk):
    with jax.enable_x64(True):
        h, w, t, m = (jnp.asarray(x) for x in _data())
        cot = jnp.asarray(np.random.default_rng(1).normal(size=t.shape)) if reduction == "none" else 1.0

        def chunked(h, w):
            out = kernels.linear_cross_entropy(h, w, t, mask=m, label_smoothing=eps, reduction=reduction, chunk=chunk)
            return jnp.sum(out * cot)

        def plain(h, w):
            out = ops.cross_entropy(h @ w.T, t, mask=m, label_smoothing=eps, reduction=reduction)
            return jnp.sum(out * cot)

        a, (dh_a, dw_a) = jax.jit(jax.value_and_grad(chunked, (0, 1)))(h, w)
        b, (dh_b, dw_b) = jax.jit(jax.value_and_grad(plain, (0, 1)))(h, w)
        np.testing.assert_allclose(a, b, rtol=1e-12)
        np.testing.assert_allclose(dh_a, dh_b, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(dw_a, dw_b, rtol=1e-10, atol=1e-13)


def test_ignore_index_and_bad_ids_as_the_plain_path():
    with jax.enable_x64(True):
        h, w, t, _ = _data()
        t = t.copy()
        t[0, :2] = -100
        got = kernels.linear_cross_entropy(jnp.asarray(h), jnp.asarray(w), jnp.asarray(t), ignore_index=-100, chunk=4)
        want = ops.cross_entropy(jnp.asarray(h @ w.T), jnp.asarray(t), ignore_index=-100)
        np.testing.assert_allclose(got, want, rtol=1e-12)
        t[0, :2], t[1, 3] = 0, 11  # 11 is outside [0, V): NaN, never another row's value
        per = kernels.linear_cross_entropy(jnp.asarray(h), jnp.asarray(w), jnp.asarray(t), reduction="none", chunk=4)
        assert np.isnan(per[1, 3]) and np.isfinite(np.delete(np.asarray(per).reshape(-1), 1 * 7 + 3)).all()


def test_float32_and_bfloat16_hidden_track_float64():
    h, w, t, m = _data(n_batch=4, t=16, d=32, v=301, seed=2)
    with jax.enable_x64(True):
        want = float(ops.cross_entropy(jnp.asarray(h @ w.T), jnp.asarray(t), mask=jnp.asarray(m)))
    got32 = kernels.linear_cross_entropy(jnp.asarray(h, jnp.float32), jnp.asarray(w, jnp.float32), jnp.asarray(t),
                                         mask=jnp.asarray(m), chunk=8)
    assert float(got32) == pytest.approx(want, rel=1e-5)
    hb, wb = jnp.asarray(h, jnp.bfloat16), jnp.asarray(w, jnp.bfloat16)
    gotb, grads = jax.value_and_grad(lambda h, w: kernels.linear_cross_entropy(h, w, jnp.asarray(t), chunk=8),
                                     (0, 1))(hb, wb)
    assert gotb.dtype == jnp.float32 and grads[0].dtype == grads[1].dtype == jnp.bfloat16
    assert float(gotb) == pytest.approx(float(ops.cross_entropy(jnp.asarray(h @ w.T, jnp.float32),
                                                                jnp.asarray(t))), rel=2e-2)


def test_compiled_memory_is_a_chunk_not_the_logits():
    n, d, v, chunk = 2048, 64, 8192, 128
    h, w = jnp.zeros((n, d)), jnp.zeros((v, d))
    t = jnp.zeros((n,), jnp.int32)
    logits_bytes = n * v * 4

    def temp(f):
        grad = jax.jit(jax.grad(f, (0, 1))).lower(h, w).compile()
        return grad.memory_analysis().temp_size_in_bytes

    chunked = temp(lambda h, w: kernels.linear_cross_entropy(h, w, t, chunk=chunk))
    plain = temp(lambda h, w: ops.cross_entropy(h @ w.T, t))
    assert plain >= logits_bytes  # the plain path holds the logits
    assert chunked < logits_bytes / 4, (chunked, plain)


def test_bad_arguments_name_themselves():
    h, w, t, _ = _data()
    with pytest.raises(ValueError, match="share D"):
        kernels.linear_cross_entropy(jnp.asarray(h), jnp.asarray(w[:, :3]), jnp.asarray(t))
    with pytest.raises(ValueError, match="targets must be integer ids"):
        kernels.linear_cross_entropy(jnp.asarray(h), jnp.asarray(w), jnp.asarray(t[:, :3]))
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        kernels.linear_cross_entropy(jnp.asarray(h), jnp.asarray(w), jnp.asarray(t), chunk=0)
    with pytest.raises(ValueError, match="label_smoothing"):
        kernels.linear_cross_entropy(jnp.asarray(h), jnp.asarray(w), jnp.asarray(t), label_smoothing=1.5)


def test_the_default_chunk_keeps_2_to_the_24_logits_and_gives_the_same_loss():
    from nlp_jax.kernels.chunked_xent import default_chunk

    assert default_chunk(10, 50257) == 10  # fewer tokens than the budget: one chunk
    assert default_chunk(10**6, 50257) == (1 << 24) // 50257 == 333
    assert default_chunk(5, 1 << 25) == 1  # a vocabulary over the budget still takes a token at a time
    r = np.random.default_rng(3)
    h, w = r.normal(size=(700, 8)).astype(np.float32), r.normal(size=(30, 8)).astype(np.float32)
    t = jnp.asarray(r.integers(0, 30, 700))
    default = kernels.linear_cross_entropy(jnp.asarray(h), jnp.asarray(w), t)
    np.testing.assert_allclose(default, ops.cross_entropy(jnp.asarray(h @ w.T), t), rtol=1e-5)
