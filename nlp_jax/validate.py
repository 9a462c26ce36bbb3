"""Range checks for config dataclasses, run in ``__post_init__`` so a bad value (from code or from
``--set``) fails at once, before any work, naming the field, the rule and the value. A leaf module:
every layer may use it."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any


def check_fields(cfg: Any, **rules: tuple[Callable[[Any], bool], str]) -> None:
    """Range-check fields at construction (and so at every ``--set``): ``rules`` maps a field name to
    (predicate, what it must be); a failure names the field, the rule and the value."""
    for name, (ok, what) in rules.items():
        value = getattr(cfg, name)
        if not ok(value):
            raise ValueError(f"{type(cfg).__name__}.{name} must be {what}, got {value!r}")


def _finite(v) -> bool:
    return not isinstance(v, float) or math.isfinite(v)


def at_least(n) -> tuple[Callable[[Any], bool], str]:
    """A finite number >= n (an infinite learning rate, say, is no setting at all)."""
    return (lambda v: v >= n and _finite(v)), f"finite and >= {n}" if isinstance(n, float) else f">= {n}"


def positive() -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v > 0 and _finite(v)), "> 0 and finite"


def optional(rule: tuple[Callable[[Any], bool], str]) -> tuple[Callable[[Any], bool], str]:
    """``rule``, or None (a field left unset, its value taken from elsewhere)."""
    ok, what = rule
    return (lambda v: v is None or ok(v)), f"{what} (or None)"


def one_of(*choices) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v in choices), "one of " + ", ".join(map(repr, choices))


COMPUTE_DTYPES = ("float32", "bfloat16")  # a model's matmul dtype (parameters, optimizer state stay float32)


def in_unit() -> tuple[Callable[[Any], bool], str]:
    """A probability that must leave something: dropout rates, Adam's betas."""
    return (lambda v: 0.0 <= v < 1.0), "in [0, 1)"


def check_ids(ids, vocab_size: int, what: str = "ids"):
    """``ids`` as an integer array whose every value is in [0, vocab_size); the error names ``what``,
    the offending range and where the first bad id sits, so no id silently becomes another one."""
    import numpy as np

    arr = np.asarray(ids)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{what} must be integer token ids, got dtype {arr.dtype}")
    bad = (arr < 0) | (arr >= vocab_size)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{what} must be in [0, {vocab_size}), got ids from {arr.min()} to {arr.max()} "
                         f"(first bad id {arr[first]} at index {first if arr.ndim > 1 else first[0]})")
    return arr
