"""BLEU (Papineni et al. 2002) by ``sacrebleu`` (Post 2018), reported two ways:

- ``bleu``: cased, on detokenised text, sacrebleu's default 13a tokenisation: the comparable number, with
  its ``signature`` (``nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:...``);
- ``bleu_lc``: lower-cased and 13a-tokenised, the convention of most published Multi30k numbers (which
  lower-case and tokenise before scoring), with its signature.

``bleu_by_length`` splits the corpus by source length (in pieces or words) into buckets and scores each,
the shape of Bahdanau et al.'s Figure 2.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _check(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not len(references):
        raise ValueError("no sentences to score")


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> dict:
    """``{'bleu', 'signature', 'bleu_lc', 'signature_lc'}`` of one reference per hypothesis."""
    from sacrebleu.metrics import BLEU

    _check(hypotheses, references)
    out = {}
    for suffix, lowercase in (("", False), ("_lc", True)):
        metric = BLEU(lowercase=lowercase)
        score = metric.corpus_score(list(hypotheses), [list(references)])
        out[f"bleu{suffix}"] = float(score.score)
        out[f"signature{suffix}"] = str(metric.get_signature())
    return out


def bleu_by_length(hypotheses: Sequence[str], references: Sequence[str], source_lengths: Sequence[int],
                   edges: Sequence[int]) -> list[dict]:
    """One row per bucket ``edges[i] <= length < edges[i + 1]`` (the last bucket open above):
    ``{'from', 'to', 'sentences', 'bleu', 'bleu_lc'}``; an empty bucket is left out."""
    _check(hypotheses, references)
    lengths = np.asarray(source_lengths)
    if len(lengths) != len(references):
        raise ValueError(f"{len(lengths)} source lengths for {len(references)} sentences")
    bounds = list(edges) + [np.inf]
    rows = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        idx = np.flatnonzero((lengths >= lo) & (lengths < hi))
        if len(idx):
            scores = bleu([hypotheses[i] for i in idx], [references[i] for i in idx])
            rows.append({"from": int(lo), "to": None if hi == np.inf else int(hi), "sentences": len(idx),
                         "bleu": scores["bleu"], "bleu_lc": scores["bleu_lc"]})
    return rows
