"""Counting statistics: bag of words as a sparse document-term matrix, TF-IDF, cosine similarity, windowed
co-occurrence counts and (positive) pointwise mutual information.

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

    def with_data(self, data: np.ndarray) -> CSR:
        return CSR(self.indptr, self.indices, data, self.shape)

    def row_sums(self) -> np.ndarray:
        return np.bincount(self.row_ids, weights=self.data, minlength=self.shape[0])

    def toarray(self) -> np.ndarray:
        out = np.zeros(self.shape, self.data.dtype)
        out[self.row_ids, self.indices] = self.data
        return out

    def where(self, keep: np.ndarray) -> CSR:
        """The matrix with only the stored values where ``keep`` (nnz,) is True."""
        indptr = np.zeros_like(self.indptr)
        np.cumsum(np.bincount(self.row_ids[keep], minlength=self.shape[0]), out=indptr[1:])
        return CSR(indptr, self.indices[keep], self.data[keep], self.shape)

    def to_scipy(self):
        import scipy.sparse

        return scipy.sparse.csr_matrix((self.data, self.indices, self.indptr), shape=self.shape)


def bag_of_words(doc_ids: np.ndarray, term_ids: np.ndarray, n_docs: int, n_terms: int) -> CSR:
    """Document-term count matrix from parallel arrays of (document, term) for every token.

    Counts ``c(t, d)`` by summing duplicate (d, t) entries; the columns come sorted within each row.
    """
    doc_ids, term_ids = np.asarray(doc_ids, np.int64), np.asarray(term_ids, np.int64)
    if doc_ids.shape != term_ids.shape:
        raise ValueError(f"doc_ids {doc_ids.shape} and term_ids {term_ids.shape} must have the same shape")
    if term_ids.size and (term_ids.min() < 0 or term_ids.max() >= n_terms):
        raise ValueError(f"term ids must lie in [0, {n_terms})")
    return _sum_duplicates(doc_ids, term_ids, None, (n_docs, n_terms))


def _scipy_csr(rows: np.ndarray, cols: np.ndarray, weights: np.ndarray | None, shape: tuple[int, int]):
    """SciPy's CSR of the sum of ``weights`` (1 each when None) at every (row, col): its COO -> CSR conversion
    does the summing (a counting sort by row, several times faster than sorting the combined keys with
    ``np.unique``)."""
    import scipy.sparse

    values = np.ones(len(rows)) if weights is None else np.asarray(weights, np.float64)
    return scipy.sparse.coo_matrix((values, (rows, cols)), shape=shape).tocsr()


def _as_csr(m, shape: tuple[int, int]) -> CSR:
    m.sum_duplicates()  # also sorts the columns within each row
    return CSR(m.indptr.astype(np.int64), m.indices.astype(np.int32), m.data, shape)


def _sum_duplicates(rows: np.ndarray, cols: np.ndarray, weights: np.ndarray | None, shape: tuple[int, int]) -> CSR:
    """CSR of the sum of ``weights`` (1 each when None) at every (row, col), columns sorted in each row."""
    return _as_csr(_scipy_csr(rows, cols, weights, shape), shape)


def cooccurrence(ids: np.ndarray, doc_ids: np.ndarray, n_terms: int, window: int, *,
                 weighting: str = "uniform", chunk: int = 1 << 21) -> CSR:
    """Symmetric word-context counts #(w, c) over a window of ``window`` words on each side, within
    documents. weighting 'uniform' counts every pair once; 'linear' weighs a pair at distance d by
    (window - d + 1) / window, the expected count under word2vec's dynamic window (Levy et al. 2015).
    The pairs are summed ``chunk`` tokens at a time (each pair with the chunk of its left word), so the
    memory grows with the distinct pairs, not with the corpus (2 x window pairs a token, 24 bytes each,
    would be 1.5 GB for 16M tokens at window 2).
    """
    ids, doc_ids = np.asarray(ids, np.int64), np.asarray(doc_ids)
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if weighting not in ("uniform", "linear"):
        raise ValueError(f"weighting must be 'uniform' or 'linear', got {weighting!r}")
    shape, n = (n_terms, n_terms), len(ids)
    total = _scipy_csr(np.zeros(0, np.int64), np.zeros(0, np.int64), None, shape)
    for start in range(0, n, chunk):
        rows, cols, weights = [], [], []
        for d in range(1, window + 1):
            end = min(start + chunk, n - d)  # left words start..end-1, their right words d later
            if end <= start:
                continue
            same = doc_ids[start:end] == doc_ids[start + d:end + d]
            left, right = ids[start:end][same], ids[start + d:end + d][same]
            w = 1.0 if weighting == "uniform" else (window - d + 1) / window
            rows += [left, right]
            cols += [right, left]
            weights.append(np.full(2 * len(left), w))
        if rows:
            total = total + _scipy_csr(np.concatenate(rows), np.concatenate(cols), np.concatenate(weights), shape)
    return _as_csr(total, shape)


def pmi(counts: CSR, *, alpha: float = 1.0, shift: float = 1.0, positive: bool = False) -> CSR:
    """Pointwise mutual information of the stored (co-occurring) pairs of a word-context count matrix.

    ``PMI(w, c) = log P(w, c) / (P(w) P_alpha(c))`` with P(w, c) = #(w, c) / D, P(w) = #(w) / D and the
    context distribution smoothed as P_alpha(c) = #(c)^alpha / sum_c' #(c')^alpha (alpha = 1: plain PMI;
    0.75: Levy et al. 2015). ``shift`` k subtracts log k (shifted PMI, the matrix SGNS factorises with k
    negatives). ``positive`` keeps max(PMI, 0) and drops the zeros (PPMI). Pairs never seen have PMI
    -inf (PPMI 0) and are not stored.
    """
    if shift <= 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    word = counts.row_sums()
    context = np.bincount(counts.indices, weights=counts.data, minlength=counts.shape[1]) ** alpha
    # P(w, c) / (P(w) P_alpha(c)) = #(w, c) / (#(w) P_alpha(c)): the total D cancels
    values = (np.log(counts.data) - np.log(word[counts.row_ids]) - np.log(context[counts.indices] / context.sum())
              - np.log(shift))
    out = counts.with_data(values)
    return out.where(values > 0) if positive else out


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
