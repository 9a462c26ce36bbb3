"""A verifiable-reward task generated here: multi-digit addition, ``a + b`` with both operands of ``digits``
digits, written with leading zeros so every prompt and every answer has one length::

    prompt  "042+317="      (2 d + 2 tokens)
    answer  "0359" <eos>    (d + 1 digits and the end token)

A completion earns reward 1 when it is exactly the answer's digits followed by ``<eos>``, else 0
(:func:`exact_match`: a program that reads the problem from the prompt's own tokens, so any policy-sampling
trainer can call it as ``reward(tokens, mask)``). Fixed lengths keep the prompts unpadded: the SFT sequences,
the sampler's prompts and the trainers' rollouts place every token at the same position. The held-out
problems are drawn first and never appear among the training problems (:func:`split`).

Ids: ``0`` padding, ``1`` end, ``2`` '+', ``3`` '=', ``4 + k`` the digit k (``VOCAB`` = 14)."""

from __future__ import annotations

import numpy as np

PAD, EOS, PLUS, EQUALS, DIGIT0 = 0, 1, 2, 3, 4
VOCAB = DIGIT0 + 10
_CHARS = {PAD: "_", EOS: "$", PLUS: "+", EQUALS: "=", **{DIGIT0 + k: str(k) for k in range(10)}}


def _check_digits(digits: int) -> None:
    if not 1 <= digits <= 9:
        raise ValueError(f"digits must be in [1, 9] (operands below 10**digits), got {digits}")


def split(digits: int, train: int, held_out: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train (N, 2), held_out (M, 2)) operand pairs, each pair once, the two sets disjoint; the held-out set
    is drawn first, so it depends only on (digits, held_out, seed), never on how many training problems
    are asked for."""
    _check_digits(digits)
    space = 10 ** (2 * digits)
    if train < 0 or held_out < 0 or train + held_out > space:
        raise ValueError(f"train={train} + held_out={held_out} problems must be >= 0 and at most the "
                         f"{space} pairs of {digits}-digit operands")
    rng = np.random.default_rng(seed)
    codes = np.zeros(0, np.int64)
    for want in (held_out, held_out + train):
        while len(codes) < want:
            fresh = rng.integers(0, space, 2 * (want - len(codes)) + 16)
            fresh = fresh[~np.isin(fresh, codes)]
            _, first = np.unique(fresh, return_index=True)  # keep the draw order of the new distinct codes
            codes = np.concatenate([codes, fresh[np.sort(first)][:want - len(codes)]])
    pairs = np.stack(np.divmod(codes, 10 ** digits), axis=1)
    return pairs[held_out:], pairs[:held_out]


def _digits_of(values: np.ndarray, width: int) -> np.ndarray:
    """(N, width) the decimal digits of each value, most significant first, with leading zeros."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (np.asarray(values, np.int64)[:, None] // powers) % 10


def prompt_length(digits: int) -> int:
    return 2 * digits + 2


def encode_prompts(pairs: np.ndarray, digits: int) -> np.ndarray:
    """(N, 2 d + 2) int32: ``a + b =`` of each operand pair (N, 2)."""
    _check_digits(digits)
    pairs = np.asarray(pairs, np.int64)
    if pairs.ndim != 2 or pairs.shape[1] != 2 or (pairs < 0).any() or (pairs >= 10 ** digits).any():
        raise ValueError(f"pairs must be (N, 2) operands in [0, {10 ** digits}), got shape {pairs.shape}")
    n = len(pairs)
    return np.concatenate([_digits_of(pairs[:, 0], digits) + DIGIT0, np.full((n, 1), PLUS),
                           _digits_of(pairs[:, 1], digits) + DIGIT0, np.full((n, 1), EQUALS)], 1).astype(np.int32)


def encode_answers(pairs: np.ndarray, digits: int) -> np.ndarray:
    """(N, d + 2) int32: the d + 1 digits of each sum and ``<eos>``."""
    total = np.asarray(pairs, np.int64).sum(1)
    return np.concatenate([_digits_of(total, digits + 1) + DIGIT0, np.full((len(total), 1), EOS)], 1).astype(np.int32)


def sft_arrays(pairs: np.ndarray, digits: int) -> dict[str, np.ndarray]:
    """Next-token arrays of prompt + answer (``lm_loss``'s ``inputs``/``targets``), the loss ``mask`` on the
    answer's tokens only (the prompt is given, never predicted)."""
    full = np.concatenate([encode_prompts(pairs, digits), encode_answers(pairs, digits)], 1)
    mask = np.zeros(full[:, 1:].shape, bool)
    mask[:, prompt_length(digits) - 1:] = True
    return {"inputs": full[:, :-1], "targets": full[:, 1:], "mask": mask}


def exact_match(tokens: np.ndarray, mask: np.ndarray | None, digits: int) -> np.ndarray:
    """(B,) float32: 1 where the completion after the prompt (``tokens`` (B, 2 d + 2 + N), N >= d + 2) is
    exactly the sum's d + 1 digits then ``<eos>``, else 0. The problem is read from the prompt's tokens;
    ``mask`` (the real tokens) must cover the d + 2 answer tokens, so a completion cut short scores 0."""
    tokens = np.asarray(tokens)
    p, a = prompt_length(digits), digits + 2
    if tokens.ndim != 2 or tokens.shape[1] < p + a:
        raise ValueError(f"tokens must be (B, >= {p + a}) prompts of {p} tokens and completions, got shape "
                         f"{tokens.shape}")
    operands = [(tokens[:, s:s + digits] - DIGIT0).astype(np.int64) @ 10 ** np.arange(digits - 1, -1, -1)
                for s in (0, digits + 1)]
    wanted = encode_answers(np.stack(operands, 1), digits)
    right = (tokens[:, p:p + a] == wanted).all(1)
    if mask is not None:
        right &= np.asarray(mask, bool)[:, p:p + a].all(1)
    return right.astype(np.float32)


def decode(row: np.ndarray) -> str:
    """A row of ids as text (``_`` padding, ``$`` end), for reading samples."""
    return "".join(_CHARS.get(int(t), "?") for t in row)
