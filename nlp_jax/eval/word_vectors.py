"""Evaluating word vectors: analogies (3CosAdd, 3CosMul), word-similarity correlation, neighbours.

Protocol as gensim's ``KeyedVectors.evaluate_word_analogies`` / ``evaluate_word_pairs``, so numbers are
comparable: case-insensitive (a word maps to its most frequent casing), only the ``restrict_vocab`` most
frequent words are candidates, a question with any word outside them is skipped and counted (coverage),
the three question words are never the answer, and pair correlations skip out-of-vocabulary pairs.

3CosAdd (Mikolov et al. 2013): argmax_d cos(d, b) - cos(d, a) + cos(d, c).
3CosMul (Levy & Goldberg 2014): argmax_d cos'(d, b) cos'(d, c) / (cos'(d, a) + 1e-6), cos' = (cos + 1) / 2.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from nlp_jax.models.word_vectors import WordVectors


def read_analogies(path: str | Path) -> list[tuple[str, list[tuple[str, str, str, str]]]]:
    """Sections of word2vec's analogy file: ``: name`` lines, then ``a b c d`` lines."""
    sections, current = [], None
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith(":"):
            current = (line[1:].strip(), [])
            sections.append(current)
        elif line.strip():
            words = line.lower().split()
            if len(words) != 4 or current is None:
                why = "before any ': section' line" if current is None else f"{len(words)} words, expected 4"
                raise ValueError(f"{path}: line {number} is not an analogy ({why}): {line[:80]!r}")
            current[1].append(tuple(words))
    return sections


@jax.jit
def _answers(unit: jax.Array, a: jax.Array, b: jax.Array, c: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Best candidate by 3CosAdd and by 3CosMul for a batch of questions (ids into ``unit``)."""
    ca, cb, cc = unit[a] @ unit.T, unit[b] @ unit.T, unit[c] @ unit.T  # (Q, V) cosines
    banned = jnp.zeros_like(ca, bool)
    rows = jnp.arange(a.shape[0])
    banned = banned.at[rows, a].set(True).at[rows, b].set(True).at[rows, c].set(True)
    add = jnp.where(banned, -jnp.inf, cb - ca + cc)
    mul = jnp.where(banned, -jnp.inf, ((cb + 1) / 2) * ((cc + 1) / 2) / ((ca + 1) / 2 + 1e-6))
    return jnp.argmax(add, axis=1), jnp.argmax(mul, axis=1)


def evaluate_analogies(wv: WordVectors, path: str | Path, *, restrict_vocab: int = 300_000,
                       batch: int = 512, semantic_sections: int = 5) -> dict:
    """Accuracy (3CosAdd and 3CosMul) per section, semantic / syntactic / total, with coverage."""
    n = min(restrict_vocab, len(wv.words))
    unit = jnp.asarray(wv.unit[:n])
    index = {w: i for w, i in wv.index.items() if i < n}
    out, totals = {"sections": {}}, {}
    for s, (name, questions) in enumerate(read_analogies(path)):
        known = [q for q in questions if all(w in index for w in q)]
        correct_add = correct_mul = 0
        for start in range(0, len(known), batch):
            ids = np.array([[index[w] for w in q] for q in known[start:start + batch]])
            add, mul = _answers(unit, *(jnp.asarray(ids[:, j]) for j in range(3)))
            correct_add += int((np.asarray(add) == ids[:, 3]).sum())
            correct_mul += int((np.asarray(mul) == ids[:, 3]).sum())
        group = "semantic" if s < semantic_sections else "syntactic"
        stats = np.array([correct_add, correct_mul, len(known), len(questions)])
        out["sections"][name] = _summary(stats)
        for key in (group, "total"):
            totals[key] = totals.get(key, 0) + stats
    out.update({k: _summary(v) for k, v in totals.items()})
    return out


def _summary(stats: np.ndarray) -> dict:
    add, mul, answered, asked = (int(x) for x in stats)
    return {"3cosadd": add / answered if answered else 0.0, "3cosmul": mul / answered if answered else 0.0,
            "answered": answered, "questions": asked, "coverage": answered / asked if asked else 0.0}


def rank_average(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (as Spearman's rho needs)."""
    x = np.asarray(x)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    sorted_x = x[order]
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + e + 1) / 2.0  # mean of ranks s+1 .. e
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.corrcoef(rank_average(x), rank_average(y))[0, 1])


def evaluate_word_pairs(wv: WordVectors, path: str | Path, *, restrict_vocab: int = 300_000) -> dict:
    """Spearman and Pearson correlation of cosine similarity with human scores; OOV pairs skipped."""
    n = min(restrict_vocab, len(wv.words))
    human, model, pairs = [], [], 0
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.lower().split("\t")
        try:
            a, b, score = fields[0], fields[1], float(fields[2])
        except (IndexError, ValueError):
            raise ValueError(f"{path}: line {number} is not 'word<TAB>word<TAB>score': {line[:80]!r}") from None
        pairs += 1
        ia, ib = wv.index.get(a, n), wv.index.get(b, n)
        if ia < n and ib < n:
            human.append(score)
            model.append(float(wv.unit[ia] @ wv.unit[ib]))
    if len(human) < 2:
        raise ValueError(f"{path}: only {len(human)} of {pairs} pairs have both words in the vocabulary; a "
                         "correlation needs at least 2")
    return {"spearman": spearman(np.array(human), np.array(model)),
            "pearson": float(np.corrcoef(human, model)[0, 1]), "pairs": pairs,
            "oov_ratio": 1.0 - len(human) / pairs if pairs else 0.0}
