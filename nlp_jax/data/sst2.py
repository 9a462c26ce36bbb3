"""SST-2 sentiment (GLUE split): 67,349 training phrases, 872 dev sentences, labels 0/1, text already
lowercased and PTB-tokenised (so tokens are split on whitespace)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nlp_jax.data.root import read_text
from nlp_jax.data.text import index_corpus

PAD, UNK = 0, 1  # reserved ids


def read_sst2(split: str) -> tuple[list[str], np.ndarray]:
    lines = read_text(f"sst2/{split}.tsv").splitlines()[1:]
    labels, texts = zip(*(line.split("\t", 1) for line in lines if line.strip()))
    return list(texts), np.array(labels, np.int32)


@dataclass(frozen=True)
class Encoded:
    tokens: np.ndarray  # (N, max_len) int32, PAD after the end
    lengths: np.ndarray  # (N,) int32, at least 1
    labels: np.ndarray  # (N,) int32


def encode(texts: list[str], labels: np.ndarray, index: dict[str, int], max_len: int) -> Encoded:
    """Whitespace tokens -> ids (+2 for PAD/UNK; unknown words -> UNK), padded/truncated to ``max_len``."""
    doc_ids, ids, _ = index_corpus(texts, index=index, pattern=r"\S+", lowercase=True)
    ids = np.where(ids >= 0, ids + 2, UNK)
    starts = np.searchsorted(doc_ids, np.arange(len(texts)))
    pos = np.arange(len(ids)) - starts[doc_ids]
    keep = pos < max_len
    tokens = np.full((len(texts), max_len), PAD, np.int32)
    tokens[doc_ids[keep], pos[keep]] = ids[keep]
    lengths = np.minimum(np.bincount(doc_ids, minlength=len(texts)), max_len)
    return Encoded(tokens, np.maximum(lengths, 1).astype(np.int32), labels)


def load_sst2(max_len: int = 64) -> tuple[Encoded, Encoded, int]:
    """(train, dev, vocab_size) with the vocabulary of the training split."""
    train_texts, train_labels = read_sst2("train")
    dev_texts, dev_labels = read_sst2("dev")
    _, _, words = index_corpus(train_texts, pattern=r"\S+", lowercase=True)
    index = {w: i for i, w in enumerate(words)}
    return (encode(train_texts, train_labels, index, max_len), encode(dev_texts, dev_labels, index, max_len),
            len(words) + 2)
