"""Word tokenisation and vocabularies for count-based models, vectorised over whole corpora.

``index_corpus`` reads the documents in chunks of ``CHUNK``: one regular-expression pass over each chunk
(its documents joined by a sentinel token) and one dict lookup per token, appended to flat int32 NumPy
arrays (document of each token, word id of each token); everything after that is array arithmetic. A
corpus of any size (a generator of lines streamed from a file) is held as those two arrays, 8 bytes a
token, and its vocabulary. ``Vocabulary`` keeps its words sorted, as scikit-learn's vectorizers order their
columns.
"""

from __future__ import annotations

import collections
import itertools
import re
from collections.abc import Iterable, Sequence

import numpy as np
import regex

WORD_PATTERN = r"(?u)\b\w\w+\b"  # scikit-learn's default token_pattern: words of 2+ word characters
_SENTINEL = "qqzzdocbreakzzqq"
CHUNK = 10_000  # documents tokenised at once


def _compile(pattern: str):
    try:
        return re.compile(pattern)  # the standard library's engine is the faster one where it suffices
    except re.error:
        return regex.compile(pattern)  # \p{L} and friends


def _tokens(docs: Sequence[str], pattern: str, lowercase: bool) -> list[str]:
    compiled = _compile(pattern)
    text = f" {_SENTINEL} ".join(docs)
    text = text.lower() if lowercase else text
    if compiled.findall(_SENTINEL) != [_SENTINEL] or text.count(_SENTINEL) != max(len(docs) - 1, 0):
        raise ValueError(f"pattern {pattern!r} must match the document separator {_SENTINEL!r} as one token, "
                         "and no document may contain it")
    return compiled.findall(text)


def _split_docs(ids: np.ndarray, sentinel_id: int) -> tuple[np.ndarray, np.ndarray]:
    is_break = ids == sentinel_id
    keep = ~is_break
    return np.cumsum(is_break)[keep], ids[keep]


def index_corpus(docs: Iterable[str], *, index: dict[str, int] | None = None, pattern: str = WORD_PATTERN,
                 lowercase: bool = True) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Tokenise every document and map tokens to ids.

    With ``index=None`` a new index is learned (ids in order of first appearance) and returned as the
    word list; with a given ``index`` unknown words get id -1. Returns ``(doc_ids, ids, words)``, each
    array (N,) int32 over all N tokens in corpus order. ``docs`` is read once, ``CHUNK`` documents at a time.
    """
    if isinstance(docs, (str, bytes)):
        raise TypeError("docs must be an iterable of documents, got one string; wrap it in a list: [text]")
    learned = index is None
    lookup = {_SENTINEL: -1} if learned else collections.defaultdict(lambda: -1, {**index, _SENTINEL: -2})
    sentinel = lookup[_SENTINEL]
    doc_parts, id_parts, done = [], [], 0
    it = iter(docs)
    while chunk := list(itertools.islice(it, CHUNK)):
        tokens = _tokens(chunk, pattern, lowercase)
        if learned:
            for w in dict.fromkeys(tokens):  # each distinct token once, in first-seen order
                if w not in lookup:
                    lookup[w] = len(lookup) - 1
        doc_ids, ids = _split_docs(np.fromiter(map(lookup.__getitem__, tokens), np.int32, len(tokens)), sentinel)
        doc_parts.append(doc_ids.astype(np.int32) + done)
        id_parts.append(ids)
        done += len(chunk)
    cat = (lambda parts: np.concatenate(parts) if parts else np.zeros(0, np.int32))
    return cat(doc_parts), cat(id_parts), list(lookup)[1:] if learned else list(index)


class Vocabulary:
    """Words <-> ids; ids follow the sorted order of the words."""

    def __init__(self, words: Iterable[str]):
        self.words = sorted(set(words))
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    @classmethod
    def from_counts(cls, words: Sequence[str], counts: np.ndarray, *, min_count: int = 1,
                    max_size: int | None = None) -> tuple[Vocabulary, np.ndarray]:
        """Keep words with count >= ``min_count`` (and, with ``max_size``, the most frequent, ties
        alphabetical). Returns the vocabulary and ``remap``: old id -> new id, -1 for dropped words."""
        keep = np.asarray(counts) >= min_count
        if max_size is not None and keep.sum() > max_size:
            ranked = sorted(np.flatnonzero(keep), key=lambda i: (-counts[i], words[i]))
            keep = np.zeros_like(keep)
            keep[ranked[:max_size]] = True
        vocab = cls(w for w, k in zip(words, keep) if k)
        remap = np.array([vocab.index[w] if k else -1 for w, k in zip(words, keep)], np.int64)
        return vocab, remap

    def ids(self, words: Sequence[str]) -> np.ndarray:
        """(N,) int64 ids, -1 for words not in the vocabulary."""
        lookup = collections.defaultdict(lambda: -1, self.index)
        return np.fromiter(map(lookup.__getitem__, words), np.int64, len(words))
