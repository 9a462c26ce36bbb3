import numpy as np
import pytest

from nlp_jax.data.root import resolve
from nlp_jax.data.text import Vocabulary, index_corpus
from nlp_jax.models.tfidf import Tfidf, TfidfConfig


def test_index_corpus_matches_per_document_tokenisation():
    docs = ["The cat sat.", "", "a cat, THE hat!", "x y zz"]
    doc_ids, ids, words = index_corpus(docs)
    tokens = [words[i] for i in ids]
    assert tokens == ["the", "cat", "sat", "cat", "the", "hat", "zz"]  # 1-char words dropped, lowercased
    np.testing.assert_array_equal(doc_ids, [0, 0, 0, 2, 2, 2, 3])
    doc_ids2, ids2, _ = index_corpus(["hat dog the"], index={"the": 0, "hat": 1})
    np.testing.assert_array_equal(ids2, [1, -1, 0])


def test_index_corpus_reads_a_generator_in_chunks_as_it_reads_a_list(monkeypatch):
    import nlp_jax.data.text as text

    docs = ["The cat sat.", "", "a cat, THE hat!", "x y zz", "the zz cat", "hat"] * 3
    whole = index_corpus(docs)
    monkeypatch.setattr(text, "CHUNK", 4)  # chunk boundaries inside the corpus: ids, documents, first-seen order
    chunked = index_corpus(doc for doc in docs)
    for a, b in zip(whole[:2], chunked[:2]):
        np.testing.assert_array_equal(a, b)
    assert chunked[2] == whole[2] == ["the", "cat", "sat", "hat", "zz"]
    known = index_corpus(iter(docs), index={"zz": 0, "cat": 1})[1]
    np.testing.assert_array_equal(known, index_corpus(docs, index={"zz": 0, "cat": 1})[1])
    assert known.dtype == np.int32 and set(known.tolist()) == {-1, 0, 1}
    with pytest.raises(TypeError, match="got one string"):
        index_corpus("the cat sat")


def test_vocabulary_min_count_and_max_size():
    words = ["b", "a", "c", "d"]
    vocab, remap = Vocabulary.from_counts(words, np.array([5, 5, 1, 3]), min_count=2, max_size=2)
    assert vocab.words == ["a", "b"]
    np.testing.assert_array_equal(remap, [1, 0, -1, -1])
    np.testing.assert_array_equal(vocab.ids(["b", "zz", "a"]), [1, -1, 0])


def test_seed_mode_on_a_tiny_corpus():
    docs = ["apple banana apple", "banana cherry", "durian"]
    m = Tfidf(TfidfConfig(mode="seed")).fit_transform(docs).toarray()
    # vocabulary sorted: apple, banana, cherry, durian; N = 3
    expected = np.array([
        [2 / 3 * np.log(3 / 2), 1 / 3 * np.log(3 / 3), 0, 0],
        [0, 1 / 2 * np.log(3 / 3), 1 / 2 * np.log(3 / 2), 0],
        [0, 0, 0, 1.0 * np.log(3 / 2)],
    ])
    np.testing.assert_allclose(m, expected, atol=1e-15)


def test_transform_ignores_unknown_words_and_needs_fit():
    model = Tfidf(TfidfConfig(mode="sklearn"))
    with pytest.raises(RuntimeError, match="fit"):
        model.transform(["x"])
    model.fit(["red green", "green blue"])
    out = model.transform(["green purple", "purple"]).toarray()
    assert out.shape == (2, 3) and out[0, model.vocabulary.index["green"]] == pytest.approx(1.0)
    assert np.all(out[1] == 0)


def test_stop_words_are_removed():
    m = Tfidf(TfidfConfig(stop_words=("the",))).fit(["the cat", "the dog"])
    assert m.vocabulary.words == ["cat", "dog"]


@pytest.mark.peers
def test_sklearn_mode_equals_tfidfvectorizer_on_sst2_and_lee():
    sklearn_text = pytest.importorskip("sklearn.feature_extraction.text")
    lines = resolve("sst2/train.tsv").read_text(encoding="utf-8").splitlines()[1:20001]
    sst2 = [line.split("\t")[1] for line in lines]
    lee = resolve("lee/lee_background.cor").read_text(encoding="latin-1").splitlines()
    for docs in (sst2, lee):
        ours = Tfidf(TfidfConfig(mode="sklearn"))
        ref = sklearn_text.TfidfVectorizer()
        a, b = ours.fit_transform(docs).to_scipy(), ref.fit_transform(docs)
        assert ours.vocabulary.words == list(ref.get_feature_names_out())
        assert abs(a - b).max() < 1e-6
