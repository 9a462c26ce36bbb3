"""PPO's pieces against float64 loops: rewards with the KL penalty, k1/k2/k3, GAE, whitening, the clipped
surrogate and value losses, entropy and the adaptive KL controller."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nlp_jax import ops

B, T = 3, 6
LENGTHS = np.array([6, 4, 1])


def _case(seed=0):
    rng = np.random.default_rng(seed)
    mask = np.arange(T)[None] < LENGTHS[:, None]
    arrays = [rng.normal(size=(B, T)).astype(np.float32) for _ in range(4)]
    return mask, *arrays


def test_per_token_rewards_pay_the_kl_and_add_the_score_at_the_last_token():
    mask, lp, ref, _, _ = _case()
    scores = np.array([1.0, -2.0, 0.5], np.float32)
    r = np.asarray(ops.per_token_rewards(lp, ref, scores, mask, kl_coef=0.2))
    for b in range(B):
        for t in range(T):
            want = -0.2 * (lp[b, t] - ref[b, t]) if mask[b, t] else 0.0
            want += scores[b] if t == LENGTHS[b] - 1 else 0.0
            assert abs(r[b, t] - want) < 1e-6


def test_kl_estimators_are_their_formulas_and_k3_is_never_negative():
    rng = np.random.default_rng(3)
    lp, ref = (rng.normal(scale=3, size=1000).astype(np.float32) for _ in range(2))
    k = ops.kl_estimators(lp, ref)
    log_r = ref.astype(np.float64) - lp
    np.testing.assert_allclose(k["k1"], -log_r, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(k["k2"], 0.5 * log_r**2, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(k["k3"], np.expm1(log_r) - log_r, rtol=1e-4, atol=1e-5)
    assert float(k["k3"].min()) >= 0.0 and float(k["k1"].min()) < 0.0


def test_k1_and_k3_are_unbiased_for_the_true_kl():
    p, q = np.array([0.5, 0.3, 0.2]), np.array([0.2, 0.3, 0.5])  # pi and pi_ref
    draws = jax.random.choice(jax.random.key(0), 3, (400_000,), p=jnp.asarray(p))
    k = ops.kl_estimators(jnp.log(jnp.asarray(p, jnp.float32))[draws], jnp.log(jnp.asarray(q, jnp.float32))[draws])
    kl = float(np.sum(p * np.log(p / q)))
    for name in ("k1", "k3"):
        assert abs(float(k[name].mean()) - kl) < 0.01, (name, float(k[name].mean()), kl)


def _gae_loop(rewards, values, lengths, gamma, lam):
    adv = np.zeros((B, T))
    for b in range(B):
        last = 0.0
        for t in reversed(range(lengths[b])):
            next_value = values[b, t + 1] if t + 1 < lengths[b] else 0.0
            delta = rewards[b, t] + gamma * next_value - values[b, t]
            last = delta + gamma * lam * last
            adv[b, t] = last
    mask = np.arange(T)[None] < lengths[:, None]
    return adv, np.where(mask, adv + values, 0.0)


class TestGae(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_gae_equals_a_python_loop(self):
        mask, rewards, values, _, _ = _case(1)
        adv, ret = self.variant(ops.gae, static_argnames=("gamma", "lam"))(rewards, values, mask, gamma=0.9, lam=0.8)
        ref_adv, ref_ret = _gae_loop(rewards.astype(np.float64), values.astype(np.float64), LENGTHS, 0.9, 0.8)
        np.testing.assert_allclose(adv, ref_adv, atol=1e-5)
        np.testing.assert_allclose(ret, ref_ret, atol=1e-5)


def test_gae_with_lambda_1_and_gamma_1_gives_the_return_to_go_minus_the_value():
    mask, rewards, values, _, _ = _case(2)
    adv, ret = ops.gae(rewards, values, mask, gamma=1.0, lam=1.0)
    togo = np.where(mask, np.cumsum((rewards * mask)[:, ::-1], axis=1)[:, ::-1], 0.0)
    np.testing.assert_allclose(ret, togo, atol=1e-5)
    np.testing.assert_allclose(adv, np.where(mask, togo - values, 0.0), atol=1e-5)


def test_whiten_gives_zero_mean_unit_variance_over_the_mask_only():
    mask, x, _, _, _ = _case(4)
    w = np.asarray(ops.whiten(x * 10 + 3, mask))
    assert abs(w[mask].mean()) < 1e-5 and abs(w[mask].std() - 1) < 1e-3 and (w[~mask] == 0).all()
    kept = np.asarray(ops.whiten(x * 10 + 3, mask, shift_mean=False))
    assert abs(kept[mask].mean() - (x * 10 + 3)[mask].mean()) < 1e-4


def test_policy_ratio_is_exactly_1_before_an_update_and_the_loss_is_minus_the_mean_advantage():
    mask, lp, _, adv, _ = _case(5)
    loss, m = ops.policy_loss(lp, lp, adv, mask)
    assert float(m["val/ratio"]) == 1.0 and float(m["policy/clipfrac"]) == 0.0 and float(m["policy/approxkl"]) == 0.0
    assert abs(float(loss) + adv[mask].mean()) < 1e-6


def test_policy_loss_equals_the_clipped_surrogate_in_float64():
    mask, lp, old, adv, _ = _case(6)
    lp = old + 0.5 * lp  # ratios on both sides of the clip range
    loss, m = ops.policy_loss(lp, old, adv, mask, clip=0.2)
    ratio = np.exp(lp.astype(np.float64) - old)
    surrogate = np.maximum(-adv * ratio, -adv * np.clip(ratio, 0.8, 1.2))
    assert abs(float(loss) - surrogate[mask].mean()) < 1e-5
    assert abs(float(m["policy/clipfrac"]) - ((-adv * np.clip(ratio, 0.8, 1.2)) > (-adv * ratio))[mask].mean()) < 1e-6
    assert 0 < float(m["policy/clipfrac"]) < 1
    # the gradient vanishes where the clip binds
    g = np.asarray(jax.grad(lambda x: ops.policy_loss(x, old, adv, mask)[0])(lp))
    binds = ((-adv * np.clip(ratio, 0.8, 1.2)) > (-adv * ratio)) & mask
    assert (g[binds] == 0).all() and (g[mask & ~binds] != 0).all()


def test_value_loss_equals_the_clipped_formula():
    mask, v, old, ret, _ = _case(7)
    loss, m = ops.value_loss(v, old, ret, mask, clip=0.2)
    clipped = np.clip(v.astype(np.float64), old - 0.2, old + 0.2)
    want = 0.5 * np.maximum((v - ret) ** 2, (clipped - ret) ** 2)[mask].mean()
    assert abs(float(loss) - want) < 1e-5 and 0 < float(m["val/clipfrac"]) < 1


def test_entropy_is_log_v_for_uniform_logits_and_0_for_a_certain_one():
    np.testing.assert_allclose(ops.entropy(jnp.zeros((2, 5))), np.log(5) * np.ones(2), rtol=1e-6)
    assert float(ops.entropy(jnp.array([0.0, -1e9, -1e9]))) == 0.0


def test_adaptive_kl_controller_follows_ziegler_et_al():
    assert abs(float(ops.adaptive_kl_coef(jnp.float32(0.1), 12.0, 256, target=6.0, horizon=10_000))
               - 0.1 * (1 + 0.2 * 256 / 10_000)) < 1e-8  # error clipped at +0.2
    assert abs(float(ops.adaptive_kl_coef(jnp.float32(0.1), 5.4, 100, target=6.0, horizon=1_000))
               - 0.1 * (1 - 0.1 * 100 / 1_000)) < 1e-8
    with pytest.raises(ValueError, match="target and horizon must be > 0"):
        ops.adaptive_kl_coef(0.1, 1.0, 1, target=0.0, horizon=1.0)
