"""An ARPA back-off language model read from its file (ours from ``KneserNeyLM.save_arpa``, KenLM's, SRILM's)
and scored the way those tools score text (Katz's back-off form, which an interpolated model written as
ARPA also takes):

    log10 p(w | h) = log10 p*(h w)                       if the n-gram ``h w`` is listed
                   = backoff(h) + log10 p(w | h[1:])     otherwise (backoff(h) = 0 when h is not listed)

A sentence is scored as ``<s> w1 ... wn </s>``: every word and the ``</s>``, not the ``<s>``. A word not
among the unigrams is scored as ``<unk>`` (and counted), or refused when the model has no ``<unk>``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

BOS, EOS, UNK = "<s>", "</s>", "<unk>"


class ArpaLM:
    def __init__(self, probs: dict[tuple[str, ...], float], backoffs: dict[tuple[str, ...], float], order: int):
        self.probs, self.backoffs, self.order = probs, backoffs, order

    @classmethod
    def load(cls, path: str | Path) -> ArpaLM:
        """Parse ``path``; a malformed line is named by file and line number."""
        probs: dict[tuple[str, ...], float] = {}
        backoffs: dict[tuple[str, ...], float] = {}
        declared: dict[int, int] = {}
        n = 0  # the section being read: 0 the header, k the k-grams
        with open(path, encoding="utf-8") as f:
            for number, raw in enumerate(f, start=1):
                line = raw.strip()
                if not line or line == "\\data\\":
                    continue
                if line == "\\end\\":
                    break
                if line.startswith("ngram "):
                    k, _, count = line[6:].partition("=")
                    declared[int(k)] = int(count)
                    continue
                if line.startswith("\\") and line.endswith("-grams:"):
                    n = int(line[1:line.index("-")])
                    continue
                fields = line.split()
                if n == 0 or len(fields) not in (n + 1, n + 2):
                    raise ValueError(f"{path}:{number}: expected a log10 probability, {n} words and an optional "
                                     f"back-off weight, got {line[:80]!r}")
                try:
                    gram = tuple(fields[1:n + 1])
                    probs[gram] = float(fields[0])
                    if len(fields) == n + 2:
                        backoffs[gram] = float(fields[-1])
                except ValueError:
                    raise ValueError(f"{path}:{number}: not a number in {line[:80]!r}") from None
        if not probs:
            raise ValueError(f"{path}: no n-grams: not an ARPA file")
        counted = {k: sum(len(g) == k for g in probs) for k in declared}
        wrong = {k: (declared[k], counted[k]) for k in declared if declared[k] != counted[k]}
        if wrong:
            raise ValueError(f"{path}: the header's n-gram counts differ from the file's (declared, read): {wrong}")
        return cls(probs, backoffs, max(len(g) for g in probs))

    def log10_prob(self, word: str, history: tuple[str, ...]) -> float:
        """log10 p(word | history), backing off to shorter histories (the history's last order - 1 words)."""
        history = history[max(0, len(history) - self.order + 1):] if self.order > 1 else ()
        penalty = 0.0
        while True:
            gram = (*history, word)
            if gram in self.probs:
                return penalty + self.probs[gram]
            if not history:
                raise KeyError(f"{word!r} is not a unigram of the model")
            penalty += self.backoffs.get(history, 0.0)
            history = history[1:]

    def score_sentence(self, words: list[str]) -> tuple[list[float], int]:
        """(log10 p of each word and of </s>, how many words were scored as <unk>)."""
        has_unk, unknown, out = (UNK,) in self.probs, 0, []
        history: tuple[str, ...] = (BOS,)
        for w in [*words, EOS]:
            if (w,) not in self.probs:
                if not has_unk:
                    raise KeyError(f"{w!r} is not in the model's vocabulary, which has no {UNK}")
                w, unknown = UNK, unknown + 1
            out.append(self.log10_prob(w, history))
            history = (*history, w)[-(self.order - 1):] if self.order > 1 else ()
        return out, unknown

    def perplexity(self, sentences: Iterable[list[str]]) -> dict:
        """Perplexity over ``sentences`` (each token and each sentence's </s>), as ``nlp-jax ngram --eval``
        and KenLM's ``query`` report it, with the log10 probability of the whole text."""
        total, tokens, unknown = 0.0, 0, 0
        for words in sentences:
            logs, unk = self.score_sentence(words)
            total, tokens, unknown = total + sum(logs), tokens + len(logs), unknown + unk
        if tokens == 0:
            raise ValueError("no sentences to score")
        return {"perplexity": 10 ** (-total / tokens), "log10_prob": total, "tokens": tokens,
                "unknown_words": unknown, "loss": -total * math.log(10) / tokens}
