import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from nlp_jax import ops


def np_log_softmax(z):
    z = np.asarray(z, np.float64)
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def np_cross_entropy(logits, labels, weights, smoothing=0.0):
    """Plain loops, float64: the reference."""
    lp = np_log_softmax(logits)
    total, count = 0.0, 0.0
    for idx in np.ndindex(*labels.shape):
        if weights[idx]:
            v = lp.shape[-1]
            loss = -lp[idx][labels[idx]]
            loss = (1 - smoothing) * loss + smoothing * -lp[idx].sum() / v
            total += loss
            count += 1
    return total / max(count, 1)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 7)).astype(np.float32) * 3
    labels = rng.integers(0, 7, size=(3, 5))
    mask = rng.random((3, 5)) > 0.3
    return logits, labels, mask


class TestCrossEntropy(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_matches_float64_reference_with_mask_and_smoothing(self):
        rng = np.random.default_rng(1)
        logits = rng.normal(size=(4, 6, 9)).astype(np.float32) * 4
        labels = rng.integers(0, 9, size=(4, 6))
        mask = rng.random((4, 6)) > 0.4
        for eps in (0.0, 0.1):
            f = self.variant(lambda z, y, m: ops.cross_entropy(z, y, mask=m, label_smoothing=eps))
            np.testing.assert_allclose(f(logits, labels, mask), np_cross_entropy(logits, labels, mask, eps),
                                       rtol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_nll_of_log_softmax_equals_cross_entropy(self):
        rng = np.random.default_rng(2)
        logits = jnp.asarray(rng.normal(size=(8, 11)), jnp.float32)
        labels = jnp.asarray(rng.integers(0, 11, size=8))
        nll = self.variant(lambda z, y: ops.nll(jax.nn.log_softmax(z), y))(logits, labels)
        np.testing.assert_allclose(nll, ops.cross_entropy(logits, labels), rtol=1e-6)


def test_masked_mean_equals_loss_on_sliced_input(data):
    logits, labels, _ = data
    mask = np.zeros((3, 5), bool)
    mask[:, :3] = True
    np.testing.assert_allclose(ops.cross_entropy(logits, labels, mask=mask),
                               ops.cross_entropy(logits[:, :3], labels[:, :3]), rtol=1e-6)


def test_ignore_index_equals_mask(data):
    logits, labels, mask = data
    with_ignore = np.where(mask, labels, -100)
    np.testing.assert_allclose(ops.cross_entropy(logits, with_ignore, ignore_index=-100),
                               ops.cross_entropy(logits, labels, mask=mask), rtol=1e-6)
    per_token = ops.cross_entropy(logits, with_ignore, ignore_index=-100, reduction="none")
    assert np.all(np.asarray(per_token)[~mask] == 0)
    np.testing.assert_allclose(per_token.sum(), ops.cross_entropy(logits, labels, mask=mask, reduction="sum"),
                               rtol=1e-6)


def test_soft_targets_one_hot_equals_integer_labels(data):
    logits, labels, mask = data
    one_hot = jax.nn.one_hot(labels, 7)
    np.testing.assert_allclose(ops.cross_entropy(logits, one_hot, mask=mask),
                               ops.cross_entropy(logits, labels, mask=mask), rtol=1e-6)


def test_soft_targets_against_reference():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(5, 4))
    q = rng.dirichlet(np.ones(4), size=5)
    expected = -(q * np_log_softmax(logits)).sum(-1).mean()
    np.testing.assert_allclose(ops.cross_entropy(jnp.asarray(logits, jnp.float32), jnp.asarray(q, jnp.float32)),
                               expected, rtol=1e-6)


def test_label_smoothing_matches_smoothed_soft_targets(data):
    logits, labels, _ = data
    eps, v = 0.2, logits.shape[-1]
    smoothed = (1 - eps) * jax.nn.one_hot(labels, v) + eps / v
    np.testing.assert_allclose(ops.cross_entropy(logits, labels, label_smoothing=eps),
                               ops.cross_entropy(logits, smoothed), rtol=1e-6)


def test_extreme_logits_are_finite_and_exact():
    logits = jnp.array([[1e4, -1e4, 0.0]], jnp.float32)
    assert float(ops.cross_entropy(logits, jnp.array([0]))) == 0.0
    np.testing.assert_allclose(ops.cross_entropy(logits, jnp.array([1])), 2e4, rtol=1e-6)


def test_empty_mask_gives_zero_not_nan(data):
    logits, labels, _ = data
    assert float(ops.cross_entropy(logits, labels, mask=np.zeros((3, 5), bool))) == 0.0


def test_gradients():
    rng = np.random.default_rng(4)
    logits = jnp.asarray(rng.normal(size=(3, 5)))
    labels = jnp.asarray(rng.integers(0, 5, size=3))
    with jax.enable_x64(True):
        check_grads(jax.jit(lambda z: ops.cross_entropy(z.astype(jnp.float64), labels, label_smoothing=0.1)),
                    (logits.astype(jnp.float64),), order=2, modes=["rev"])
    g = jax.grad(lambda z: ops.cross_entropy(z, labels, reduction="sum"))(logits)
    np.testing.assert_allclose(g, jax.nn.softmax(logits) - jax.nn.one_hot(labels, 5), atol=1e-6)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="label_smoothing"):
        ops.cross_entropy(jnp.zeros((2, 3)), jnp.zeros(2, jnp.int32), label_smoothing=1.5)
    with pytest.raises(ValueError, match="reduction"):
        ops.cross_entropy(jnp.zeros((2, 3)), jnp.zeros(2, jnp.int32), reduction="avg")
    with pytest.raises(AssertionError):
        ops.nll(jnp.zeros((2, 3)), jnp.zeros((3,), jnp.int32))


def test_perplexity_known_answers():
    # Uniform model over V outcomes: every token costs log V nats, so PP = V.
    assert np.isclose(float(ops.perplexity(jnp.full((1000,), np.log(50.0)))), 50.0, rtol=1e-5)
    # The seed's form: PP = (prod 1/P(w_i))^(1/N).
    probs = np.array([0.5, 0.25, 0.125, 0.1])
    expected = np.prod(1 / probs) ** (1 / len(probs))
    np.testing.assert_allclose(ops.perplexity(jnp.asarray(-np.log(probs), jnp.float32)), expected, rtol=1e-6)
    # Masked tokens do not count; a long stream does not underflow.
    nll = jnp.asarray([1.0, 2.0, 100.0])
    np.testing.assert_allclose(ops.perplexity(nll, mask=jnp.array([1, 1, 0])), np.exp(1.5), rtol=1e-6)
    assert np.isfinite(float(ops.perplexity(jnp.full((10**6,), 3.0))))
