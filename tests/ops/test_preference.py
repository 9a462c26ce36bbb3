"""Sequence log-probs, Bradley-Terry and the DPO family against float64 references written out by hand."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nlp_jax import ops

B, T, V = 4, 7, 11


def _log_softmax64(z):
    z = np.asarray(z, np.float64)
    return z - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)) - z.max(-1, keepdims=True)


def _logsig(x):
    return -np.logaddexp(0.0, -np.asarray(x, np.float64))


def _case(seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(B, T, V)).astype(np.float32)
    tokens = rng.integers(0, V, (B, T)).astype(np.int32)
    start, end = np.array([1, 2, 3, 1]), np.array([7, 5, 4, 2])  # response = tokens[start:end], then padding
    mask = (np.arange(T)[None] >= start[:, None]) & (np.arange(T)[None] < end[:, None])
    return logits, tokens, mask


class TestSequenceLogprobs(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_sum_and_mean_equal_a_float64_loop(self):
        logits, tokens, mask = _case()
        # the mask check runs where the mask is concrete; under jit it is a tracer and the check is skipped
        total, mean = self.variant(ops.sequence_logprobs)(logits, tokens, mask)
        lp = _log_softmax64(logits)
        for b in range(B):
            ref = sum(lp[b, t - 1, tokens[b, t]] for t in range(T) if mask[b, t])
            assert abs(float(total[b]) - ref) < 1e-5
            assert abs(float(mean[b]) - ref / mask[b].sum()) < 1e-5

    def test_prompt_and_padding_do_not_count(self):
        logits, tokens, mask = _case()
        other = logits.copy()
        other[~np.roll(mask, -1, axis=1)] += 5.0  # change every logit that does not predict a response token
        np.testing.assert_allclose(ops.sequence_logprobs(other, tokens, mask)[0],
                                   ops.sequence_logprobs(logits, tokens, mask)[0], rtol=1e-6)

    def test_an_empty_response_or_one_at_position_0_is_an_error_naming_the_rows(self):
        logits, tokens, mask = _case()
        mask[2] = False
        with pytest.raises(ValueError, match=r"rows \[2\] have an empty response"):
            ops.sequence_logprobs(logits, tokens, mask)
        mask = _case()[2]
        mask[1, 0] = True
        with pytest.raises(ValueError, match=r"rows \[1\] mark position 0"):
            ops.sequence_logprobs(logits, tokens, mask)
        bad, good = jnp.asarray(mask), jnp.asarray(_case()[2])  # masks a jitted function closes over: concrete
        with pytest.raises(ValueError, match=r"rows \[1\] mark position 0"):
            jax.jit(lambda z: ops.sequence_logprobs(z, tokens, bad)[0])(logits)
        np.testing.assert_array_equal(jax.jit(lambda z: ops.sequence_logprobs(z, tokens, good)[0])(logits),
                                      ops.sequence_logprobs(logits, tokens, good)[0])


def test_bradley_terry_equals_its_formula_with_margin_and_centring():
    rng = np.random.default_rng(1)
    rw, rl, m = (rng.normal(size=8).astype(np.float32) for _ in range(3))
    loss, metrics = ops.bradley_terry_loss(rw, rl, margin=m, center_coef=0.01)
    ref = np.mean(-_logsig(rw.astype(np.float64) - rl - m)) + 0.01 * np.mean((rw.astype(np.float64) + rl) ** 2)
    assert abs(float(loss) - ref) < 1e-6
    assert float(metrics["accuracy"]) == np.mean(rw > rl)
    assert abs(float(metrics["margin"]) - np.mean(rw - rl)) < 1e-6


def test_bradley_terry_is_log2_on_ties_and_its_gradient_separates_the_pair():
    r = jnp.zeros(3)
    loss, metrics = ops.bradley_terry_loss(r, r)
    assert abs(float(loss) - np.log(2)) < 1e-7 and float(metrics["accuracy"]) == 0.5
    gw, gl = jax.grad(lambda a, b: ops.bradley_terry_loss(a, b)[0], argnums=(0, 1))(r, r)
    assert (gw < 0).all() and (gl > 0).all()  # descent raises r_w and lowers r_l


def _logps(seed=2):
    rng = np.random.default_rng(seed)
    return [(-rng.uniform(5, 30, 6)).astype(np.float32) for _ in range(4)], rng.integers(1, 12, (2, 6))


def _reference(kind, pw, pl, rw, rl, beta, eps, gamma, nw, nl):
    """The DPO family written out in float64, one formula per loss."""
    pw, pl, rw, rl = (np.asarray(a, np.float64) for a in (pw, pl, rw, rl))
    if kind in ("ipo", "sigmoid_norm", "simpo", "orpo"):
        pw, pl, rw, rl = pw / nw, pl / nl, rw / nw, rl / nl
    h = (pw - rw) - (pl - rl)
    if kind == "simpo":
        return np.mean(-_logsig(beta * (pw - pl) - gamma))
    if kind == "orpo":  # log odds = log(p / (1 - p)) of the per-token mean probability
        odds = lambda lp: np.log(np.exp(lp) / (1 - np.exp(lp)))  # noqa: E731
        return np.mean(-pw - beta * _logsig(odds(pw) - odds(pl)))
    return np.mean({
        "sigmoid": -_logsig(beta * h),
        "sigmoid_norm": -_logsig(beta * h),
        "cdpo": -(1 - eps) * _logsig(beta * h) - eps * _logsig(-beta * h),
        "robust": (-(1 - eps) * _logsig(beta * h) + eps * _logsig(-beta * h)) / (1 - 2 * eps),
        "ipo": (h - 1 / (2 * beta)) ** 2,
        "hinge": np.maximum(0, 1 - beta * h),
    }[kind])


def _loss(kind, pw, pl, rw, rl, beta, eps=0.0, gamma=0.0, nw=None, nl=None, q=None):
    """Our per-pair op for ``kind``, on the inputs as the DPO objective prepares them."""
    if kind in ops.preference.NORMALISED:
        pw, pl, rw, rl = pw / nw, pl / nl, rw / nw, rl / nl
    if kind in ops.preference.REFERENCE_FREE:
        rw, rl = jnp.zeros_like(rw), jnp.zeros_like(rl)
    if kind == "orpo":
        return ops.orpo_loss(jnp.asarray(pw, jnp.float32), jnp.asarray(pl, jnp.float32), beta)
    h = ops.dpo_margin(*(jnp.asarray(a, jnp.float32) for a in (pw, pl, rw, rl)))
    return {"sigmoid": lambda: ops.dpo_sigmoid_loss(h, beta) if q is None else ops.dpo_soft_loss(h, beta, q),
            "sigmoid_norm": lambda: ops.dpo_sigmoid_loss(h, beta), "cdpo": lambda: ops.cdpo_loss(h, beta, eps),
            "robust": lambda: ops.robust_dpo_loss(h, beta, eps), "ipo": lambda: ops.ipo_loss(h, beta),
            "hinge": lambda: ops.dpo_hinge_loss(h, beta), "simpo": lambda: ops.simpo_loss(h, beta, gamma)}[kind]()


@pytest.mark.parametrize("kind", ops.DPO_LOSSES)
def test_each_dpo_loss_equals_its_float64_formula(kind):
    (pw, pl, rw, rl), (nw, nl) = _logps()
    eps = 0.1 if kind in ("cdpo", "robust") else 0.0
    gamma = 0.5 if kind == "simpo" else 0.0
    loss = jax.jit(lambda *a: _loss(kind, *a, 0.3, eps, gamma, nw, nl).mean())(pw, pl, rw, rl)
    ref = _reference(kind, pw, pl, rw, rl, 0.3, eps, gamma, nw, nl)
    assert abs(float(loss) - ref) < 1e-5 * max(1.0, abs(ref)), (kind, float(loss), ref)


def test_dpo_with_the_policy_equal_to_the_reference_is_log2_and_its_gradient_prefers_the_chosen():
    (pw, pl, _, _), _ = _logps()
    h = ops.dpo_margin(pw, pl, pw, pl)
    assert abs(float(ops.dpo_sigmoid_loss(h, 0.1).mean()) - np.log(2)) < 1e-6
    assert float(ops.implicit_rewards(pw, pl, pw, pl, 0.1)["rewards/margins"]) == 0.0
    loss = lambda a, b: ops.dpo_sigmoid_loss(ops.dpo_margin(a, b, pw, pl), 0.1).mean()  # noqa: E731
    gw, gl = jax.grad(loss, argnums=(0, 1))(pw, pl)
    assert (gw < 0).all() and (gl > 0).all()  # descent raises log pi(y_w) and lowers log pi(y_l)


def test_soft_labels_are_the_cross_entropy_minimised_at_beta_h_equal_logit_q():
    (pw, pl, rw, rl), _ = _logps()
    q = np.linspace(0.3, 0.95, len(pw))
    loss = _loss("sigmoid", pw, pl, rw, rl, 0.3, q=jnp.asarray(q, jnp.float32)).mean()
    h = (pw - rw) - (pl - rl)
    ref = np.mean(-q * _logsig(0.3 * h) - (1 - q) * _logsig(-0.3 * h))  # float64
    assert abs(float(loss) - ref) < 1e-5 * max(1.0, abs(ref))
    hard = _loss("sigmoid", pw, pl, rw, rl, 0.3).mean()
    assert float(_loss("sigmoid", pw, pl, rw, rl, 0.3, q=jnp.ones(len(pw))).mean()) == pytest.approx(float(hard))
    beta = 0.5
    one_pair = lambda h: ops.dpo_soft_loss(jnp.array([h]), beta, jnp.array([0.8]))[0]  # noqa: E731
    h_star = float(np.log(0.8 / 0.2)) / beta  # the hard label's minimum is at h = infinity
    assert abs(float(jax.grad(one_pair)(h_star))) < 1e-6
    assert float(one_pair(h_star + 0.2)) > float(one_pair(h_star)) < float(one_pair(h_star - 0.2))


def test_ipo_is_minimised_at_h_equal_one_over_two_beta():
    beta = 0.25
    loss = lambda h: ops.ipo_loss(jnp.array([h]), beta)[0]  # noqa: E731
    assert float(loss(1 / (2 * beta))) == 0.0
    assert abs(float(jax.grad(loss)(1 / (2 * beta)))) < 1e-7
    assert float(loss(1 / (2 * beta) + 0.1)) > 0 and float(loss(1 / (2 * beta) - 0.1)) > 0


def test_dpo_metrics_are_the_implicit_rewards():
    (pw, pl, rw, rl), _ = _logps()
    m = ops.implicit_rewards(pw, pl, rw, rl, 0.5)
    chosen, rejected = 0.5 * (pw - rw), 0.5 * (pl - rl)
    np.testing.assert_allclose([m["rewards/chosen"], m["rewards/rejected"], m["rewards/margins"],
                                m["rewards/accuracies"]],
                               [chosen.mean(), rejected.mean(), (chosen - rejected).mean(),
                                (chosen > rejected).mean()], rtol=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(beta=0.0), "beta must be > 0"),
    (dict(beta=-1.0), "beta must be > 0"),
    (dict(beta=0.1, loss_type="dpo"), "loss_type must be one of"),
    (dict(beta=0.1, loss_type="cdpo", label_smoothing=0.5), r"label_smoothing must be in \[0, 0.5\)"),
    (dict(beta=0.1, label_smoothing=0.1), "label_smoothing applies to loss_type 'cdpo' and 'robust'"),
    (dict(beta=0.1, gamma=1.0), "gamma .* applies to loss_type 'simpo'"),
    (dict(beta=0.1, loss_type="cdpo", soft=True), r"preference \(soft labels\) applies to"),
])
def test_bad_dpo_arguments_are_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ops.check_dpo_arguments(**{"loss_type": "sigmoid", **kwargs})


def test_mismatched_pair_shapes_are_refused():
    (pw, pl, rw, rl), _ = _logps()
    with pytest.raises(AssertionError):
        ops.dpo_margin(pw, pl[:3], rw, rl)
    with pytest.raises(AssertionError):
        ops.dpo_soft_loss(pw, 0.1, pl[:3])
    with pytest.raises(AssertionError):
        ops.bradley_terry_loss(pw, pl[:3])


def test_orpo_is_the_chosen_nll_plus_the_log_odds_ratio():
    chosen, rejected = np.array([-0.5, -1.2, -0.01, -3.0], np.float32), np.array([-0.9, -0.4, -2.0, -3.0], np.float32)
    got = np.asarray(ops.orpo_loss(chosen, rejected, lam=0.1), np.float64)
    c, r = chosen.astype(np.float64), rejected.astype(np.float64)
    odds = lambda lp: np.log(np.exp(lp) / (1 - np.exp(lp)))  # noqa: E731  p / (1 - p), written out
    np.testing.assert_allclose(got, -c - 0.1 * _logsig(odds(c) - odds(r)), rtol=1e-5)
    assert got[3] == pytest.approx(3.0 + 0.1 * np.log(2), rel=1e-6)  # equal odds: log 2 per unit of lambda
    # the odds-ratio term pushes the chosen up and the rejected down; lambda 0 is plain SFT on the chosen
    gc, gr = jax.grad(lambda a, b: ops.orpo_loss(a, b, 0.1).sum(), argnums=(0, 1))(chosen, rejected)
    assert np.all(np.asarray(gc) < 0) and np.all(np.asarray(gr) > 0)
    np.testing.assert_allclose(ops.orpo_loss(chosen, rejected, 0.0), -chosen)


def test_kto_values_each_example_against_the_batch_kl_reference_point():
    policy, ref = np.array([-4.0, -6.0, -5.0, -2.0], np.float32), np.array([-5.0, -5.5, -5.0, -4.0], np.float32)
    z0 = ops.kto_reference_point(policy, ref)
    assert float(z0) == pytest.approx(0.625)  # the mean of 1, -0.5, 0, 2: above 0, kept
    assert float(ops.kto_reference_point(ref, policy)) == 0.0  # a negative estimate is clamped at 0
    desirable = np.array([True, True, False, False])
    r = (policy - ref).astype(np.float64)
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    want = np.where(desirable, 1.0 - 1.0 * sig(0.1 * (r - 0.625)), 1.5 - 1.5 * sig(0.1 * (0.625 - r)))
    got = ops.kto_loss(policy - ref, desirable, z0, beta=0.1, undesirable_weight=1.5)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # desirable examples are pulled up, undesirable ones down; the reference point carries no gradient
    g = jax.grad(lambda lp: ops.kto_loss(lp - ref, desirable, ops.kto_reference_point(lp, ref), 0.1).sum())(policy)
    assert np.all(np.asarray(g)[:2] < 0) and np.all(np.asarray(g)[2:] > 0)
    with pytest.raises(ValueError, match="beta must be > 0"):
        ops.kto_loss(policy - ref, desirable, z0, beta=0.0)
