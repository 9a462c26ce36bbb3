"""Preference pairs as arrays: (prompt, chosen, rejected) texts tokenised into right-padded prompt +
response rows with attention and response masks, and seeded minibatches of them.

Truncation (stated, as a user must know what the model saw): the prompt keeps its last
``max_prompt_length`` tokens (the end of a dialogue is what the response answers), after ``bos_id`` if
given; the response keeps its first ``max_length - len(prompt)`` tokens. A pair whose response is empty,
or whose chosen and rejected rows are identical after truncation, carries no preference: it is an error
naming the pair, or dropped and counted with ``drop_invalid=True``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


def _row(prompt: list[int], response: list[int], max_length: int) -> tuple[list[int], int]:
    response = response[:max_length - len(prompt)]
    return prompt + response, len(prompt)


def encode_pairs(encode: Callable[[str], list[int]], prompts: Sequence[str], chosen: Sequence[str],
                 rejected: Sequence[str], *, max_length: int, max_prompt_length: int, pad_id: int = 0,
                 bos_id: int | None = None, drop_invalid: bool = False) -> tuple[dict[str, np.ndarray], list[int]]:
    """({'chosen', 'chosen_mask', 'chosen_response', 'rejected', ...} (N, T) arrays, dropped indices).

    T is the longest row (at most ``max_length``); ``*_mask`` marks real tokens, ``*_response`` the
    response tokens (never position 0: the prompt, or ``bos_id``, precedes them)."""
    if not len(prompts) == len(chosen) == len(rejected):
        raise ValueError(f"prompts, chosen and rejected differ in length: {len(prompts)}, {len(chosen)}, "
                         f"{len(rejected)}")
    head = [] if bos_id is None else [bos_id]
    if not 1 <= max_prompt_length + len(head) < max_length:
        raise ValueError(f"max_prompt_length={max_prompt_length} (+ BOS) leaves no room for a response in "
                         f"max_length={max_length}: need 1 <= max_prompt_length (+1 with BOS) < max_length")
    rows, dropped = [], []
    for i, (p, c, r) in enumerate(zip(prompts, chosen, rejected)):
        prompt = head + encode(p)[-max_prompt_length:] if max_prompt_length else head
        if not prompt:
            raise ValueError(f"pair {i}: the prompt is empty and no bos_id is given: a response needs a token "
                             "before it")
        c_row, r_row = _row(prompt, encode(c), max_length), _row(prompt, encode(r), max_length)
        problem = ("an empty response" if min(len(c_row[0]), len(r_row[0])) == len(prompt)
                   else "identical chosen and rejected responses" if c_row[0] == r_row[0] else None)
        if problem:
            if not drop_invalid:
                raise ValueError(f"pair {i} has {problem} (after truncation to max_length={max_length}); it "
                                 "carries no preference: fix the data or pass drop_invalid=True")
            dropped.append(i)
            continue
        rows.append((c_row, r_row))
    if not rows:
        raise ValueError("no valid preference pair left")
    width = max(len(row) for pair in rows for row, _ in pair)
    out = {}
    for side, k in (("chosen", 0), ("rejected", 1)):
        ids = np.full((len(rows), width), pad_id, np.int32)
        start = np.array([pair[k][1] for pair in rows])
        lengths = np.array([len(pair[k][0]) for pair in rows])
        for j, pair in enumerate(rows):
            ids[j, :lengths[j]] = pair[k][0]
        cols = np.arange(width)[None]
        out[side], out[f"{side}_mask"] = ids, cols < lengths[:, None]
        out[f"{side}_response"] = (cols >= start[:, None]) & (cols < lengths[:, None])
    return out, dropped


class ArrayBatches:
    """``source(step)``: shuffled minibatches of the rows of equal-length arrays (an epoch is a permutation
    seeded by (seed, epoch); the last incomplete batch is dropped). With ``trim_by`` (mask keys), the (N, T)
    arrays are cut after the batch's longest row, rounded up to a multiple of ``multiple`` (a few widths,
    so a jitted step compiles a few times, not once per batch)."""

    def __init__(self, arrays: dict[str, np.ndarray], batch_size: int, *, seed: int = 0,
                 trim_by: Sequence[str] = (), multiple: int = 16):
        n = {len(v) for v in arrays.values()}
        if len(n) != 1:
            raise ValueError(f"arrays differ in length: { {k: len(v) for k, v in arrays.items()} }")
        self.n = n.pop()
        self.steps_per_epoch = self.n // batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"fewer rows ({self.n}) than batch_size={batch_size}")
        self.arrays, self.batch_size, self.seed, self.trim_by = arrays, batch_size, seed, tuple(trim_by)
        self.multiple = multiple

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        epoch, k = divmod(step, self.steps_per_epoch)
        idx = np.random.default_rng([self.seed, epoch]).permutation(self.n)[k * self.batch_size:
                                                                           (k + 1) * self.batch_size]
        batch = {key: v[idx] for key, v in self.arrays.items()}
        if self.trim_by:
            used = max(int(batch[m].any(axis=0).nonzero()[0].max()) + 1 for m in self.trim_by)
            width = -(-used // self.multiple) * self.multiple
            batch = {key: v[:, :width] if v.ndim == 2 else v for key, v in batch.items()}
        return batch
