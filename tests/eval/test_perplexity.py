import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nlp_jax.data.synthetic import MarkovSource
from nlp_jax.eval.perplexity import perplexity, token_nlls, windows


class TableLM(nnx.Module):
    """An order-1 'language model' with fixed log-probabilities: logits = table[previous token]."""

    def __init__(self, table):
        self.table = nnx.Variable(jnp.asarray(table, jnp.float32))

    def __call__(self, tokens):
        return self.table[...][tokens], {}


@pytest.mark.parametrize("n,context,stride", [(100, 10, 10), (100, 10, 3), (11, 10, 10), (12, 10, 1), (57, 8, 5)])
def test_windows_score_every_target_exactly_once(n, context, stride):
    counts = np.zeros(n, int)
    for start, end, first in windows(n, context, stride):
        assert end - start <= context and start < first <= end
        if start > 0:
            assert first - start - 1 >= context - stride  # each counted target sees enough context
        counts[first:end + 1] += 1
    assert counts[0] == 0 and np.all(counts[1:] == 1)


def test_uniform_model_has_perplexity_vocab_size():
    model = TableLM(np.zeros((23, 23)))
    tokens = np.random.default_rng(0).integers(0, 23, 500)
    for stride in (None, 4):
        result = perplexity(model, tokens, context=16, stride=stride, batch_size=8)
        assert result["tokens"] == 499
        np.testing.assert_allclose(result["ppl"], 23.0, rtol=1e-6)


def test_markov_source_perplexity_is_exp_entropy_rate():
    source = MarkovSource(vocab_size=8, order=1, seed=3)
    tokens = source.sample(60_000, seed=1)
    model = TableLM(np.log(source.transitions))
    nll = token_nlls(model, tokens, context=32, batch_size=256)
    np.testing.assert_allclose(nll, -source.log_probs(tokens), rtol=1e-5, atol=1e-6)  # exact per token
    np.testing.assert_allclose(np.exp(nll.mean()), np.exp(source.entropy_rate()), rtol=0.01)  # statistical
    sliding = token_nlls(model, tokens, context=32, stride=8, batch_size=256)
    np.testing.assert_allclose(sliding, nll, rtol=1e-6)  # an order-1 model needs no more context


def test_entropy_rate_of_a_deterministic_and_a_uniform_chain():
    src = MarkovSource(vocab_size=4, order=2, seed=0)
    src.transitions = np.full_like(src.transitions, 0.25)
    np.testing.assert_allclose(src.entropy_rate(), np.log(4))
    src.transitions = np.eye(4)[np.arange(16) % 4]  # next token = previous token: no uncertainty
    assert abs(src.entropy_rate()) < 1e-12


def test_bad_stride_is_rejected():
    with pytest.raises(ValueError, match="stride"):
        windows(100, 10, 11)
