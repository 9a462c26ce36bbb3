"""The attention layers against the ops they wrap: self-attention (causal or not, padding mask, KV cache)
and cross-attention (cached encoder keys and values)."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nlp_jax import nn, ops


def layer(causal):
    return nn.SelfAttention(8, 2, causal=causal, bias=False, dropout=0.0, proj_std=0.02, implementation=None,
                            dtype=jnp.float32, rngs=nnx.Rngs(0))


def test_self_attention_equals_the_op_with_a_padding_mask():
    x = jax.random.normal(jax.random.key(0), (2, 5, 8))
    mask = ops.padding_mask(jnp.array([5, 3]), 5)
    for causal in (False, True):
        attn = layer(causal)
        y, _ = attn(x, mask=mask)
        wq, wk, wv = jnp.split(attn.c_attn.kernel[...], 3, axis=1)
        want = ops.self_attention(x, wq, wk, wv, mask[:, None, None, :], num_heads=2, is_causal=causal)
        np.testing.assert_allclose(y, want @ attn.c_proj.kernel[...], atol=1e-5)


def test_bidirectional_attention_sees_the_future_and_causal_does_not():
    x = jax.random.normal(jax.random.key(1), (1, 6, 8))
    x2 = x.at[:, 5].add(3.0)
    for causal, changes in ((True, False), (False, True)):
        y, _ = layer(causal)(x)
        y2, _ = layer(causal)(x2)
        assert (not np.allclose(y[:, :5], y2[:, :5])) == changes


def test_cached_self_attention_equals_the_full_pass():
    attn = layer(True)
    x = jax.random.normal(jax.random.key(2), (2, 7, 8))
    full, _ = attn(x)
    cache = {"k": jnp.zeros((2, 7, 2, 4)), "v": jnp.zeros((2, 7, 2, 4))}
    mask = jnp.ones((2, 7), bool)
    out = []
    for i in range(7):
        y, cache = attn(x[:, i:i + 1], mask=mask, cache=cache, index=i)
        out.append(y)
    np.testing.assert_allclose(jnp.concatenate(out, 1), full, atol=1e-5)


def test_cross_attention_equals_the_op_and_reuses_cached_keys():
    cross = nn.CrossAttention(8, 2, d_enc=6, bias=False, dropout=0.0, proj_std=0.02, implementation=None,
                              dtype=jnp.float32, rngs=nnx.Rngs(0))
    h_dec, h_enc = jax.random.normal(jax.random.key(3), (2, 4, 8)), jax.random.normal(jax.random.key(4), (2, 5, 6))
    enc_mask = ops.padding_mask(jnp.array([5, 2]), 5)
    y = cross(h_dec, h_enc, enc_mask=enc_mask)
    wk, wv = jnp.split(cross.kv.kernel[...], 2, axis=1)
    want = ops.cross_attention(h_dec, h_enc, cross.q.kernel[...], wk, wv, num_heads=2, enc_mask=enc_mask)
    np.testing.assert_allclose(y, want @ cross.out.kernel[...], atol=1e-5)
    np.testing.assert_allclose(cross(h_dec, kv=cross.encode(h_enc), enc_mask=enc_mask), y, atol=1e-6)
