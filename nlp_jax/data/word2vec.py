"""The data side of word2vec (Mikolov et al. 2013), in NumPy over whole corpora: a frequency-ordered
vocabulary and frequent-word subsampling.

Conventions follow word2vec.c / gensim so results compare like for like:
- subsampling keeps a word of count c with probability (sqrt(c / (t N)) + 1) (t N) / c, where N is the
  number of in-vocabulary tokens and t the ``sample`` threshold (gensim's formula; capped at 1);
- the dynamic window draws b uniformly from {0, ..., window - 1} for every centre word and uses the
  words within window - b positions on either side, inside the same document, after subsampling
  (drawn in ``models.word2vec``, applied by ``ops.sgns``);
- negatives are drawn from unigram counts raised to 0.75 (``ops.sampling.alias_table`` of counts**0.75).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nlp_jax.data.root import read_text
from nlp_jax.data.text import index_corpus


@dataclass(frozen=True)
class IndexedCorpus:
    words: list[str]  # the vocabulary, most frequent first (ties: first appearance)
    counts: np.ndarray  # (V,) int64 corpus count of each word
    ids: np.ndarray  # (N,) int32 word id of every in-vocabulary token, in corpus order
    doc_ids: np.ndarray  # (N,) int32 document of every such token


def index_word_corpus(docs: Iterable[str], *, min_count: int = 5, max_size: int | None = None,
                      pattern: str = r"\S+") -> IndexedCorpus:
    """Tokenise ``docs``, keep words seen ``min_count`` times or more (and the ``max_size`` most frequent),
    order them by descending count as gensim does, and drop out-of-vocabulary tokens."""
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    doc_ids, ids, words = index_corpus(docs, pattern=pattern, lowercase=False)
    counts = np.bincount(ids, minlength=len(words))
    order = np.argsort(-counts, kind="stable")  # first-seen order among equal counts
    order = order[counts[order] >= min_count][:max_size]
    if len(order) == 0:
        raise ValueError(f"no word occurs {min_count} times or more; lower min_count")
    remap = np.full(len(words), -1, np.int64)
    remap[order] = np.arange(len(order))
    new_ids = remap[ids]
    keep = new_ids >= 0
    return IndexedCorpus([words[i] for i in order], counts[order], new_ids[keep].astype(np.int32),
                         doc_ids[keep].astype(np.int32))


def read_lines(path: str | Path) -> list[str]:
    """One document a line; blank lines dropped."""
    return [line for line in read_text(Path(path)).splitlines() if line.strip()]


def keep_probabilities(counts: np.ndarray, sample: float) -> np.ndarray:
    """P(keep word) for frequent-word subsampling; ``sample=0`` keeps everything."""
    counts = np.asarray(counts, np.float64)
    if sample <= 0:
        return np.ones_like(counts)
    threshold = sample * counts.sum()
    return np.minimum((np.sqrt(counts / threshold) + 1.0) * threshold / counts, 1.0)


def subsample(corpus: IndexedCorpus, keep_prob: np.ndarray, rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray]:
    """One epoch's draw: the kept tokens' (ids, doc_ids)."""
    kept = rng.random(len(corpus.ids)) < keep_prob[corpus.ids]
    return corpus.ids[kept], corpus.doc_ids[kept]
