import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from nlp_jax.models.gpt2 import GPT2, GPT2Config, generate
from nlp_jax.objectives import lm_loss


@pytest.fixture(scope="module")
def model():
    return GPT2(GPT2Config.tiny(), rngs=nnx.Rngs(0))


def tokens(b=2, t=10, seed=0, v=37):
    return jax.random.randint(jax.random.key(seed), (b, t), 0, v)


def test_forward_shapes_and_aux(model):
    logits, aux = model(tokens())
    chex.assert_shape(logits, (2, 10, 37))
    chex.assert_shape(aux["hidden"], (2, 10, 16))
    assert aux["cache"] is None


def test_gpt2_124m_parameter_count():
    abstract = nnx.eval_shape(lambda: GPT2(GPT2Config.gpt2_124m(), rngs=nnx.Rngs(0)))
    n = sum(p.size for p in jax.tree.leaves(nnx.state(abstract, nnx.Param)))
    assert n == 124_439_808  # the published GPT-2 small count (tied embeddings)


def test_causal_model_ignores_future_tokens(model):
    x = tokens()
    y = x.at[:, 6:].set((x[:, 6:] + 1) % 37)
    a, _ = model(x)
    b, _ = model(y)
    np.testing.assert_allclose(a[:, :6], b[:, :6], atol=1e-6)
    assert not np.allclose(a[:, 6:], b[:, 6:])


def test_output_layer_is_tied_to_the_embedding(model):
    _, aux = model(tokens())
    logits, _ = model(tokens())
    np.testing.assert_allclose(logits, aux["hidden"] @ model.wte.embedding[...].T, atol=1e-5)
    names = {"/".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    assert not any("lm_head" in n for n in names)


def test_cached_decoding_equals_uncached_logits(model):
    x = tokens(t=12)
    full, _ = model(x)
    forward = nnx.jit(lambda m, x, cache: m(x, cache=cache))
    logits, aux = forward(model, x[:, :5], model.init_cache(2, 12))  # prefill 5
    steps = [logits]
    for i in range(5, 12):  # then one token at a time
        logits, aux = forward(model, x[:, i:i + 1], aux["cache"])
        steps.append(logits)
    np.testing.assert_allclose(jnp.concatenate(steps, axis=1), full, atol=1e-5)


def test_greedy_generate_matches_naive_loop(model):
    # full recompute of the last (at most) 16 tokens, no cache; right-padded to 16 so one program serves every
    # length (causal: the logits at the last real token do not see the padding after it)
    forward = nnx.jit(lambda m, window, last: m(window)[0][:, last])

    def naive(seq, n):
        for _ in range(n):
            window = seq[:, -16:]
            t = window.shape[1]
            logits = forward(model, jnp.pad(window, ((0, 0), (0, 16 - t))), t - 1)
            seq = jnp.concatenate([seq, jnp.argmax(logits, -1)[:, None].astype(seq.dtype)], 1)
        return seq

    prompt = tokens(t=3)
    expected = naive(prompt, 20)
    cached = generate(model, prompt, 10, key=jax.random.key(0), temperature=0.0)  # 13 <= block 16: KV cache
    np.testing.assert_array_equal(cached, expected[:, :13])
    longer = generate(model, prompt, 20, key=jax.random.key(0), temperature=0.0)  # past the block: sliding
    np.testing.assert_array_equal(longer, expected)


def test_sampling_options_run_and_respect_vocab(model):
    out = generate(model, tokens(t=2), 8, key=jax.random.key(3), temperature=0.8, top_k=5, top_p=0.9)
    chex.assert_shape(out, (2, 10))
    assert out.min() >= 0 and out.max() < 37


def test_errors_name_the_problem(model):
    with pytest.raises(ValueError, match="block_size"):
        model(tokens(t=17))
    with pytest.raises(ValueError, match="divisible"):
        GPT2Config(n_embd=10, n_head=3)


def test_dropout_is_keyed_and_off_without_key():
    m = GPT2(GPT2Config.tiny(dropout=0.5), rngs=nnx.Rngs(0))
    x = tokens()
    a, _ = m(x)
    b, _ = m(x)
    np.testing.assert_array_equal(a, b)
    c, _ = m(x, key=jax.random.key(1))
    d, _ = m(x, key=jax.random.key(1))
    e, _ = m(x, key=jax.random.key(2))
    np.testing.assert_array_equal(c, d)
    assert not np.allclose(c, e)


def test_overfits_one_batch():
    m = GPT2(GPT2Config.tiny(), rngs=nnx.Rngs(1))
    opt = nnx.Optimizer(m, optax.adam(1e-2), wrt=nnx.Param)
    batch = {"inputs": tokens(t=8, seed=5), "targets": tokens(t=8, seed=6)}

    @nnx.jit
    def step(m, opt):
        loss, grads = nnx.value_and_grad(lambda m: lm_loss(m, batch, None)[0])(m)
        opt.update(m, grads)
        return loss

    first = float(step(m, opt))
    for _ in range(150):
        last = float(step(m, opt))
    assert first > 3.0 and last < 0.05


def test_bfloat16_compute_is_close_to_float32():
    cfg = GPT2Config.tiny()
    m32 = GPT2(cfg, rngs=nnx.Rngs(0))
    m16 = GPT2(dataclasses.replace(cfg, compute_dtype="bfloat16"), rngs=nnx.Rngs(0))
    a, _ = m32(tokens())
    b, _ = m16(tokens())
    assert b.dtype == jnp.float32
    np.testing.assert_allclose(a, b, atol=0.05)


def test_a_padded_vocabulary_rounds_the_embedding_but_not_the_logits():
    cfg = GPT2Config.tiny(vocab_multiple=64)  # 37 -> 64 embedding rows
    m = GPT2(cfg, rngs=nnx.Rngs(0))
    assert cfg.padded_vocab == 64 and m.wte.embedding[...].shape == (64, cfg.n_embd)
    logits, _ = m(tokens())
    assert logits.shape[-1] == 37
    np.testing.assert_allclose(logits, m.wte.attend(m(tokens())[1]["hidden"])[..., :37], atol=1e-6)
    loss, aux = lm_loss(m, {"inputs": tokens(), "targets": tokens()}, None)
    assert np.isfinite(float(loss)) and int(aux["tokens"]) == tokens().size


def test_chunked_loss_equals_the_plain_loss_and_gradients():
    """``loss_chunk`` (the output layer and softmax a few tokens at a time) changes no value: the loss and
    every parameter's gradient, with a padded vocabulary and a mask, as the plain logits path."""
    cfg = GPT2Config.tiny(vocab_multiple=64)
    plain = GPT2(cfg, rngs=nnx.Rngs(3))
    chunked = GPT2(dataclasses.replace(cfg, loss_chunk=7), rngs=nnx.Rngs(3))  # 20 tokens: a ragged last chunk
    batch = {"inputs": tokens(), "targets": tokens(seed=1), "mask": tokens(seed=2) % 3 > 0}
    grad = nnx.jit(nnx.value_and_grad(lambda m: lm_loss(m, batch, None)[0]))
    (a, ga), (b, gb) = grad(plain), grad(chunked)
    assert float(a) == pytest.approx(float(b), rel=1e-6)
    for x, y in zip(jax.tree.leaves(nnx.state(ga)), jax.tree.leaves(nnx.state(gb))):
        np.testing.assert_allclose(x, y, atol=1e-6)
    assert chunked(tokens(), logits=False)[0] is None
    with pytest.raises(ValueError, match="loss_chunk must be >= 0"):
        GPT2Config.tiny(loss_chunk=-1)
