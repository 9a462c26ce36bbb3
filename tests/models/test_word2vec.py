import dataclasses

import jax
import numpy as np
import pytest

from nlp_jax.data.word2vec import index_word_corpus
from nlp_jax.kernels import sgns as sgns_cpu
from nlp_jax.models.word2vec import Word2Vec, Word2VecConfig


def topic_corpus(n_docs=300, length=30, seed=0):
    """Documents drawn from one of two disjoint 8-word topics: words of a topic share all their contexts."""
    rng = np.random.default_rng(seed)
    topics = [[f"a{i}" for i in range(8)], [f"b{i}" for i in range(8)]]
    return [" ".join(rng.choice(topics[d % 2], length)) for d in range(n_docs)]


CONFIG = Word2VecConfig(vector_size=16, window=3, negative=4, sample=0.0, epochs=4, alpha=0.05, chunk_words=1024,
                        batch=64, threads=1)


def topic_margin(model: Word2Vec) -> float:
    wv = model.word_vectors()
    sims = wv.unit @ wv.unit.T
    topic = np.array([w[0] for w in wv.words])
    same = topic[:, None] == topic[None, :]
    np.fill_diagonal(same, False)
    across = topic[:, None] != topic[None, :]
    return float(sims[same].mean() - sims[across].mean())


@pytest.mark.parametrize("impl", ["reference", "cpu"])
@pytest.mark.parametrize("sg", [True, False])
def test_words_of_a_topic_end_up_closer_than_words_across_topics(impl, sg):
    if impl == "cpu" and (jax.default_backend() != "cpu" or not sgns_cpu.kernel_available()):
        pytest.skip("no C++ compiler: the CPU kernel cannot be built here")
    corpus = index_word_corpus(topic_corpus(), min_count=1)
    model = Word2Vec(dataclasses.replace(CONFIG, sg=sg, implementation=impl), corpus)
    before = topic_margin(model)
    stats = model.train(progress=False)
    assert stats["effective_words"] == CONFIG.epochs * len(corpus.ids)  # sample=0 keeps every word
    assert abs(before) < 0.3 and topic_margin(model) > 0.5


def test_one_thread_is_reproducible_and_seeds_differ():
    if jax.default_backend() != "cpu" or not sgns_cpu.kernel_available():
        pytest.skip("no C++ compiler: the CPU kernel cannot be built here")
    corpus = index_word_corpus(topic_corpus(n_docs=40), min_count=1)
    config = dataclasses.replace(CONFIG, implementation="cpu", sample=1e-2, epochs=1)
    runs = []
    for seed in (1, 1, 2):
        model = Word2Vec(dataclasses.replace(config, seed=seed), corpus)
        model.train(progress=False)
        runs.append(np.asarray(model.w_in))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.allclose(runs[0], runs[2])


def test_bad_settings_are_rejected():
    corpus = index_word_corpus(topic_corpus(n_docs=4), min_count=1)
    with pytest.raises(ValueError, match="implementation must be one of"):
        Word2Vec(dataclasses.replace(CONFIG, implementation="gpu-magic"), corpus).train(progress=False)
    with pytest.raises(ValueError, match="window must be >= 1"):
        Word2VecConfig(window=0)
    with pytest.raises(ValueError, match="min_alpha"):
        Word2VecConfig(alpha=1e-3, min_alpha=1e-2)
