import numpy as np
import pytest

from nlp_jax.ops.counting import CSR, bag_of_words, cosine_similarity, document_frequency, idf, l2_normalize_rows, tfidf

# Three documents over a 4-word vocabulary, as (doc, term) pairs of every token.
DOCS = [[0, 1, 1, 2], [1, 3], [0, 0, 0]]
DOC_IDS = np.repeat(np.arange(3), [len(d) for d in DOCS])
TERM_IDS = np.concatenate(DOCS)


def counts():
    return bag_of_words(DOC_IDS, TERM_IDS, n_docs=4, n_terms=4)  # the 4th document is empty


def test_bag_of_words_counts_and_csr_layout():
    m = counts()
    np.testing.assert_array_equal(m.toarray(), [[1, 2, 1, 0], [0, 1, 0, 1], [3, 0, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(m.indptr, [0, 3, 5, 6, 6])
    assert np.all(np.diff(m.indices[:3]) > 0)  # columns sorted within a row
    np.testing.assert_array_equal(document_frequency(m), [2, 2, 1, 1])


def test_seed_tfidf_by_hand():
    m = counts()
    values = tfidf(m, idf(document_frequency(m), 4, mode="seed"), tf="relative").toarray()
    n = 4
    expected = np.zeros((4, 4))
    for d, doc in enumerate(DOCS):
        for t in set(doc):
            tf = doc.count(t) / len(doc)
            df = sum(t in other for other in DOCS)
            expected[d, t] = tf * np.log(n / (1 + df))
    np.testing.assert_allclose(values, expected, rtol=1e-12)


def test_smooth_idf_and_l2_rows():
    m = counts()
    np.testing.assert_allclose(idf([2, 1], 4, mode="smooth"), [np.log(5 / 3) + 1, np.log(5 / 2) + 1])
    unit = l2_normalize_rows(tfidf(m, idf(document_frequency(m), 4, mode="smooth"), tf="raw")).toarray()
    np.testing.assert_allclose(np.linalg.norm(unit[:3], axis=1), 1.0)
    assert np.all(unit[3] == 0)  # an empty document stays zero, no NaN


def test_cosine_similarity():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    sims = cosine_similarity(a)
    np.testing.assert_allclose(sims[0, 1], 1 / np.sqrt(2))
    np.testing.assert_allclose(np.diag(sims)[:2], 1.0)
    assert sims[2, 2] == 0.0


def test_errors():
    with pytest.raises(ValueError, match="same shape"):
        bag_of_words(np.zeros(3), np.zeros(2), 1, 1)
    with pytest.raises(ValueError, match="term ids"):
        bag_of_words(np.zeros(2), np.array([0, 5]), 1, 3)
    with pytest.raises(ValueError, match="idf mode"):
        idf([1], 2, mode="bm25")
    with pytest.raises(ValueError, match="tf must"):
        tfidf(counts(), np.ones(4), tf="log")
    assert isinstance(counts(), CSR)


def test_cooccurrence_counts_match_a_loop():
    from nlp_jax.ops.counting import cooccurrence

    ids = np.array([0, 1, 2, 1, 0, 3, 3, 1])
    docs = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    for weighting in ("uniform", "linear"):
        expected = np.zeros((4, 4))
        for i in range(len(ids)):
            for j in range(len(ids)):
                d = abs(i - j)
                if 0 < d <= 2 and docs[i] == docs[j]:
                    expected[ids[i], ids[j]] += 1.0 if weighting == "uniform" else (2 - d + 1) / 2
        np.testing.assert_allclose(cooccurrence(ids, docs, 4, 2, weighting=weighting).toarray(), expected)
        for chunk in (1, 3, 7):  # pairs that cross a chunk's end, a chunk shorter than the window
            np.testing.assert_allclose(cooccurrence(ids, docs, 4, 2, weighting=weighting, chunk=chunk).toarray(),
                                       expected)
    assert len(cooccurrence(ids[:1], docs[:1], 4, 2).data) == 0  # one token: no pair
    with pytest.raises(ValueError, match="window"):
        cooccurrence(ids, docs, 4, 0)


def test_pmi_and_ppmi_against_float64_formula():
    from nlp_jax.ops.counting import pmi

    dense = np.array([[0.0, 4.0, 1.0], [4.0, 2.0, 0.0], [1.0, 0.0, 6.0]])
    m = CSR(np.array([0, 2, 4, 6]), np.array([1, 2, 0, 1, 0, 2]), dense[dense > 0], (3, 3))
    total, rows, cols = dense.sum(), dense.sum(1), dense.sum(0)
    for alpha, shift in ((1.0, 1.0), (0.75, 2.0)):
        ctx = cols**alpha / (cols**alpha).sum()
        with np.errstate(divide="ignore"):  # log 0 = -inf for the unseen pairs, which are not stored
            expected = np.log((dense / total) / ((rows / total)[:, None] * ctx[None, :])) - np.log(shift)
        got = pmi(m, alpha=alpha, shift=shift)
        np.testing.assert_allclose(got.data, expected[dense > 0], rtol=1e-12, atol=1e-14)
        positive = pmi(m, alpha=alpha, shift=shift, positive=True).toarray()
        np.testing.assert_allclose(positive, np.where(dense > 0, np.maximum(expected, 0), 0), rtol=1e-12, atol=1e-14)
        assert (pmi(m, alpha=alpha, shift=shift, positive=True).data > 0).all()  # zeros are not stored
