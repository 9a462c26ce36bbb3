"""BERT pretraining batches: next-sentence-prediction pairs from text in reading order, and tokenised
sentence batches for classification.

NSP (Devlin et al. 2019, section 3.1): for a first sentence i, with probability 1/2 the second is the true
next sentence i + 1 (label 0, "is next", HF's order), otherwise a uniformly random other sentence (label 1).
The masking of the MLM objective happens in the jitted loss (``ops.mlm_mask``), keyed by the batch's
``mlm_seed``, so a batch is a pure function of the step and a resumed run sees exactly the same data.
"""

from __future__ import annotations

import numpy as np

from nlp_jax.data.corpus import epoch_rows
from nlp_jax.data.wordpiece import WordPieceTokenizer


def nsp_pairs(n_sentences: int, first: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(second, labels) for first-sentence indices ``first`` (each < n_sentences - 1): second = first + 1
    with label 0 (probability 1/2), else a uniform index other than first + 1 with label 1. Vectorised."""
    first = np.asarray(first)
    if n_sentences < 3:
        raise ValueError(f"NSP needs at least 3 sentences, got {n_sentences}")
    if first.size and (first.min() < 0 or first.max() >= n_sentences - 1):
        raise ValueError(f"first-sentence indices must be in [0, {n_sentences - 1}) (each needs a next one)")
    labels = (rng.random(first.shape) < 0.5).astype(np.int32)
    other = rng.integers(0, n_sentences - 1, first.shape)  # uniform over the n - 1 indices except first + 1
    other = other + (other >= first + 1)
    return np.where(labels == 0, first + 1, other), labels


def document_chunks(documents: list[str], words: int) -> tuple[list[str], np.ndarray]:
    """Split documents (one a string) into consecutive chunks of ``words`` words (a document's last chunk
    may be shorter), for NSP on text without sentence boundaries. Returns (chunks, firsts): ``firsts`` are the
    indices of the chunks followed by another of the same document, the only valid true-next pairs."""
    if words < 1:
        raise ValueError(f"words must be >= 1, got {words}")
    chunks, firsts = [], []
    for doc in documents:
        w = doc.split()
        start = len(chunks)
        chunks.extend(" ".join(w[i:i + words]) for i in range(0, len(w), words))
        firsts.extend(range(start, len(chunks) - 1))
    return chunks, np.asarray(firsts, np.int64)


class PretrainingBatches:
    """``source(step)``: ``batch_size`` NSP pairs drawn with a generator seeded by (seed, step), tokenised
    (``[CLS] A [SEP] B [SEP]``, truncated longest-first to ``max_length``, padded to a multiple of 8),
    with ``nsp_labels``, ``nsp_weight`` (1 on a pair) and the ``mlm_seed`` for the masking in the loss.

    With ``singles`` (texts without an order, e.g. a task's unlabelled sentences for task-adaptive
    pretraining), the first ``round(single_rate * batch_size)`` rows of each batch are single texts
    (``[CLS] A [SEP]``) for the MLM loss only: their ``nsp_weight`` is 0. ``firsts`` restricts the first
    sentences to these indices (e.g. ``document_chunks``'s, so a true pair never crosses a document
    boundary); by default any sentence but the last."""

    def __init__(self, sentences: list[str], tokenizer: WordPieceTokenizer, batch_size: int, max_length: int,
                 seed: int = 0, singles: list[str] | None = None, single_rate: float = 0.0,
                 firsts: np.ndarray | None = None):
        if len(sentences) < 3:
            raise ValueError(f"pretraining needs at least 3 sentences in order, got {len(sentences)}")
        if not 0.0 <= single_rate < 1.0 or (single_rate > 0 and not singles):
            raise ValueError(f"single_rate must be in [0, 1) and needs singles, got {single_rate} with "
                             f"{len(singles or [])} singles")
        self.sentences, self.tokenizer, self.singles = sentences, tokenizer, singles or []
        self.batch_size, self.max_length, self.seed = batch_size, max_length, seed
        self.n_single = round(single_rate * batch_size)
        self.firsts = None if firsts is None else np.asarray(firsts)
        if self.firsts is not None and (not self.firsts.size or self.firsts.min() < 0
                                        or self.firsts.max() >= len(sentences) - 1):
            raise ValueError(f"firsts must be non-empty indices in [0, {len(sentences) - 1}) (each needs a next "
                             f"sentence)")

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, step])
        n_pairs = self.batch_size - self.n_single
        if self.firsts is None:
            first = rng.integers(0, len(self.sentences) - 1, n_pairs)
        else:
            first = self.firsts[rng.integers(0, len(self.firsts), n_pairs)]
        second, labels = nsp_pairs(len(self.sentences), first, rng)
        parts = [self.tokenizer.encode([self.sentences[i] for i in first], [self.sentences[j] for j in second],
                                       max_length=self.max_length)]
        weight = np.ones(n_pairs, np.float32)
        if self.n_single:
            picked = rng.integers(0, len(self.singles), self.n_single)
            parts.insert(0, self.tokenizer.encode([self.singles[i] for i in picked], max_length=self.max_length))
            labels = np.concatenate([np.zeros(self.n_single, np.int32), labels])
            weight = np.concatenate([np.zeros(self.n_single, np.float32), weight])
        width = max(p["input_ids"].shape[1] for p in parts)
        batch = {k: np.concatenate([np.pad(p[k], ((0, 0), (0, width - p[k].shape[1]))) for p in parts])
                 for k in parts[0]}
        return {**batch, "nsp_labels": labels, "nsp_weight": weight, "mlm_seed": np.int32(rng.integers(0, 2**31 - 1))}


class SentenceBatches:
    """``source(step)``: shuffled minibatches of labelled sentences, or sentence pairs with ``pairs`` (an epoch
    is a permutation seeded by (seed, epoch); the last incomplete batch is dropped), tokenised per batch to its
    own padded length."""

    def __init__(self, texts: list[str], labels: np.ndarray, tokenizer: WordPieceTokenizer, batch_size: int,
                 max_length: int, seed: int = 0, pairs: list[str] | None = None):
        if len(texts) != len(labels) or (pairs is not None and len(pairs) != len(texts)):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels"
                             + ("" if pairs is None else f" and {len(pairs)} second texts"))
        self.steps_per_epoch = len(texts) // batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"fewer examples ({len(texts)}) than batch_size={batch_size}")
        self.texts, self.labels, self.tokenizer = texts, np.asarray(labels, np.int32), tokenizer
        self.batch_size, self.max_length, self.seed, self.pairs = batch_size, max_length, seed, pairs

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        idx = epoch_rows(self.seed, step, len(self.texts), self.batch_size)
        pairs = None if self.pairs is None else [self.pairs[i] for i in idx]
        batch = self.tokenizer.encode([self.texts[i] for i in idx], pairs, max_length=self.max_length)
        return {**batch, "labels": self.labels[idx]}
