"""N-gram counting over token-id streams, vectorised: every n-gram gets an integer id built from its
prefix's id and its last word (``id_n = unique(id_{n-1}(prefix) * V + w)``), so counting, context sums
and lookups are sorts and binary searches over int64 arrays, never Python dicts.

Sentences are laid end to end as ``<s> w_1 ... w_m </s>``; an n-gram may not cross a sentence
boundary, i.e. ``<s>`` may only be its first token and ``</s>`` only its last.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Level:
    """All distinct n-grams of one order n, sorted by key."""

    keys: np.ndarray  # (M,) int64: prefix id * V + last word (for n = 1: the word)
    counts: np.ndarray  # (M,) raw counts
    prefix: np.ndarray  # (M,) id of the (n-1)-gram prefix = the context (-1 for n = 1)
    suffix: np.ndarray  # (M,) id of the (n-1)-gram suffix = the lower-order n-gram (-1 for n = 1)
    first: np.ndarray  # (M,) first word of the n-gram


def window_ids(stream: np.ndarray, levels: list[Level], vocab: int, n: int) -> np.ndarray:
    """Id (index into ``levels[n-1]``) of the n-gram starting at each position of ``stream``; -1 when it
    is not in the table (or runs past the end). ``levels`` must hold orders 1..n."""
    ids = lookup(levels[0], stream.astype(np.int64))
    for order in range(2, n + 1):
        nxt = np.full(len(stream), -1, np.int64)
        nxt[:len(stream) - order + 1] = stream[order - 1:]
        prev = ids
        ids = np.full(len(stream), -1, np.int64)
        ok = (prev >= 0) & (nxt >= 0)
        ids[ok] = lookup(levels[order - 1], prev[ok] * vocab + nxt[ok])
    return ids


def lookup(level: Level, keys: np.ndarray) -> np.ndarray:
    """Positions of ``keys`` in the level's sorted key array, -1 where absent."""
    if len(level.keys) == 0:
        return np.full(len(keys), -1, np.int64)
    pos = np.minimum(np.searchsorted(level.keys, keys), len(level.keys) - 1)
    return np.where(level.keys[pos] == keys, pos, -1)


def count_ngrams(stream: np.ndarray, order: int, vocab: int, bos: int, eos: int) -> list[Level]:
    """Levels 1..order of the n-grams in ``stream`` (ids < vocab) that do not cross sentence boundaries."""
    stream = np.asarray(stream, np.int64)
    n_pos = len(stream)
    levels: list[Level] = []
    ids = None  # id of the (n-1)-gram starting at each position, -1 if invalid
    bad_inside = np.zeros(n_pos, bool)  # an <s> after the first token or an </s> before the last
    for n in range(1, order + 1):
        valid = np.zeros(n_pos, bool)
        valid[:n_pos - n + 1] = True
        if n > 1:
            last = np.full(n_pos, -1, np.int64)
            last[:n_pos - n + 1] = stream[n - 1:]
            prev_last_is_eos = np.zeros(n_pos, bool)
            prev_last_is_eos[:n_pos - n + 1] = stream[n - 2:n_pos - 1] == eos
            bad_inside = bad_inside | prev_last_is_eos | (last == bos)
            valid &= ~bad_inside & (ids >= 0)
            keys = ids * vocab + last
        else:
            keys = stream.copy()
        uniq, inverse, counts = np.unique(keys[valid], return_inverse=True, return_counts=True)
        new_ids = np.full(n_pos, -1, np.int64)
        new_ids[valid] = inverse
        first_pos = np.zeros(len(uniq), np.int64)
        first_pos[inverse[::-1]] = np.flatnonzero(valid)[::-1]  # a position where each n-gram occurs
        if n == 1:
            prefix = suffix = np.full(len(uniq), -1, np.int64)
        else:
            prefix = uniq // vocab
            suffix = ids[np.minimum(first_pos + 1, n_pos - 1)]  # the (n-1)-gram one position later
        levels.append(Level(uniq, counts, prefix, suffix, stream[first_pos]))
        ids = new_ids
    return levels
