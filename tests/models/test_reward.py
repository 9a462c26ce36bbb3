"""Reward model and policy-with-value-head on GPT-2 and BERT backbones: padding on either side scores as
no padding, the head reads the last real token, and the value head leaves the policy's logits and the
sampler untouched."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nlp_jax.models.bert import BertConfig, BertEncoder
from nlp_jax.models.gpt2 import GPT2, GPT2Config
from nlp_jax.models.reward import PolicyWithValue, RewardModel, last_token_index, positions_from_mask
from nlp_jax.models.sampler import sample

SEQ = np.array([5, 9, 3, 7, 11])


def _gpt2_rm(seed=0):
    return RewardModel(GPT2(GPT2Config.tiny(dropout=0.0), rngs=nnx.Rngs(seed)), rngs=nnx.Rngs(seed + 1))


@nnx.jit
def _score(model, tokens, mask):
    return model(tokens, attention_mask=mask)[0]


def _padded(pad_left: int, pad_right: int, pad_id: int = 0):
    tokens = np.concatenate([np.full(pad_left, pad_id), SEQ, np.full(pad_right, pad_id)])[None]
    mask = np.concatenate([np.zeros(pad_left, bool), np.ones(len(SEQ), bool), np.zeros(pad_right, bool)])[None]
    return jnp.asarray(tokens), jnp.asarray(mask)


def test_mask_helpers_on_left_and_right_padding():
    mask = jnp.array([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    np.testing.assert_array_equal(last_token_index(mask), [4, 2, 4])
    np.testing.assert_array_equal(positions_from_mask(mask)[0, 2:], [0, 1, 2])
    np.testing.assert_array_equal(positions_from_mask(mask)[1, :3], [0, 1, 2])


def test_gpt2_reward_ignores_padding_on_either_side():
    rm = _gpt2_rm()
    plain = float(_score(rm, *_padded(0, 0))[0])
    for left, right in ((3, 0), (0, 4), (2, 2)):
        assert abs(float(_score(rm, *_padded(left, right))[0]) - plain) < 1e-5, (left, right)


def test_the_reward_is_the_head_on_the_last_real_tokens_state():
    rm = _gpt2_rm()
    tokens, mask = _padded(0, 3)
    hidden = nnx.jit(lambda m, t: m(t)[1]["hidden"])(rm.backbone, tokens)
    want = hidden[0, len(SEQ) - 1] @ rm.head.kernel[...][:, 0] + rm.head.bias[...][0]
    assert abs(float(_score(rm, tokens, mask)[0]) - float(want)) < 1e-5


def test_bert_encoder_as_a_reward_backbone():
    rm = RewardModel(BertEncoder(BertConfig.tiny(dropout=0.0, attn_dropout=0.0), rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1))
    plain = float(_score(rm, *_padded(0, 0))[0])
    assert abs(float(_score(rm, *_padded(0, 5))[0]) - plain) < 1e-5
    grads = nnx.jit(nnx.grad(lambda m: _score(m, *_padded(0, 2)).sum()))(rm)
    assert float(jnp.abs(grads["head"]["kernel"][...]).sum()) > 0


def test_mean_pooling_scores_the_mean_of_the_real_tokens_states():
    rm = RewardModel(BertEncoder(BertConfig.tiny(dropout=0.0, attn_dropout=0.0), rngs=nnx.Rngs(0)), pooling="mean",
                     rngs=nnx.Rngs(1))
    tokens, mask = _padded(0, 3)
    hidden = np.asarray(nnx.jit(lambda m, t, a: m(t, attention_mask=a)[1]["hidden"])(rm.backbone, tokens, mask),
                        np.float64)
    kernel, bias = np.asarray(rm.head.kernel[...][:, 0], np.float64), float(rm.head.bias[...][0])
    want = hidden[0, :len(SEQ)].mean(0) @ kernel + bias
    assert abs(float(_score(rm, tokens, mask)[0]) - want) < 1e-5
    assert abs(float(_score(rm, *_padded(0, 0))[0]) - want) < 1e-5  # padding changes nothing
    with pytest.raises(ValueError, match="pooling must be"):
        RewardModel(rm.backbone, pooling="cls", rngs=nnx.Rngs(0))


def test_value_head_keeps_the_policys_logits_and_samples():
    policy = GPT2(GPT2Config.tiny(dropout=0.0), rngs=nnx.Rngs(0))
    pv = PolicyWithValue(policy, rngs=nnx.Rngs(1))
    tokens, mask = _padded(0, 0)
    logits, aux = nnx.jit(lambda m, t: m(t))(pv, tokens)
    np.testing.assert_allclose(logits, nnx.jit(lambda m, t: m(t)[0])(policy, tokens), atol=1e-6)
    assert aux["values"].shape == tokens.shape
    prompt = jnp.asarray(SEQ[None, :3])
    a = sample(pv, prompt, max_new_tokens=6, key=jax.random.key(3))
    b = sample(policy, prompt, max_new_tokens=6, key=jax.random.key(3))
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-5)


def test_chunked_response_logprobs_equal_the_logits_path():
    """A policy with ``loss_chunk`` gives DPO the same summed and mean response log-probs, and the same
    gradients, as the plain logits path (left padding, a prompt, a response)."""
    from nlp_jax.models.reward import response_logprobs

    tokens, mask = _padded(2, 1)
    response = mask & (jnp.arange(tokens.shape[1]) >= 4)[None]
    plain = GPT2(GPT2Config.tiny(dropout=0.0), rngs=nnx.Rngs(4))
    chunked = GPT2(GPT2Config.tiny(dropout=0.0, loss_chunk=3), rngs=nnx.Rngs(4))

    def value(m):
        total, mean, _ = response_logprobs(m, tokens, mask, response)
        return total.sum() + mean.sum(), (total, mean)

    grad = nnx.jit(nnx.value_and_grad(value, has_aux=True))
    (va, (ta, ma)), ga = grad(plain)
    (vb, (tb, mb)), gb = grad(chunked)
    np.testing.assert_allclose(ta, tb, rtol=1e-6)
    np.testing.assert_allclose(ma, mb, rtol=1e-6)
    for x, y in zip(jax.tree.leaves(nnx.state(ga)), jax.tree.leaves(nnx.state(gb))):
        np.testing.assert_allclose(x, y, atol=1e-6)
