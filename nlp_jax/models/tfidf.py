"""TF-IDF document vectors: the cheat sheet's definition, and a scikit-learn-compatible mode.

- ``mode='seed'``: ``TF(t, d) = c(t, d) / |d|`` (``|d|``: the number of terms of d),
  ``IDF(t) = log(N / (1 + df(t)))``, no normalisation.
- ``mode='sklearn'``: raw counts, IDF(t) = ln((1 + N) / (1 + df(t))) + 1, rows l2-normalised: the
  defaults of ``sklearn.feature_extraction.text.TfidfVectorizer`` (proven equal in the peers tests).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np

from nlp_jax.data.text import WORD_PATTERN, Vocabulary, index_corpus
from nlp_jax.ops.counting import CSR, bag_of_words, document_frequency, idf, tfidf

_MODES = {"seed": ("relative", "seed", False), "sklearn": ("raw", "smooth", True)}


def _documents(docs) -> list[str]:
    """The documents as a list; one string is refused (iterating it would make each character a document)."""
    if isinstance(docs, (str, bytes)):
        raise TypeError("docs must be a sequence of documents, got one string; wrap it in a list: [text]")
    return list(docs)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TfidfConfig:
    mode: str = "seed"  # 'seed' (the cheat sheet's TF and IDF) or 'sklearn' (TfidfVectorizer's defaults)
    lowercase: bool = True  # lowercase before tokenising
    pattern: str = WORD_PATTERN  # token regular expression
    min_count: int = 1  # drop words seen fewer times in the fitting corpus
    stop_words: tuple[str, ...] = ()  # words removed after tokenising

    def __post_init__(self):
        if self.mode not in _MODES:
            raise ValueError(f"mode must be one of {sorted(_MODES)}, got {self.mode!r}")


class Tfidf:
    """``Tfidf(config).fit(docs)`` learns the vocabulary and IDF; ``transform(docs)`` gives a CSR matrix."""

    def __init__(self, config: TfidfConfig = TfidfConfig()):
        self.config = config
        self.vocabulary: Vocabulary | None = None
        self.idf: np.ndarray | None = None

    def _indexed(self, docs: list[str], index: dict | None):
        """(doc_ids, word ids, words) of every token, stop words removed."""
        cfg = self.config
        doc_ids, ids, words = index_corpus(docs, index=index, pattern=cfg.pattern, lowercase=cfg.lowercase)
        if cfg.stop_words:
            stop = set(cfg.stop_words)
            is_stop = np.array([w in stop for w in words] + [False])  # index -1 (unknown) -> False
            keep = ~is_stop[ids]
            doc_ids, ids = doc_ids[keep], ids[keep]
        return doc_ids, ids, words

    def _weights(self, docs: list[str], doc_ids: np.ndarray, ids: np.ndarray) -> CSR:
        known = ids >= 0
        counts = bag_of_words(doc_ids[known], ids[known], len(docs), len(self.vocabulary))
        tf_mode, idf_mode, norm = _MODES[self.config.mode]
        if self.idf is None:  # fitting
            self.idf = idf(document_frequency(counts), len(docs), mode=idf_mode)
        return tfidf(counts, self.idf, tf=tf_mode, normalize=norm)

    def fit_transform(self, docs: Sequence[str]) -> CSR:
        docs = _documents(docs)
        doc_ids, ids, words = self._indexed(docs, None)
        counts_per_word = np.bincount(ids, minlength=len(words))
        self.vocabulary, remap = Vocabulary.from_counts(words, counts_per_word, min_count=self.config.min_count)
        self.idf = None
        return self._weights(docs, doc_ids, remap[ids])

    def fit(self, docs: Iterable[str]) -> Tfidf:
        self.fit_transform(docs)
        return self

    def transform(self, docs: Iterable[str]) -> CSR:
        if self.vocabulary is None:
            raise RuntimeError("call fit() or fit_transform() before transform()")
        docs = list(docs)
        doc_ids, ids, _ = self._indexed(docs, self.vocabulary.index)
        return self._weights(docs, doc_ids, ids)
