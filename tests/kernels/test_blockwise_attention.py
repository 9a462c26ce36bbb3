"""Blockwise attention (online softmax, FlashAttention's backward) equals the reference op in float64,
values and gradients, with padding and full masks, causal masks aligned to the end of the keys (T != S),
ragged blocks, a fully masked row (zeros, finite gradients) and NaN values at keys no query sees; its
compiled gradient holds no (T x S) array."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nlp_jax import kernels, ops


def _qkv(b=2, t=9, s=13, h=3, d=4, seed=0, dtype=np.float64):
    r = np.random.default_rng(seed)
    shapes = ((b, t, h, d), (b, s, h, d), (b, s, h, d))
    return tuple(jnp.asarray(r.normal(size=shape).astype(dtype)) for shape in shapes)


def _masks(b, t, s, seed=1):
    r = np.random.default_rng(seed)
    pad = ops.key_padding_mask(jnp.array([s, s - 5][:b]), s)  # (B, 1, 1, S)
    full = jnp.asarray(r.random((b, 1, t, s)) > 0.4)
    return {"none": None, "padding": pad, "full": full}


# every mask with and without causality on ragged blocks and T != S; then one block holding everything, and T == S
_CASES = [(m, c, (4, 5), 9, 13) for m in ("none", "padding", "full") for c in (False, True)] + [
    ("padding", True, (64, 64), 13, 13), ("full", True, (4, 5), 13, 13), ("none", False, (64, 64), 9, 13)]


@pytest.mark.parametrize("mask_kind,is_causal,blocks,t,s", _CASES)
def test_equals_the_reference_values_and_gradients_float64(mask_kind, is_causal, blocks, t, s):
    from nlp_jax.kernels.blockwise import blockwise_attention

    with jax.enable_x64(True):
        q, k, v = _qkv(t=t, s=s)
        mask = _masks(2, t, s)[mask_kind]
        cot = jnp.asarray(np.random.default_rng(2).normal(size=q.shape))
        scale = 0.7

        def ours(q, k, v):
            out = blockwise_attention(q, k, v, mask=mask, is_causal=is_causal, scale=scale, block_q=blocks[0],
                                      block_k=blocks[1])
            return jnp.sum(out * cot), out

        def ref(q, k, v):
            out = ops.scaled_dot_product_attention(q, k, v, mask=mask, is_causal=is_causal, scale=scale)
            return jnp.sum(out * cot), out

        (_, a), ga = jax.jit(jax.value_and_grad(ours, (0, 1, 2), has_aux=True))(q, k, v)
        (_, b), gb = jax.jit(jax.value_and_grad(ref, (0, 1, 2), has_aux=True))(q, k, v)
        np.testing.assert_allclose(a, b, atol=1e-12)
        for x, y in zip(ga, gb):
            np.testing.assert_allclose(x, y, atol=1e-11)


def test_fully_masked_rows_are_zero_and_hidden_nan_values_stay_out():
    with jax.enable_x64(True):
        q, k, v = _qkv(t=6, s=8)
        mask = jnp.ones((2, 1, 6, 8), bool).at[0, :, 2, :].set(False).at[1, :, :, 5:].set(False)
        v = v.at[1, 6].set(jnp.nan)  # a padding key's value
        f = lambda q, k, v: kernels.attention(q, k, v, mask=mask, implementation="blockwise")  # noqa: E731
        out = f(q, k, v)
        assert np.all(np.asarray(out[0, 2]) == 0) and np.isfinite(np.asarray(out)).all()
        np.testing.assert_allclose(out, ops.scaled_dot_product_attention(q, k, v, mask=mask), atol=1e-12)
        grads = jax.grad(lambda q, k, v: jnp.sum(f(q, k, v) ** 2), (0, 1))(q, k, v)
        assert all(np.isfinite(np.asarray(g)).all() for g in grads)


def test_float32_and_bfloat16_inputs_keep_float32_statistics():
    q, k, v = _qkv(t=32, s=32, dtype=np.float32)
    want = ops.scaled_dot_product_attention(q, k, v, is_causal=True)
    got = kernels.attention(q, k, v, is_causal=True, implementation="blockwise")
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, atol=2e-6)
    qb, kb, vb = (x.astype(jnp.bfloat16) for x in (q, k, v))
    got16 = kernels.attention(qb, kb, vb, is_causal=True, implementation="blockwise")
    assert got16.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(got16, np.float32), want, atol=5e-2)


def test_compiled_gradient_memory_is_linear_in_the_sequence():
    """At T = 4,096 the reference's gradient holds (H x T x T) scores; the blockwise one stays far below."""
    t, h = 4096, 2
    q = k = v = jnp.zeros((1, t, h, 16))
    scores_bytes = h * t * t * 4

    def temp(impl):
        f = jax.grad(lambda q, k, v: jnp.sum(kernels.attention(q, k, v, is_causal=True, implementation=impl)),
                     (0, 1, 2))
        return jax.jit(f).lower(q, k, v).compile().memory_analysis().temp_size_in_bytes

    assert temp("reference") >= scores_bytes
    assert temp("blockwise") < scores_bytes / 8


def test_dropout_and_bad_blocks_are_clear_errors():
    from nlp_jax.kernels.blockwise import blockwise_attention

    q, k, v = _qkv(dtype=np.float32)
    with pytest.raises(ValueError, match="dropout"):
        kernels.attention(q, k, v, implementation="blockwise", dropout_rate=0.1, dropout_key=jax.random.key(0))
    with pytest.raises(ValueError, match="block_q and block_k must be >= 1"):
        blockwise_attention(q, k, v, scale=1.0, block_q=0)
