"""The critic-free policy-gradient pieces (GRPO, Dr. GRPO, RLOO, REINFORCE++, DAPO's clip-higher, GSPO's
sequence ratio, the three loss aggregations) against float64 loops, and their invariants."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nlp_jax.ops import policy_gradient as pg

REWARDS = np.array([[1.0, 0.0, 0.0, 1.0], [0.2, 0.9, 0.4, 0.4], [3.0, 3.0, 3.0, 3.0]], np.float32)


def _case(seed=0, b=4, t=5):
    rng = np.random.default_rng(seed)
    mask = np.arange(t)[None] < rng.integers(1, t + 1, (b, 1))
    lp, old = (rng.normal(scale=0.3, size=(b, t)).astype(np.float32) - 2 for _ in range(2))
    return lp, old, rng.normal(size=b).astype(np.float32), mask


def test_group_advantages_are_each_groups_standard_scores_and_sum_to_zero():
    a = np.asarray(pg.group_advantages(REWARDS))
    for row, want in zip(REWARDS.astype(np.float64), a):
        mean, std = row.mean(), np.sqrt(((row - row.mean()) ** 2).sum() / (len(row) - 1))
        np.testing.assert_allclose(want, (row - mean) / (std + 1e-4), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.sum(1), 0.0, atol=1e-5)
    assert np.all(a[2] == 0.0)  # equal rewards teach nothing
    dr = np.asarray(pg.group_advantages(REWARDS, scale=False))  # Dr. GRPO: centred only
    np.testing.assert_allclose(dr, REWARDS - REWARDS.mean(1, keepdims=True), atol=1e-6)
    with pytest.raises(ValueError, match="k >= 2"):
        pg.group_advantages(REWARDS[:, :1])


def test_the_rloo_baseline_is_the_mean_of_the_other_samples_and_never_reads_the_sample_itself():
    a = np.asarray(pg.rloo_advantages(REWARDS), np.float64)
    r = REWARDS.astype(np.float64)
    for n in range(3):
        for i in range(4):
            others = np.delete(r[n], i)
            assert abs(a[n, i] - (r[n, i] - others.mean())) < 1e-6
    # the baseline of sample i does not move when r_i does: d(r_i - A_i) / d r_i = 0
    grad = jax.grad(lambda x: (x - pg.rloo_advantages(x))[0, 1])(jnp.asarray(REWARDS))
    assert float(grad[0, 1]) == 0.0 and float(grad[0, 0]) != 0.0
    np.testing.assert_allclose(a, r.shape[1] / (r.shape[1] - 1) * (r - r.mean(1, keepdims=True)), atol=1e-6)
    with pytest.raises(ValueError, match="k >= 2"):
        pg.rloo_advantages(REWARDS[:, :1])


def test_reinforce_plus_plus_normalises_over_the_whole_batch():
    rng = np.random.default_rng(1)
    adv = rng.normal(3.0, 2.0, size=(4, 6)).astype(np.float32)
    mask = np.arange(6)[None] < np.array([[6], [2], [4], [1]])
    out = np.asarray(pg.batch_normalised(adv, mask))
    kept = adv[mask].astype(np.float64)
    np.testing.assert_allclose(out[mask], (kept - kept.mean()) / (kept.std() + 1e-8), rtol=1e-5, atol=1e-5)
    assert np.all(out[~mask] == 0.0)
    assert abs(out[mask].mean()) < 1e-5 and abs(out[mask].std() - 1) < 1e-4


def test_the_clipped_loss_equals_the_plain_one_when_the_policy_is_the_sampling_policy():
    lp, _, adv, mask = _case()
    for ratio in (pg.token_ratio(lp, lp), pg.sequence_ratio(lp, lp, mask)):
        np.testing.assert_array_equal(ratio, 1.0)
        loss, clipped = pg.clipped_surrogate(ratio, adv, 0.2, 0.28)
        np.testing.assert_allclose(loss, np.broadcast_to(-adv[:, None], lp.shape), rtol=1e-6)
        assert not np.any(clipped)
    # the gradient at ratio 1 is the plain policy gradient -A d log pi
    g = jax.grad(lambda x: pg.aggregate(pg.clipped_surrogate(pg.token_ratio(x, lp), adv)[0], mask, "token_mean"))(lp)
    want = np.where(mask, -adv[:, None], 0.0) / mask.sum()
    np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-7)


def test_clip_higher_clips_each_side_at_its_own_range():
    ratio = np.array([[0.5, 0.79, 1.1, 1.25, 1.3, 2.0]], np.float32)
    for a, eps_lo, eps_hi in ((1.0, 0.2, 0.28), (-1.0, 0.2, 0.28)):
        loss, clipped = (np.asarray(x) for x in pg.clipped_surrogate(ratio, np.array([a], np.float32), eps_lo, eps_hi))
        r = ratio[0].astype(np.float64)
        want = np.maximum(-a * r, -a * np.clip(r, 1 - eps_lo, 1 + eps_hi))
        np.testing.assert_allclose(loss[0], want, rtol=1e-6)
        # A > 0: only a ratio above 1 + eps_high is clipped; A < 0: only one below 1 - eps_low
        assert clipped[0].tolist() == ([False, False, False, False, True, True] if a > 0 else
                                       [True, True, False, False, False, False])
    for lo, hi in ((-0.1, 0.2), (1.0, 0.2), (0.2, -0.1)):  # a floor 1 - clip_low <= 0 would never bind
        with pytest.raises(ValueError, match="clip ranges must be 0 <= clip_low < 1"):
            pg.clipped_surrogate(ratio, np.ones(1, np.float32), lo, hi)


def test_gspo_s_ratio_is_the_geometric_mean_of_the_token_ratios_over_real_tokens():
    lp, old, _, mask = _case(2)
    got = np.asarray(pg.sequence_ratio(lp, old, mask))
    for b in range(lp.shape[0]):
        n = mask[b].sum()
        want = np.prod(np.exp(lp[b, :n].astype(np.float64) - old[b, :n])) ** (1 / n)
        np.testing.assert_allclose(got[b], want, rtol=1e-5)


def test_the_three_aggregations_weigh_tokens_as_their_papers_say():
    losses = np.array([[1.0, 1.0, 1.0, 1.0], [4.0, 0.0, 0.0, 0.0]], np.float32)
    mask = np.array([[True] * 4, [True, False, False, False]])
    assert float(pg.aggregate(losses, mask, "sequence_mean")) == pytest.approx((1.0 + 4.0) / 2)
    assert float(pg.aggregate(losses, mask, "token_mean")) == pytest.approx((4 * 1.0 + 4.0) / 5)
    assert float(pg.aggregate(losses, mask, "constant", max_tokens=8)) == pytest.approx(8.0 / (2 * 8))
    with pytest.raises(ValueError, match="max_tokens >= 1"):
        pg.aggregate(losses, mask, "constant")
    with pytest.raises(ValueError, match="aggregation must be one of"):
        pg.aggregate(losses, mask, "sum")
