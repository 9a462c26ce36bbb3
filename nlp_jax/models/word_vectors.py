"""Word vectors: a vocabulary (most frequent first) and one row per word, with cosine neighbours and
word2vec's text format. Produced by ``models.word2vec`` and ``models.ppmi_svd``; scored by
``eval.word_vectors``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class WordVectors:
    words: list[str]  # most frequent first
    vectors: np.ndarray  # (V, D)

    def __post_init__(self):
        if len(self.words) != len(self.vectors):
            raise ValueError(f"{len(self.words)} words but {len(self.vectors)} vectors")
        norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)
        self.unit = (self.vectors / np.maximum(norms, 1e-12)).astype(np.float32)
        self.index: dict[str, int] = {}
        for i, w in enumerate(self.words):
            self.index.setdefault(w.lower(), i)  # case-insensitive: the most frequent casing wins

    def save(self, path: str | Path) -> None:
        """word2vec's text format: a 'V D' header, then one 'word x_1 ... x_D' line per word (readable by
        gensim's ``KeyedVectors.load_word2vec_format`` and by ``load``)."""
        if any(not w or any(c.isspace() for c in w) for w in self.words):
            raise ValueError("words must be non-empty and contain no whitespace for the text format")
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"{len(self.words)} {self.vectors.shape[1]}\n")
            for word, row in zip(self.words, np.asarray(self.vectors, np.float32)):
                f.write(word + " " + " ".join(f"{x:.9g}" for x in row) + "\n")  # 9 digits: float32 round-trips

    @classmethod
    def load(cls, path: str | Path) -> WordVectors:
        """Read word2vec's text format (see ``save``)."""
        with open(path, encoding="utf-8") as f:
            n, dim = (int(x) for x in f.readline().split())
            words, rows = [], np.empty((n, dim), np.float32)
            for i in range(n):
                word, *values = f.readline().rstrip("\n").split(" ")
                if len(values) != dim:
                    raise ValueError(f"{path}: line {i + 2} has {len(values)} values, expected {dim}")
                words.append(word)
                rows[i] = np.asarray(values, np.float32)
        return cls(words, rows)

    def nearest(self, word: str, k: int = 10) -> list[tuple[str, float]]:
        """The k words with the highest cosine similarity to ``word`` (itself excluded; at most V - 1)."""
        if word.lower() not in self.index:
            raise KeyError(f"{word!r} is not in the vocabulary of {len(self.words):,} words")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        i = self.index[word.lower()]
        sims = self.unit @ self.unit[i]
        sims[i] = -np.inf
        top = np.argsort(-sims)[:min(k, len(self.words) - 1)]
        return [(self.words[j], float(sims[j])) for j in top]
