"""Dropout: the identity in evaluation, the rate and scaling, and masks that are uniform, deterministic in
the key and independent across keys, positions and axes (bounds of 5 standard errors)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nlp_jax import ops
from nlp_jax.ops.dropout import hash_bits, keep_mask


def _within(observed: float, p: float, n: int, sigmas: float = 5.0) -> bool:
    return abs(observed - p) <= sigmas * np.sqrt(p * (1 - p) / n)


def test_identity_in_evaluation_and_bad_rates_are_errors():
    x = jnp.arange(6.0).reshape(2, 3)
    assert ops.dropout(x, 0.5, None) is x and ops.dropout(x, 0.0, jax.random.key(0)) is x
    for rate in (1.0, -0.1):
        with pytest.raises(ValueError, match="dropout rate must be in"):
            ops.dropout(x, rate, jax.random.key(0))


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_the_fraction_dropped_is_the_rate_and_survivors_are_scaled(rate):
    x = jnp.ones((1000, 1000))
    y = np.asarray(jax.jit(ops.dropout, static_argnums=1)(x, rate, jax.random.key(3)))
    assert _within(float((y == 0).mean()), rate, y.size)
    np.testing.assert_allclose(y[y != 0], 1.0 / (1.0 - rate), rtol=1e-6)
    g = jax.grad(lambda x: jnp.sum(ops.dropout(x, rate, jax.random.key(3)) * 2.0))(x)
    np.testing.assert_allclose(np.asarray(g), np.where(y != 0, 2.0 / (1.0 - rate), 0.0), rtol=1e-6)


def test_each_bit_is_fair_and_the_top_byte_is_uniform():
    bits = np.asarray(hash_bits(jax.random.key(11), (512, 2048)))
    n = bits.size
    for b in range(32):
        assert _within(float(((bits >> b) & 1).mean()), 0.5, n), f"bit {b}"
    counts = np.bincount((bits >> 24).ravel(), minlength=256)
    chi2 = float(((counts - n / 256) ** 2 / (n / 256)).sum())
    assert chi2 < 255 + 5 * np.sqrt(2 * 255)  # 255 degrees of freedom: mean 255, sd 22.6


def test_masks_are_deterministic_in_the_key_and_independent_across_keys_and_positions():
    shape = (64, 128, 96)
    step_keys = [jax.random.fold_in(jax.random.key(0), s) for s in range(4)]  # the Trainer's dropout keys
    masks = [np.asarray(keep_mask(k, 0.5, shape)) for k in step_keys]
    np.testing.assert_array_equal(masks[0], np.asarray(keep_mask(step_keys[0], 0.5, shape)))
    n = masks[0].size
    for a in range(4):
        for b in range(a + 1, 4):
            assert _within(float((masks[a] & masks[b]).mean()), 0.25, n), (a, b)
    m, flat = masks[0], masks[0].reshape(-1, 96)
    for name, both in {"last axis": m[..., 1:] & m[..., :-1], "middle axis": m[:, 1:] & m[:, :-1],
                       "first axis": m[1:] & m[:-1], "rows of the flat index": flat[1:] & flat[:-1]}.items():
        assert _within(float(both.mean()), 0.25, both.size), name
    split = jax.random.split(jax.random.key(5))  # split keys, vmapped: independent rows of masks
    rows = np.asarray(jax.vmap(lambda k: keep_mask(k, 0.5, (200_000,)))(split))
    assert _within(float((rows[0] & rows[1]).mean()), 0.25, rows.shape[1])


def test_shapes_dtypes_and_raw_key_data():
    key = jax.random.key(2)
    assert hash_bits(key, ()).shape == () and hash_bits(key, (7,)).shape == (7,)
    x = jnp.ones((4, 3, 5, 6), jnp.bfloat16)
    y = ops.dropout(x, 0.25, key)
    assert y.dtype == jnp.bfloat16 and y.shape == x.shape
    np.testing.assert_array_equal(hash_bits(jax.random.key_data(key), (3, 9)), hash_bits(key, (3, 9)))
    assert not np.array_equal(hash_bits(key, (3, 9)), hash_bits(jax.random.key(3), (3, 9)))
