"""Counting statistics: bag of words as a sparse document-term matrix, TF-IDF, cosine similarity.

Everything here is vectorised NumPy over flat (doc id, term id) arrays: no Python loop per token.
Matrices are :class:`CSR` (compressed sparse rows: ``indptr``, ``indices``, ``data``), convertible to
SciPy with :meth:`CSR.to_scipy` and to dense with :meth:`CSR.toarray`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CSR:
    indptr: np.ndarray  # (n_rows + 1,) row r occupies [indptr[r], indptr[r+1])
    indices: np.ndarray  # (nnz,) column of each stored value, increasing within a row
    data: np.ndarray  # (nnz,) the values
    shape: tuple[int, int]

    @property
    def row_ids(self) -> np.ndarray:
        """(nnz,) the row of each stored value."""
        return np.repeat(np.arange(self.shape[0]), np.diff(self.indptr))

    def with_data(self, data: np.ndarray) -> "CSR":
        return CSR(self.indptr, self.indices, data, self.shape)

    def row_sums(self) -> np.ndarray:
        return np.bincount(self.row_ids, weights=self.data, minlength=self.shape[0])

    def toarray(self) -> np.ndarray:
        out = np.zeros(self.shape, self.data.dtype)
        out[self.row_ids, self.indices] = self.data
        return out

    def to_scipy(self):
        import scipy.sparse

        return scipy.sparse.csr_matrix((self.data, self.indices, self.indptr), shape=self.shape)


def bag_of_words(doc_ids: np.ndarray, term_ids: np.ndarray, n_docs: int, n_terms: int) -> CSR:
    """Document-term count matrix from parallel arrays of (document, term) for every token.

    Counts ``c(t, d)`` by sorting the combined keys ``d * V + t`` once (``np.unique``), which gives the
    rows in order and the columns sorted within each row.
    """
    doc_ids, term_ids = np.asarray(doc_ids, np.int64), np.asarray(term_ids, np.int64)
    if doc_ids.shape != term_ids.shape:
        raise ValueError(f"doc_ids {doc_ids.shape} and term_ids {term_ids.shape} must have the same shape")
    if term_ids.size and (term_ids.min() < 0 or term_ids.max() >= n_terms):
        raise ValueError(f"term ids must lie in [0, {n_terms})")
    keys, counts = np.unique(doc_ids * n_terms + term_ids, return_counts=True)
    rows, cols = np.divmod(keys, n_terms)
    indptr = np.zeros(n_docs + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=n_docs), out=indptr[1:])
    return CSR(indptr, cols.astype(np.int32), counts.astype(np.float64), (n_docs, n_terms))


def document_frequency(counts: CSR) -> np.ndarray:
    """df(t): the number of documents containing t."""
    return np.bincount(counts.indices, minlength=counts.shape[1])


def idf(df: np.ndarray, n_docs: int, *, mode: str = "seed") -> np.ndarray:
    """Inverse document frequency.

    mode 'seed': ``IDF(t) = log(N / (1 + df(t)))`` (the cheat sheet's form; it is 0 for a term in N - 1
    documents and negative for a term in all N). mode 'smooth' (scikit-learn's default):
    ``IDF(t) = ln((1 + N) / (1 + df(t))) + 1``.
    """
    df = np.asarray(df, np.float64)
    if mode == "seed":
        return np.log(n_docs / (1.0 + df))
    if mode == "smooth":
        return np.log((1.0 + n_docs) / (1.0 + df)) + 1.0
    raise ValueError(f"idf mode must be 'seed' or 'smooth', got {mode!r}")


def l2_normalize_rows(m: CSR) -> CSR:
    """Scale every row to unit Euclidean norm (all-zero rows stay zero)."""
    norms = np.sqrt(m.with_data(m.data * m.data).row_sums())
    norms[norms == 0] = 1.0
    return m.with_data(m.data / norms[m.row_ids])


def tfidf(counts: CSR, idf_values: np.ndarray, *, tf: str = "relative", normalize: bool = False) -> CSR:
    """``TF-IDF(t, d) = TF(t, d) * IDF(t)``.

    tf 'relative' (the seed): ``TF(t, d) = c(t, d) / (number of terms in d)``; tf 'raw': ``c(t, d)``.
    normalize: l2-normalise each document's row (scikit-learn's default).
    """
    if tf == "relative":
        lengths = counts.row_sums()
        values = counts.data / np.maximum(lengths, 1.0)[counts.row_ids]
    elif tf == "raw":
        values = counts.data
    else:
        raise ValueError(f"tf must be 'relative' or 'raw', got {tf!r}")
    out = counts.with_data(values * np.asarray(idf_values)[counts.indices])
    return l2_normalize_rows(out) if normalize else out


def cosine_similarity(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Pairwise cosine similarity of the rows of dense a (n, d) and b (m, d); zero rows give 0."""
    b = a if b is None else b
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    return (a @ b.T) / np.maximum(np.outer(na, nb), 1e-300)
