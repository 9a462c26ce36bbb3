"""Corpus loaders and batch sources.

A batch source is a pure function of the step number (``source(step) -> batch``), so the data position of
a run is its step: a resumed run draws exactly the batches an uninterrupted run would have drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nlp_jax.data.root import read_text
from nlp_jax.data.tokenizers import CharTokenizer
from nlp_jax.validate import check_ids


@dataclass(frozen=True)
class CharCorpus:
    tokenizer: CharTokenizer
    train: np.ndarray  # (N_train,) int32 ids
    val: np.ndarray  # (N_val,) int32 ids


def load_char_corpus(relpath: str = "tinyshakespeare/input.txt", val_fraction: float = 0.1) -> CharCorpus:
    """Character-level corpus split as nanoGPT's shakespeare_char: first 90% train, last 10% validation."""
    text = read_text(relpath)
    tok = CharTokenizer.from_text(text)
    ids = tok.encode(text)
    n_train = int(len(ids) * (1.0 - val_fraction))
    return CharCorpus(tok, ids[:n_train], ids[n_train:])


class RandomBlocks:
    """Random contiguous blocks of a token stream: ``inputs = data[i:i+T]``, ``targets = data[i+1:i+T+1]``.

    The offsets of step k come from a generator seeded with (seed, k), as nanoGPT's ``get_batch`` draws
    ``randint(len(data) - T)``. Given ``vocab_size``, every id is checked once, here.
    """

    def __init__(self, data: np.ndarray, batch_size: int, block_size: int, seed: int = 0,
                 vocab_size: int | None = None):
        if len(data) <= block_size + 1:
            raise ValueError(f"corpus of {len(data)} tokens is too short for block_size={block_size}")
        if vocab_size is not None:
            check_ids(data, vocab_size, "RandomBlocks data")
        self.data = np.asarray(data, np.int32)
        self.batch_size, self.block_size, self.seed = batch_size, block_size, seed
        self._offsets = np.arange(block_size + 1)

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, step])
        starts = rng.integers(0, len(self.data) - self.block_size, self.batch_size)
        window = self.data[starts[:, None] + self._offsets]  # (B, T+1)
        return {"inputs": window[:, :-1], "targets": window[:, 1:]}


class SequentialBlocks:
    """Truncated-BPTT batches (Zaremba et al.'s reader): the stream is cut into ``batch_size`` parallel
    rows read left to right ``bptt`` tokens at a time, so each batch continues the previous one; an
    epoch is ``(len // batch_size - 1) // bptt`` steps, and its first batch says ``reset_state``.
    Given ``vocab_size``, every id is checked once, here."""

    def __init__(self, stream: np.ndarray, batch_size: int, bptt: int, vocab_size: int | None = None):
        row = len(stream) // batch_size
        if row <= bptt:
            raise ValueError(f"stream of {len(stream)} tokens is too short for batch {batch_size} x bptt {bptt}")
        if vocab_size is not None:
            check_ids(stream, vocab_size, "SequentialBlocks stream")
        self.rows = np.asarray(stream[:batch_size * row], np.int32).reshape(batch_size, row)
        self.bptt = bptt
        self.steps_per_epoch = (row - 1) // bptt

    def __call__(self, step: int) -> dict:
        k = step % self.steps_per_epoch
        window = self.rows[:, k * self.bptt:(k + 1) * self.bptt + 1]  # (B, bptt + 1)
        return {"inputs": window[:, :-1], "targets": window[:, 1:], "reset_state": k == 0}


def delimited_stream(rows: Sequence[Sequence[int]], bos: int, eos: int, seed: int | None = None) -> np.ndarray:
    """``bos row eos`` for every row (in a seeded random order when ``seed`` is given), concatenated into one
    int32 token stream for :class:`RandomBlocks` (no padding wasted)."""
    order = range(len(rows)) if seed is None else np.random.default_rng(seed).permutation(len(rows))
    return np.concatenate([[bos, *rows[i], eos] for i in order]).astype(np.int32)


def epoch_rows(seed: int, step: int, n: int, batch_size: int) -> np.ndarray:
    """The rows of minibatch ``step`` when every epoch visits a permutation of ``n`` rows seeded by
    (seed, epoch) and drops its last incomplete batch (so every batch has ``batch_size`` rows)."""
    epoch, k = divmod(step, n // batch_size)
    return np.random.default_rng([seed, epoch]).permutation(n)[k * batch_size:(k + 1) * batch_size]


class ShuffledBatches:
    """Minibatches of the rows of equal-length arrays without replacement (see :func:`epoch_rows`). With
    ``trim_by`` (mask keys), the (N, T) arrays are cut after the batch's longest row, rounded up to a
    multiple of ``multiple`` (a few widths, so a jitted step compiles a few times, not once per batch)."""

    def __init__(self, arrays: dict[str, np.ndarray], batch_size: int, seed: int = 0, *,
                 trim_by: Sequence[str] = (), multiple: int = 16):
        sizes = {len(a) for a in arrays.values()}
        if len(sizes) != 1:
            raise ValueError(f"arrays have different lengths: { {k: len(a) for k, a in arrays.items()} }")
        self.arrays, self.batch_size, self.seed, self.n = arrays, batch_size, seed, sizes.pop()
        self.steps_per_epoch = self.n // batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"fewer examples ({self.n}) than batch_size={batch_size}")
        self.trim_by, self.multiple = tuple(trim_by), multiple

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        idx = epoch_rows(self.seed, step, self.n, self.batch_size)
        batch = {name: a[idx] for name, a in self.arrays.items()}
        if self.trim_by:
            used = max(int(batch[m].any(axis=0).nonzero()[0].max()) + 1 for m in self.trim_by)
            width = -(-used // self.multiple) * self.multiple
            batch = {key: v[:, :width] if v.ndim == 2 else v for key, v in batch.items()}
        return batch
