import math

import jax
import numpy as np
import pytest
from flax import nnx

from nlp_jax.eval.rewards import best_of_n_kl, draw, evaluate, sequence_logprobs_of
from nlp_jax.models.gpt2 import GPT2, GPT2Config

PROMPTS = np.array([[0, 0, 5, 6], [0, 7, 8, 9], [3, 4, 5, 6]], np.int32)  # left-padded with 0
MASK = PROMPTS != 0


def _model(seed):
    return GPT2(GPT2Config.tiny(vocab_size=37, block_size=16), rngs=nnx.Rngs(seed))


def test_draw_is_prompt_major_and_its_logprobs_are_the_policys_own():
    policy = _model(0)
    drawn = draw(policy, PROMPTS, MASK, n=3, key=jax.random.key(1), max_new_tokens=6, eos_id=2, batch_size=4)
    assert drawn["tokens"].shape == (9, 10) and drawn["logprob"].shape == (9,)
    np.testing.assert_array_equal(drawn["tokens"][:, :4], np.repeat(PROMPTS, 3, axis=0))
    np.testing.assert_array_equal(drawn["mask"][:, :4], np.repeat(MASK, 3, axis=0))
    assert not drawn["response"][:, :4].any() and drawn["response"][:, 4].all()
    assert (drawn["response"] <= drawn["mask"]).all()
    # a forward pass over the drawn rows scores each response exactly as the sampler did
    np.testing.assert_allclose(sequence_logprobs_of(policy, drawn, batch_size=4), drawn["logprob"], atol=2e-5)
    assert (drawn["logprob"] < 0).all()


def test_kl_of_a_policy_against_itself_is_zero_and_against_another_is_positive():
    policy, other = _model(0), _model(0)
    other.ln_f.scale[...] = other.ln_f.scale[...] * 8  # the same model with much sharper logits
    judges = {"length": lambda tokens, mask: mask.sum(1).astype(float)}
    prompts, mask = np.tile(PROMPTS, (20, 1)), np.tile(MASK, (20, 1))
    same = evaluate(policy, policy, prompts, mask, judges, key=jax.random.key(0), max_new_tokens=5, eos_id=None,
                    batch_size=16)
    assert abs(same["kl"]) < 1e-5 and same["length"] == 5.0
    assert same["reward/length"] == pytest.approx(MASK.sum(1).mean() + 5)
    diff = evaluate(policy, other, prompts, mask, judges, key=jax.random.key(0), max_new_tokens=5, eos_id=None,
                    batch_size=16)
    assert diff["kl"] > 4 * diff["kl_sem"] > 0  # KL(pi || ref) >= 0, and here clearly above 0


def test_several_samples_per_prompt_are_judged_as_one_pool_with_standard_errors():
    policy, ref = _model(0), _model(1)
    judges = {"length": lambda tokens, mask: mask.sum(1).astype(np.float32),
              "last": lambda tokens, mask: (tokens[:, -1] % 5).astype(np.float32)}
    kw = dict(key=jax.random.key(3), max_new_tokens=5, eos_id=2, batch_size=4)
    row = evaluate(policy, ref, PROMPTS, MASK, judges, samples=3, **kw)
    drawn = draw(policy, PROMPTS, MASK, n=3, **kw)  # the same draw, judged by hand in float64
    k1 = drawn["logprob"].astype(np.float64) - sequence_logprobs_of(ref, drawn, 4)
    last = drawn["tokens"][:, -1] % 5
    assert row["reward/last"] == pytest.approx(last.mean(), rel=1e-12)
    assert row["reward_sem/last"] == pytest.approx(last.std(ddof=1) / 3.0, rel=1e-9)  # 9 samples: sqrt(9)
    assert row["reward/length"] == pytest.approx(drawn["mask"].sum(1).mean(), rel=1e-12)
    assert row["kl"] == pytest.approx(k1.mean(), rel=1e-5)
    assert row["kl_sem"] == pytest.approx(k1.std(ddof=1) / 3.0, rel=1e-4)
    assert row["length"] == pytest.approx(drawn["response"].sum(1).mean())
    one = evaluate(policy, ref, PROMPTS[:1], MASK[:1], judges, samples=1, **kw)
    assert one["reward_sem/last"] == 0.0 and one["kl_sem"] == 0.0  # one sample: no spread to report


def test_best_of_n_kl_is_the_analytic_formula():
    assert best_of_n_kl(1) == 0.0
    assert best_of_n_kl(4) == pytest.approx(math.log(4) - 0.75)
    assert best_of_n_kl(64) < math.log(64)
    with pytest.raises(ValueError, match="n must be >= 1"):
        best_of_n_kl(0)


def test_reward_scores_in_batches_equal_one_pass_and_pairwise_accuracy_counts_ties_half():
    from nlp_jax.eval.rewards import pairwise_accuracy, reward_scores
    from nlp_jax.models.reward import RewardModel

    rm = RewardModel(GPT2(GPT2Config.tiny(vocab_size=37, block_size=80), rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1))
    lengths = np.array([40, 5, 70, 12, 33, 8, 64, 20, 3])  # 9 right-padded rows: batches cut to 32 / 64 / 96
    mask = np.arange(72)[None] < lengths[:, None]
    tokens = np.where(mask, np.random.default_rng(0).integers(3, 37, mask.shape), 0).astype(np.int32)
    whole = np.asarray(nnx.jit(lambda m, t, a: m(t, attention_mask=a)[0])(rm, tokens, mask))
    np.testing.assert_allclose(reward_scores(rm, tokens, mask, batch_size=4), whole, atol=1e-5)
    assert pairwise_accuracy(np.array([2.0, 1.0, 0.5, 3.0]), np.array([1.0, 2.0, 0.5, 0.0])) == 0.625
    with pytest.raises(ValueError, match="equal-length non-empty"):
        pairwise_accuracy(np.zeros(3), np.zeros(2))
