"""Preference pairs as arrays: (prompt, chosen, rejected) texts tokenised into right-padded prompt +
response rows with attention and response masks (batch them with ``data.corpus.ShuffledBatches``).

Truncation (stated, as a user must know what the model saw): the prompt keeps its last
``max_prompt_length`` tokens (the end of a dialogue is what the response answers), after ``bos_id`` if
given; the response keeps its first ``max_length - len(prompt)`` tokens. A pair whose response is empty,
or whose chosen and rejected rows are identical after truncation, carries no preference: it is an error
naming the pair, or dropped and counted with ``drop_invalid=True``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def _row(prompt: list[int], response: list[int], max_length: int) -> tuple[list[int], int]:
    response = response[:max_length - len(prompt)]
    return prompt + response, len(prompt)


def encode_pairs(encode: Callable[[str], list[int]], prompts: Sequence[str], chosen: Sequence[str],
                 rejected: Sequence[str], *, max_length: int, max_prompt_length: int, pad_id: int = 0,
                 bos_id: int | None = None, drop_invalid: bool = False, allow_equal: bool = False
                 ) -> tuple[dict[str, np.ndarray], list[int]]:
    """({'chosen', 'chosen_mask', 'chosen_response', 'rejected', ...} (N, T) arrays, dropped indices);
    ``allow_equal`` keeps pairs whose two rows are the same (:func:`encode_unpaired`'s KL rows).

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
                   else "identical chosen and rejected responses" if c_row[0] == r_row[0] and not allow_equal
                   else None)
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


def encode_unpaired(encode: Callable[[str], list[int]], prompts: Sequence[str], completions: Sequence[str],
                    labels: Sequence[bool], *, max_length: int, max_prompt_length: int, pad_id: int = 0,
                    bos_id: int | None = None, drop_invalid: bool = False) -> tuple[dict[str, np.ndarray], list[int]]:
    """KTO's examples, each a (prompt, completion) labelled desirable or not, with no pairing:
    ({'completion', 'completion_mask', 'completion_response', 'desirable', 'kl', 'kl_mask', 'kl_response'},
    dropped indices). The ``kl`` rows put each prompt before the next example's completion (the last before
    the first), a completion that does not answer it: KTO's batch estimate of KL(pi || pi_ref) is read from
    them (TRL mismatches within each batch; here within the data set). Rows, truncation and padding as
    :func:`encode_pairs` (a prompt leaves room for one completion token at least); an empty completion is an
    error naming the example (or dropped and counted with ``drop_invalid=True``); both labels must occur."""
    if not len(prompts) == len(completions) == len(labels):
        raise ValueError(f"prompts, completions and labels differ in length: {len(prompts)}, {len(completions)}, "
                         f"{len(labels)}")
    empty = [i for i, c in enumerate(completions) if not encode(c)]
    if empty and not drop_invalid:
        raise ValueError(f"example {empty[0]} has an empty completion; it teaches nothing: fix the data or pass "
                         "drop_invalid=True")
    gone = set(empty)
    keep = [i for i in range(len(prompts)) if i not in gone]
    if len(keep) < 2:
        raise ValueError(f"KTO needs at least 2 examples (the KL rows pair each prompt with another's "
                         f"completion), got {len(keep)}")
    desirable = np.array([bool(labels[i]) for i in keep])
    if desirable.all() or not desirable.any():
        raise ValueError(f"KTO needs desirable and undesirable examples both; every label here is {desirable[0]}")
    shifted = keep[1:] + keep[:1]
    pairs, _ = encode_pairs(encode, [prompts[i] for i in keep], [completions[i] for i in keep],
                            [completions[j] for j in shifted], max_length=max_length,
                            max_prompt_length=max_prompt_length, pad_id=pad_id, bos_id=bos_id, allow_equal=True)
    out = {f"{new}{suffix}": pairs[f"{old}{suffix}"] for old, new in (("chosen", "completion"), ("rejected", "kl"))
           for suffix in ("", "_mask", "_response")}
    return {**out, "desirable": desirable}, empty


def unpaired_from_pairs(pairs: dict[str, np.ndarray], seed: int = 0) -> dict[str, np.ndarray]:
    """KTO's examples from sampled pairs (:func:`pairs_from_samples`' rows: the sampler's layout, every row its
    prompt's columns then its response's): each chosen completion desirable, each rejected one undesirable
    (2N examples, chosen first), and each example's ``kl`` row its prompt before the completion of another
    example, a seeded permutation's (a mismatched completion, for KTO's KL estimate; TRL makes unpaired data
    from paired the same way)."""
    tokens = np.concatenate([pairs["chosen"], pairs["rejected"]])
    mask = np.concatenate([pairs["chosen_mask"], pairs["rejected_mask"]]).astype(bool)
    response = np.concatenate([pairs["chosen_response"], pairs["rejected_response"]]).astype(bool)
    starts = np.argmax(response, axis=1)
    if not len(tokens) or not response.any(1).all() or (starts != starts[0]).any():
        raise ValueError("pairs must hold rows whose responses all start at one column (the sampler's layout: "
                         "a left-padded prompt, then the response), each with a response")
    t0, other = int(starts[0]), np.random.default_rng(seed).permutation(len(tokens))
    join = lambda a: np.concatenate([a[:, :t0], a[other, t0:]], axis=1)  # noqa: E731
    return {"completion": tokens, "completion_mask": mask, "completion_response": response, "kl": join(tokens),
            "kl_mask": join(mask), "kl_response": join(response),
            "desirable": np.arange(len(tokens)) < len(pairs["chosen"])}


def left_pad(rows: Sequence[Sequence[int]], pad_id: int = 0, width: int | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """(P, width) int32 rows right-aligned after ``pad_id`` padding (the sampler's prompt layout) and the
    mask of real tokens; ``width`` defaults to the longest row."""
    width = max((len(r) for r in rows), default=0) if width is None else width
    out, mask = np.full((len(rows), width), pad_id, np.int32), np.zeros((len(rows), width), bool)
    for i, r in enumerate(rows):
        if r:
            out[i, width - len(r):], mask[i, width - len(r):] = r, True
    return out, mask


def prompt_prefixes(sentences: Sequence[Sequence[int]], *, min_len: int = 2, max_len: int = 8, seed: int = 0,
                    bos_id: int | None = None, pad_id: int = 0, min_rest: int = 1,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prompts (P, max_len [+1 with BOS]) left-padded, their mask, the sentence index of each): each
    sentence's first k tokens, k drawn uniformly from [min_len, max_len] (seeded), after ``bos_id``; a
    sentence with fewer than k + ``min_rest`` tokens (nothing left to continue) is skipped."""
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}")
    lengths = np.random.default_rng(seed).integers(min_len, max_len + 1, len(sentences))
    head = [] if bos_id is None else [bos_id]
    width = max_len + len(head)
    rows, kept = [], []
    for i, (ids, k) in enumerate(zip(sentences, lengths)):
        if len(ids) >= k + min_rest:
            rows.append(head + list(ids[:k]))
            kept.append(i)
    return *left_pad(rows, pad_id, width), np.array(kept, np.int64)


def pairs_from_samples(drawn: dict[str, np.ndarray], scores: np.ndarray, n: int, min_gap: float = 0.0,
                       extremes: bool = False) -> dict[str, np.ndarray]:
    """Preference pairs in :func:`encode_pairs`' format, plus each side's score (``chosen_score``,
    ``rejected_score``), from ``n`` scored samples per prompt (rows prompt-major with ``tokens``, ``mask``
    and ``response``, as ``eval.rewards.draw`` returns them): every one of the n (n - 1) / 2 pairs of a
    prompt's samples, or with ``extremes`` only its best against its worst (the first of tied ones), the
    higher score chosen; a pair with identical responses, or whose scores differ by ``min_gap`` or less
    (by default: are equal), is dropped (it states no preference, or one too slight to trust)."""
    rows = len(drawn["tokens"])
    if rows % n or len(scores) != rows:
        raise ValueError(f"{rows} drawn rows and {len(scores)} scores do not make whole groups of n={n}")
    if not min_gap >= 0:
        raise ValueError(f"min_gap must be >= 0, got {min_gap}")
    if not np.isfinite(scores).all():  # a NaN compares false with everything: its pairs would vanish silently
        raise ValueError(f"{int((~np.isfinite(scores)).sum())} of {rows} scores are NaN or infinite: the judge that "
                         "scored the samples is at fault (its pairs would be dropped without a word)")
    starts = np.arange(0, rows, n)
    if extremes:
        grouped = np.asarray(scores).reshape(-1, n)
        a, b = starts + grouped.argmax(1), starts + grouped.argmin(1)
    else:
        first, second = np.triu_indices(n, k=1)
        a, b = (starts[:, None] + first).ravel(), (starts[:, None] + second).ravel()
    same = (drawn["tokens"][a] == drawn["tokens"][b]).all(1)
    keep = (np.abs(scores[a] - scores[b]) > min_gap) & ~same
    a, b = a[keep], b[keep]
    win = scores[a] > scores[b]
    return pairs_at(drawn, scores, np.where(win, a, b), np.where(win, b, a))


def pairs_at(drawn: dict[str, np.ndarray], scores: np.ndarray, chosen: np.ndarray,
             rejected: np.ndarray) -> dict[str, np.ndarray]:
    """The pairs (``chosen[i]``, ``rejected[i]``) of drawn rows, in :func:`pairs_from_samples`' format."""
    out = {}
    for side, idx in (("chosen", chosen), ("rejected", rejected)):
        out[side], out[f"{side}_mask"] = drawn["tokens"][idx], drawn["mask"][idx]
        out[f"{side}_response"] = drawn["response"][idx]
        out[f"{side}_score"] = np.asarray(scores[idx], np.float32)
    return out
