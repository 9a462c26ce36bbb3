"""Anthropic's HH-RLHF harmless-base test split (2,312 human preference pairs between two assistant
replies to the same dialogue), as (prompt, chosen, rejected) texts with a seeded train / held-out split.

The prompt is the chosen dialogue up to and including its last ``"\\n\\nAssistant:"``; the responses are
what follows it on each side. A pair is left out (and counted) when the rejected dialogue does not start
with that prompt, or when a reply is empty or both are the same: 8 of the 2,312. The split is drawn over
all 2,312 pairs (2,000 / 312 by default), so it does not depend on this rule.
"""

from __future__ import annotations

import gzip
import json

import numpy as np

from nlp_jax.data.root import resolve

FILE = "hh_rlhf/harmless-base_test.jsonl.gz"
TURN = "\n\nAssistant:"


def split_dialogue(chosen: str, rejected: str) -> tuple[str, str, str] | None:
    """(prompt, chosen reply, rejected reply), or None when the dialogues share no prompt or the replies
    are the same."""
    cut = chosen.rfind(TURN) + len(TURN)
    if cut < len(TURN) or rejected[:cut] != chosen[:cut]:
        return None
    c, r = chosen[cut:], rejected[cut:]
    return (chosen[:cut], c, r) if c.strip() and r.strip() and c != r else None


def read_hh_rlhf() -> list[tuple[str, str, str] | None]:
    """Every pair in file order as (prompt, chosen, rejected), or None where it is left out."""
    path = resolve(FILE)
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not gzipped JSON lines of chosen/rejected dialogues ({err})") from None
    return [split_dialogue(row["chosen"], row["rejected"]) for row in rows]


def hh_split(n_train: int = 2000, seed: int = 0) -> tuple[list, list, int]:
    """(train, held-out, left out): a seeded permutation of all pairs, the first ``n_train`` to train;
    each part keeps its usable pairs, and the number left out of both is returned."""
    triples = read_hh_rlhf()
    if not 0 < n_train < len(triples):
        raise ValueError(f"n_train must be in (0, {len(triples)}), got {n_train}")
    order = np.random.default_rng(seed).permutation(len(triples))
    parts = [[triples[i] for i in idx if triples[i] is not None] for idx in (order[:n_train], order[n_train:])]
    return parts[0], parts[1], sum(t is None for t in triples)
