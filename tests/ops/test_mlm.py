"""BERT's masked-LM objective: the 15% / 80-10-10 corruption and a loss on the chosen positions only."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nlp_jax import ops

V, MASK, PAD, CLS, SEP = 97, 4, 0, 2, 3


def _tokens(shape, seed=0):
    """Rows of [CLS] words [SEP] then padding; returns (tokens, attention_mask)."""
    rng = np.random.default_rng(seed)
    b, t = shape
    tokens = rng.integers(5, V, shape).astype(np.int32)
    lengths = rng.integers(3, t + 1, b)
    pos = np.arange(t)[None, :]
    tokens[:, 0] = CLS
    tokens[np.arange(b), lengths - 1] = SEP
    tokens = np.where(pos < lengths[:, None], tokens, PAD)
    return jnp.asarray(tokens), jnp.asarray(pos < lengths[:, None])


def test_proportions_are_15_percent_and_80_10_10_within_a_statistical_bound():
    tokens, mask = _tokens((64, 96))
    draw = jax.jit(lambda k: ops.mlm_mask(tokens, k, vocab_size=V, mask_id=MASK, special_ids=(PAD, CLS, SEP),
                                          attention_mask=mask))
    eligible = np.asarray(mask & (tokens != CLS) & (tokens != SEP))
    n_chosen = n_eligible = n_mask = n_changed = 0
    for i in range(30):
        inputs, chosen = (np.asarray(a) for a in draw(jax.random.key(i)))
        n_eligible += eligible.sum()
        n_chosen += chosen.sum()
        n_mask += (chosen & (inputs == MASK)).sum()
        n_changed += (chosen & (inputs != MASK) & (inputs != np.asarray(tokens))).sum()

    def within(k, n, p):  # 5 standard deviations of a binomial count
        assert abs(k - n * p) < 5 * np.sqrt(n * p * (1 - p)), (k, n, p)

    within(n_chosen, n_eligible, 0.15)
    within(n_mask, n_chosen, 0.8)
    within(n_changed, n_chosen, 0.1 * (1 - 1 / V))  # a random id equals the original with probability 1/V


def test_special_and_padding_positions_are_never_chosen_nor_changed():
    tokens, mask = _tokens((32, 40), seed=1)
    for i in range(10):
        inputs, chosen = ops.mlm_mask(tokens, jax.random.key(i), vocab_size=V, mask_id=MASK,
                                      special_ids=(PAD, CLS, SEP), attention_mask=mask, rate=0.9)
        special = np.isin(np.asarray(tokens), [PAD, CLS, SEP]) | ~np.asarray(mask)
        assert not np.asarray(chosen)[special].any()
        np.testing.assert_array_equal(np.asarray(inputs)[~np.asarray(chosen)], np.asarray(tokens)[~np.asarray(chosen)])
    same = [ops.mlm_mask(tokens, jax.random.key(7), vocab_size=V, mask_id=MASK)[1] for _ in range(2)]
    np.testing.assert_array_equal(same[0], same[1])  # seeded: one key, one choice


def test_loss_counts_only_chosen_positions_and_equals_a_float64_reference():
    tokens, mask = _tokens((4, 12), seed=2)
    _, chosen = ops.mlm_mask(tokens, jax.random.key(3), vocab_size=V, mask_id=MASK, special_ids=(PAD, CLS, SEP),
                             attention_mask=mask, rate=0.5)
    logits = jax.random.normal(jax.random.key(4), (4, 12, V)) * 3
    loss = ops.mlm_loss(logits, tokens, chosen)
    z = np.asarray(logits, np.float64)
    log_p = z - z.max(-1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_p, np.asarray(tokens)[..., None], -1)[..., 0]
    c = np.asarray(chosen)
    np.testing.assert_allclose(float(loss), nll[c].mean(), rtol=1e-6)
    changed = jnp.where(chosen[..., None], logits, logits + 100.0 * jax.random.normal(jax.random.key(5), logits.shape))
    assert float(ops.mlm_loss(changed, tokens, chosen)) == pytest.approx(float(loss), abs=0)
    grad = jax.grad(lambda z: ops.mlm_loss(z, tokens, chosen))(logits)
    assert not np.asarray(grad)[~c].any()


def test_bad_rates_are_refused():
    tokens, _ = _tokens((2, 8))
    for kw in (dict(rate=1.5), dict(mask_rate=0.8, random_rate=0.3), dict(random_rate=-0.1)):
        with pytest.raises(ValueError, match="rate"):
            ops.mlm_mask(tokens, jax.random.key(0), vocab_size=V, mask_id=MASK, **kw)


def test_mlm_positions_are_the_first_k_chosen_in_order():
    chosen = jnp.array([[False, True, False, True, True], [False, False, False, False, False]])
    pos, valid = ops.mlm_positions(chosen, 2)
    np.testing.assert_array_equal(pos[0], [1, 3])
    np.testing.assert_array_equal(valid, [[True, True], [False, False]])
    pos, valid = ops.mlm_positions(chosen, 9)  # k is capped at T
    assert pos.shape == (2, 5) and valid[0].sum() == 3 and sorted(pos[0].tolist()) == list(range(5))
