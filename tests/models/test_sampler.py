"""The model-agnostic sampler: ragged left-padded batches decode as each prompt alone; EOS; log-probs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nlp_jax.models.gpt2 import GPT2, GPT2Config
from nlp_jax.models.sampler import sample


@pytest.fixture(scope="module")
def model():
    return GPT2(GPT2Config.tiny(block_size=32), rngs=nnx.Rngs(0))


def left_pad(prompts, pad=0):
    t0 = max(len(p) for p in prompts)
    tokens = np.full((len(prompts), t0), pad, np.int32)
    mask = np.zeros((len(prompts), t0), bool)
    for i, p in enumerate(prompts):
        tokens[i, t0 - len(p):], mask[i, t0 - len(p):] = p, True
    return jnp.asarray(tokens), jnp.asarray(mask)


def test_a_ragged_batch_decodes_exactly_as_each_prompt_alone(model):
    prompts = [[5, 3, 9, 1, 7], [2], [8, 8, 4]]
    tokens, mask = left_pad(prompts)
    batch = sample(model, tokens, mask, max_new_tokens=8, key=jax.random.key(0), temperature=0.0)
    for i, p in enumerate(prompts):
        alone = sample(model, jnp.asarray([p]), max_new_tokens=8, key=jax.random.key(0), temperature=0.0)
        np.testing.assert_array_equal(batch.tokens[i, -8:], alone.tokens[0, -8:])
        np.testing.assert_allclose(batch.logprobs[i], alone.logprobs[0], atol=1e-5)


def test_log_probs_are_the_models_and_greedy_takes_the_argmax(model):
    out = sample(model, jnp.asarray([[1, 2, 3]]), max_new_tokens=5, key=jax.random.key(1), temperature=1.0)
    logits, _ = model(out.tokens[:, :-1])  # the full recompute, no cache
    log_p = jax.nn.log_softmax(logits[0, 2:], axis=-1)  # the predictions of the 5 new tokens
    np.testing.assert_allclose(out.logprobs[0], log_p[jnp.arange(5), out.tokens[0, 3:]], atol=1e-5)
    greedy = sample(model, jnp.asarray([[1, 2, 3]]), max_new_tokens=5, key=jax.random.key(1), temperature=0.0)
    logits, _ = model(greedy.tokens[:, :-1])
    np.testing.assert_array_equal(greedy.tokens[0, 3:], jnp.argmax(logits[0, 2:], -1))


def test_eos_stops_a_row_and_pads_after_it(model):
    first = sample(model, jnp.asarray([[1, 2, 3]]), max_new_tokens=6, key=jax.random.key(2), temperature=0.0)
    eos = int(first.tokens[0, 4])  # the second generated token becomes the end-of-sequence id
    out = sample(model, jnp.asarray([[1, 2, 3]]), max_new_tokens=6, key=jax.random.key(2), temperature=0.0,
                 eos_id=eos, pad_id=36)
    stop = int(np.argmax(np.asarray(out.tokens[0, 3:]) == eos))
    assert out.mask[0, :stop + 1].all() and not out.mask[0, stop + 1:].any()
    assert (np.asarray(out.tokens[0, 3 + stop + 1:]) == 36).all()
    assert (np.asarray(out.logprobs[0, stop + 1:]) == 0).all()


@pytest.mark.parametrize("kw, match", [
    (dict(max_new_tokens=-1), "max_new_tokens"), (dict(temperature=float("nan")), "temperature"),
    (dict(top_p=1.5), "top_p"), (dict(top_k=0), "top_k"), (dict(max_new_tokens=40), "maximum length"),
])
def test_bad_arguments_are_refused(model, kw, match):
    args = {"max_new_tokens": 2, "key": jax.random.key(0), **kw}
    with pytest.raises(ValueError, match=match):
        sample(model, jnp.asarray([[1, 2]]), **args)


def test_bad_prompts_are_refused(model):
    for prompt, match in ((jnp.asarray([1, 2]), "batch"), (jnp.zeros((1, 0), jnp.int32), "batch"),
                          (jnp.asarray([[1, 99]]), "ids must be in")):
        with pytest.raises(ValueError, match=match):
            sample(model, prompt, max_new_tokens=2, key=jax.random.key(0))
