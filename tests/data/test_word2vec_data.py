import numpy as np
import pytest

from nlp_jax.data.word2vec import index_word_corpus, keep_probabilities, subsample
from nlp_jax.models.word2vec import padded_chunk

DOCS = ["b a c a", "d a b", "c e"]


def test_vocabulary_is_ordered_by_count_then_first_appearance_and_drops_rare_words():
    corpus = index_word_corpus(DOCS, min_count=2)
    assert corpus.words == ["a", "b", "c"]  # a: 3; b and c: 2 each, b seen first; d, e: dropped
    np.testing.assert_array_equal(corpus.counts, [3, 2, 2])
    np.testing.assert_array_equal(corpus.ids, [1, 0, 2, 0, 0, 1, 2])
    np.testing.assert_array_equal(corpus.doc_ids, [0, 0, 0, 0, 1, 1, 2])
    assert index_word_corpus(DOCS, min_count=1, max_size=2).words == ["a", "b"]
    with pytest.raises(ValueError, match="lower min_count"):
        index_word_corpus(DOCS, min_count=10)


def test_keep_probabilities_formula():
    counts = np.array([1000, 100, 10, 1])
    t = 1e-2
    threshold = t * counts.sum()
    expected = np.minimum((np.sqrt(counts / threshold) + 1) * threshold / counts, 1.0)
    np.testing.assert_allclose(keep_probabilities(counts, t), expected)
    assert keep_probabilities(counts, t)[0] < 0.5 and keep_probabilities(counts, t)[-1] == 1.0
    np.testing.assert_array_equal(keep_probabilities(counts, 0.0), 1.0)


@pytest.mark.peers
def test_keep_probabilities_equal_gensims():
    gensim = pytest.importorskip("gensim")
    sentences = [["the"] * 50 + ["cat", "sat"] * 5 + ["on", "mat"], ["the", "dog"] * 20]
    model = gensim.models.Word2Vec(vector_size=4, min_count=1, sample=1e-2, workers=1)
    model.build_vocab(sentences)
    corpus = index_word_corpus([" ".join(s) for s in sentences], min_count=1)
    ours = keep_probabilities(corpus.counts, 1e-2)
    theirs = np.array([model.wv.get_vecattr(w, "sample_int") / (2**32 - 1) for w in corpus.words])
    np.testing.assert_allclose(ours, theirs, atol=1e-9)
    theirs_counts = [model.wv.get_vecattr(w, "count") for w in model.wv.index_to_key]
    assert theirs_counts == corpus.counts.tolist()  # the same frequency order (ties may differ)


def test_subsample_keeps_rare_words_and_thins_frequent_ones():
    corpus = index_word_corpus(["a " * 10_000 + "b c d e f"], min_count=1)
    ids, docs = subsample(corpus, keep_probabilities(corpus.counts, 1e-3), np.random.default_rng(0))
    assert set(range(1, 6)) <= set(ids.tolist())
    assert 0 < (ids == 0).sum() < 2_000 and len(docs) == len(ids)


def test_padded_chunk_places_margins_and_marks_the_outside():
    ids, docs, reach = np.arange(10, 20), np.repeat([0, 1], 5), np.arange(1, 11)
    tokens, chunk_docs, chunk_reach = padded_chunk(ids, docs, reach, lo=0, size=4, window=2)
    np.testing.assert_array_equal(tokens, [0, 0, 10, 11, 12, 13, 14, 15])
    np.testing.assert_array_equal(chunk_docs, [-1, -1, 0, 0, 0, 0, 0, 1])
    tokens, chunk_docs, _ = padded_chunk(ids, docs, reach, lo=8, size=4, window=2)
    np.testing.assert_array_equal(tokens, [16, 17, 18, 19, 0, 0, 0, 0])
    np.testing.assert_array_equal(chunk_docs, [1, 1, 1, 1, -1, -1, -1, -1])
