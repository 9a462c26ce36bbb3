import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nlp_jax import ops


def test_greedy_and_top1_are_argmax():
    logits = jax.random.normal(jax.random.key(0), (16, 50))
    key = jax.random.key(1)
    np.testing.assert_array_equal(ops.sample_logits(key, logits, temperature=0.0), jnp.argmax(logits, -1))
    np.testing.assert_array_equal(ops.sample_logits(key, logits, top_k=1), jnp.argmax(logits, -1))


def test_top_k_keeps_exactly_the_k_largest():
    logits = jnp.array([[0.1, 3.0, -1.0, 2.0, 0.5]])
    kept = np.asarray(ops.top_k_filter(logits, 2)) > -1e29
    np.testing.assert_array_equal(kept, [[False, True, False, True, False]])


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = np.array([0.5, 0.3, 0.15, 0.05])
    logits = jnp.asarray(np.log(probs))[None]
    for p, expected in ((0.5, [1, 0, 0, 0]), (0.6, [1, 1, 0, 0]), (0.8, [1, 1, 0, 0]), (0.81, [1, 1, 1, 0]),
                        (1.0, [1, 1, 1, 1])):
        kept = np.asarray(ops.top_p_filter(logits, p)) > -1e29
        np.testing.assert_array_equal(kept[0], np.array(expected, bool), err_msg=f"p={p}")


def test_sampling_frequencies_follow_the_tempered_distribution():
    probs = np.array([0.6, 0.3, 0.1])
    logits = jnp.broadcast_to(jnp.log(jnp.asarray(probs)), (20000, 3))
    draws = np.asarray(ops.sample_logits(jax.random.key(2), logits, temperature=0.5))
    tempered = probs ** 2 / (probs ** 2).sum()
    np.testing.assert_allclose(np.bincount(draws, minlength=3) / len(draws), tempered, atol=0.015)


def test_invalid_arguments():
    logits = jnp.zeros((1, 4))
    with pytest.raises(ValueError, match="temperature"):
        ops.sample_logits(jax.random.key(0), logits, temperature=-1.0)
    with pytest.raises(ValueError, match="top_p"):
        ops.top_p_filter(logits, 0.0)
    with pytest.raises(ValueError, match="top_k"):
        ops.top_k_filter(logits, 0)


def implied_distribution(prob, alias):
    """P(i) of an alias table: i is drawn with 1/V and kept with prob[i], or reached as someone's alias."""
    v = len(prob)
    p = prob.astype(np.float64) / v
    np.add.at(p, alias, (1.0 - prob.astype(np.float64)) / v)
    return p


def test_alias_table_is_exact_and_draws_follow_it():
    from nlp_jax.ops.sampling import alias_table, draw_alias

    weights = np.array([5.0, 0.0, 1.0, 3.0, 0.5, 10.0, 2.0])
    prob, alias = alias_table(weights)
    np.testing.assert_allclose(implied_distribution(prob, alias), weights / weights.sum(), atol=1e-7)
    draws = np.asarray(draw_alias(jax.random.key(0), jnp.asarray(prob), jnp.asarray(alias), (200_000,)))
    freq = np.bincount(draws, minlength=len(weights)) / len(draws)
    np.testing.assert_allclose(freq, weights / weights.sum(), atol=4e-3)
    assert freq[1] == 0.0  # a zero-weight word is never drawn
    with pytest.raises(ValueError, match="non-negative"):
        alias_table(np.array([1.0, -1.0]))
