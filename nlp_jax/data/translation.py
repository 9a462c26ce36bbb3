"""Sentence pairs as model inputs: pieces with ``</s>`` / ``<s>``, a stated truncation rule, and batches
of about a fixed number of tokens (sentences of similar length together, so little is padding).

A source row is its pieces then ``</s>``; a target row is ``<s> y`` as input and ``y </s>`` as the output to
predict. A sentence longer than ``max_len - 1`` pieces keeps its first ``max_len - 1`` (the ``</s>`` always
stays); an empty line is ``</s>`` alone, which the encoder reads like any other.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nlp_jax.data.bpe import BOS, EOS, PAD


def with_end(pieces: Sequence[Sequence[int]], max_len: int) -> list[np.ndarray]:
    """Each row's first ``max_len - 1`` pieces, then ``</s>``."""
    if max_len < 2:
        raise ValueError(f"max_len must be >= 2 (one piece and </s>), got {max_len}")
    return [np.asarray([*p[:max_len - 1], EOS], np.int32) for p in pieces]


def pad_rows(rows: Sequence[np.ndarray], width: int, *, left: int | None = None) -> np.ndarray:
    """(N, width) int32, each row's ids then ``<pad>``; ``left`` (an id) is put before every row first."""
    out = np.full((len(rows), width), PAD, np.int32)
    for i, r in enumerate(rows):
        r = r if left is None else np.r_[left, r]
        out[i, :len(r)] = r[:width]
    return out


def pair_batch(sources: Sequence[np.ndarray], targets: Sequence[np.ndarray], width: int, *,
               empty_targets: int = 0) -> dict[str, np.ndarray]:
    """The arrays of ``objectives.seq2seq_loss`` for rows that end in ``</s>``, padded to ``width``; the last
    ``empty_targets`` rows are padding whose target mask is all False (they weigh nothing in the loss)."""
    src = pad_rows(sources, width)
    target_out = pad_rows(targets, width)
    target_in = pad_rows([t[:-1] for t in targets], width, left=BOS)
    target_mask = target_out != PAD
    if empty_targets:
        target_mask[-empty_targets:] = False
    return {"source": src, "source_mask": src != PAD, "target_in": target_in, "target_out": target_out,
            "target_mask": target_mask}


class TokenBudgetBatches:
    """Training batches of about ``budget`` tokens: pairs go to buckets by their longer side rounded up to
    ``multiple`` (one compiled shape per bucket), a bucket of width W makes batches of ``budget // W`` rows
    (padded tokens included), and every epoch shuffles each bucket and the order of all batches, seeded by
    (seed, epoch). A bucket's last incomplete batch waits for the next epoch's shuffle (so the number of
    steps per epoch is fixed and every row is drawn as often in expectation). ``source(step)`` depends on
    the step alone, so a resumed run reads the same batches.

    ``rows_multiple`` (a mesh's device count) pads each batch with empty rows to a multiple of it, so the rows
    split over the devices: a padding row has a one-piece source (``</s>``, so no attention row is empty) and
    no target token, so it adds nothing to the loss, its gradient or its token count."""

    def __init__(self, sources: Sequence[np.ndarray], targets: Sequence[np.ndarray], budget: int, *, seed: int = 0,
                 multiple: int = 8, rows_multiple: int = 1):
        if len(sources) != len(targets) or not len(sources):
            raise ValueError(f"need as many targets as sources (> 0), got {len(sources)} and {len(targets)}")
        if rows_multiple < 1:
            raise ValueError(f"rows_multiple must be >= 1, got {rows_multiple}")
        self.sources, self.targets, self.seed, self.rows_multiple = list(sources), list(targets), seed, rows_multiple
        longest = np.array([max(len(s), len(t)) for s, t in zip(self.sources, self.targets)])
        widths = -(-longest // multiple) * multiple
        if budget < widths.max():
            raise ValueError(f"budget={budget} tokens is less than one row of the longest bucket ({widths.max()})")
        self.buckets = {int(w): np.flatnonzero(widths == w) for w in np.unique(widths)}
        self.rows = {w: budget // w for w in self.buckets}
        self.steps_per_epoch = sum(len(idx) // self.rows[w] for w, idx in self.buckets.items())
        if self.steps_per_epoch == 0:
            raise ValueError(f"budget={budget} makes no full batch from {len(self.sources)} pairs: lower it")
        self._plan = (None, None)

    def _epoch(self, epoch: int) -> list[tuple[int, np.ndarray]]:
        if self._plan[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            batches = []
            for w, idx in self.buckets.items():
                order, r = rng.permutation(idx), self.rows[w]
                batches += [(w, order[i:i + r]) for i in range(0, len(order) - r + 1, r)]
            self._plan = (epoch, [batches[i] for i in rng.permutation(len(batches))])
        return self._plan[1]

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        epoch, k = divmod(step, self.steps_per_epoch)
        width, idx = self._epoch(epoch)[k]
        pad = -len(idx) % self.rows_multiple
        end = np.array([EOS], np.int32)
        return pair_batch([self.sources[i] for i in idx] + [end] * pad, [self.targets[i] for i in idx] + [end] * pad,
                          width, empty_targets=pad)
