import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from nlp_jax import ops
from nlp_jax.data.corpus import ShuffledBatches
from nlp_jax.data.sst2 import UNK, encode
from nlp_jax.models.classifier import BiLSTMClassifier, BiLSTMConfig
from nlp_jax.objectives import bilstm_classification_loss


def model():
    return BiLSTMClassifier(BiLSTMConfig(vocab_size=30, embed=8, hidden=6, dropout=0.0), rngs=nnx.Rngs(0))


def test_padding_does_not_change_the_prediction():
    m = model()
    sent = jnp.array([[5, 9, 3, 7]])
    alone, _ = m(sent, attention_mask=ops.padding_mask(jnp.array([4]), sent.shape[1]))
    padded = jnp.array([[5, 9, 3, 7, 0, 0, 0, 0], [2, 2, 2, 2, 2, 2, 2, 2]])
    both, _ = m(padded, attention_mask=ops.padding_mask(jnp.array([4, 8]), padded.shape[1]))
    np.testing.assert_allclose(both[0], alone[0], atol=1e-6)


def test_both_directions_matter():
    m = model()
    a, _ = m(jnp.array([[5, 9, 3, 7]]))  # no mask: no padding
    b, _ = m(jnp.array([[7, 3, 9, 5]]))
    assert not np.allclose(a, b)


def test_learns_a_word_order_task():
    """Label = whether token 3 comes before token 4: needs order, not a bag of words."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(5, 30, (256, 6))
    first, second = rng.integers(0, 6, 256), rng.integers(0, 6, 256)
    second = np.where(second == first, (first + 1) % 6, second)
    tokens[np.arange(256), first], tokens[np.arange(256), second] = 3, 4
    batch = {"tokens": jnp.asarray(tokens), "lengths": jnp.full(256, 6),
             "labels": jnp.asarray((first < second).astype(np.int32))}
    m = model()
    opt = nnx.Optimizer(m, optax.adam(2e-2), wrt=nnx.Param)

    @nnx.jit
    def step(m, opt):
        (loss, aux), g = nnx.value_and_grad(lambda m: bilstm_classification_loss(m, batch, None), has_aux=True)(m)
        opt.update(m, g)
        return aux["accuracy"]

    for _ in range(200):
        acc = step(m, opt)
    assert float(acc) > 0.95


def test_encode_and_shuffled_batches():
    enc = encode(["a b c", "b zz", ""], np.array([1, 0, 1]), {"a": 0, "b": 1, "c": 2}, max_len=2)
    np.testing.assert_array_equal(enc.tokens, [[2, 3], [3, UNK], [0, 0]])
    np.testing.assert_array_equal(enc.lengths, [2, 2, 1])
    src = ShuffledBatches({"x": np.arange(10), "y": np.arange(10) * 2}, batch_size=4, seed=1)
    assert src.steps_per_epoch == 2
    seen = np.concatenate([src(0)["x"], src(1)["x"]])
    assert len(set(seen)) == 8 and np.array_equal(src(0)["y"], src(0)["x"] * 2)
    assert not np.array_equal(src(2)["x"], src(0)["x"])  # a new permutation each epoch
    with pytest.raises(ValueError, match="different lengths"):
        ShuffledBatches({"x": np.arange(3), "y": np.arange(4)}, 2)
