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

    def save(self, path: str | Path, *, binary: bool = False) -> None:
        """word2vec's format (word2vec.c's ``-binary 0`` / ``1``, read by gensim's
        ``KeyedVectors.load_word2vec_format`` and by ``load``): a 'V D' header line, then per word either a line
        'word x_1 ... x_D' (text) or 'word ' and its D little-endian float32s and a newline (binary)."""
        if any(not w or any(c.isspace() for c in w) for w in self.words):
            raise ValueError("words must be non-empty and contain no whitespace for word2vec's format")
        rows = np.asarray(self.vectors, np.float32)
        header = f"{len(self.words)} {rows.shape[1]}\n"
        if binary:
            with open(path, "wb") as f:
                f.write(header.encode())
                for word, row in zip(self.words, rows):
                    f.write(word.encode("utf-8") + b" " + row.astype("<f4").tobytes() + b"\n")
            return
        with open(path, "w", encoding="utf-8") as f:
            f.write(header)
            for word, row in zip(self.words, rows):
                f.write(word + " " + " ".join(f"{x:.9g}" for x in row) + "\n")  # 9 digits: float32 round-trips

    @classmethod
    def load(cls, path: str | Path, *, binary: bool = False) -> WordVectors:
        """Read word2vec's text or binary format (see ``save``), naming the file and the word of a fault."""
        with open(path, "rb") as f:
            header = f.readline().split()
            if len(header) != 2 or not all(x.isdigit() for x in header):
                raise ValueError(f"{path}: the first line must be 'V D' (words, dimensions), got {header!r}")
            n, dim = (int(x) for x in header)
            words, rows = [], np.empty((n, dim), np.float32)
            data, at = (f.read(), 0) if binary else (b"", 0)
            for i in range(n):
                if binary:  # 'word ' then dim float32s (then a newline, which the next word's lstrip drops)
                    space = data.find(b" ", at)
                    if space < 0:
                        raise ValueError(f"{path}: ends at word {i + 1} of {n}")
                    values = data[space + 1:space + 1 + 4 * dim]
                    if len(values) != 4 * dim:
                        raise ValueError(f"{path}: word {i + 1} of {n} has {len(values) // 4} of its {dim} values")
                    words.append(data[at:space].lstrip(b"\n").decode("utf-8"))
                    rows[i] = np.frombuffer(values, "<f4")
                    at = space + 1 + 4 * dim
                    continue
                word, *values = f.readline().decode("utf-8").rstrip("\n").split(" ")
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
