"""Counting language models: interpolated modified Kneser-Ney (Chen & Goodman 1999), MLE and add-k.

Interpolated modified KN, as KenLM's ``lmplz`` builds it (no pruning):

    p_n(w | h) = max(a(hw) - D_n(a(hw)), 0) / sum_v a(hv)  +  gamma(h) p_{n-1}(w | h')
    gamma(h)   = (D_n1 N1(h.) + D_n2 N2(h.) + D_n3+ N3+(h.)) / sum_v a(hv)

where h' drops the oldest word of h; a(.) is the raw count at the highest order and the number of
distinct left extensions (the continuation count) below it, except for n-grams that start with <s>,
which keep their raw count; N_k(h.) counts the words v with a(hv) = k (3 or more for N3+). The three
discounts of each order come from its count-of-counts t_k of adjusted counts:
Y = t1 / (t1 + 2 t2),  D_k = k - (k + 1) Y t_{k+1} / t_k.  The unigram level interpolates with the
uniform distribution over the vocabulary; a context never seen at order n passes p_{n-1} through.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nlp_jax.ops.ngram import Level, count_ngrams, lookup, window_ids


@dataclass
class _Order:
    adjusted: np.ndarray  # a(g) for every n-gram of this order
    discounts: np.ndarray  # (4,) D(0)=0, D1, D2, D3+
    denom: np.ndarray  # per context id (order n-1): sum_v a(hv)
    gamma: np.ndarray  # per context id: backoff mass


def _ending_at(stream: np.ndarray, levels: list[Level], vocab: int, positions: np.ndarray, n: int) -> np.ndarray:
    """Id at order n of the n-gram that ends at each of ``positions`` (-1 if unseen or it would start
    before the stream)."""
    start = positions - n + 1
    ids = window_ids(stream, levels, vocab, n)
    return np.where(start >= 0, ids[np.maximum(start, 0)], -1)


FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)  # KenLM's --discount_fallback values


def _discounts(adjusted: np.ndarray) -> np.ndarray:
    """(0, D1, D2, D3+) from the count-of-counts t1..t4; where they are degenerate (a tiny corpus or a
    tiny vocabulary: some t_k = 0, or a D_k outside [0, k]), KenLM's fallback discounts."""
    t = np.bincount(np.minimum(adjusted, 5).astype(np.int64), minlength=6)[1:5].astype(np.float64)  # t1..t4
    if np.all(t > 0):
        y = t[0] / (t[0] + 2 * t[1])
        d = np.array([k - (k + 1) * y * t[k] / t[k - 1] for k in (1, 2, 3)])
        if np.all((d >= 0) & (d <= np.array([1, 2, 3]))):
            return np.concatenate([[0.0], d])
    return np.array([0.0, *FALLBACK_DISCOUNTS])


def check_stream(stream: np.ndarray, order: int, vocab_size: int) -> np.ndarray:
    """A non-empty 1-D stream of ids in [0, vocab_size) and an order >= 1, else a ValueError that says which."""
    stream = np.asarray(stream)
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    if stream.ndim != 1 or stream.size == 0:
        raise ValueError(f"the training stream must be a non-empty 1-D array of ids, got shape {stream.shape}")
    lo, hi = int(stream.min()), int(stream.max())
    if lo < 0 or hi >= vocab_size:
        raise ValueError(f"stream ids must be in [0, vocab_size={vocab_size}), got ids from {lo} to {hi}")
    return stream


class KneserNeyLM:
    def __init__(self, stream: np.ndarray, *, order: int, vocab_size: int, bos: int, eos: int):
        """``stream``: training sentences laid out as ``<s> w ... </s> <s> ...`` (ids < vocab_size)."""
        stream = check_stream(stream, order, vocab_size)
        self.order, self.vocab, self.bos, self.eos = order, vocab_size, bos, eos
        self.levels: list[Level] = count_ngrams(stream, order, vocab_size, bos, eos)
        self.orders: list[_Order] = []
        for n, level in enumerate(self.levels, start=1):
            if n < order:
                adjusted = np.bincount(self.levels[n].suffix, minlength=len(level.keys))
                adjusted = np.where(level.first == bos, level.counts, adjusted)
            else:
                adjusted = level.counts.copy()
            if n == 1:
                adjusted = np.where(level.keys == bos, 0, adjusted)  # <s> is never predicted
            d = _discounts(adjusted[adjusted > 0])
            n_ctx = 1 if n == 1 else len(self.levels[n - 2].keys)
            ctx = np.zeros(len(level.keys), np.int64) if n == 1 else level.prefix
            denom = np.bincount(ctx, weights=adjusted, minlength=n_ctx)
            mass = np.bincount(ctx, weights=d[np.minimum(adjusted, 3)] * (adjusted > 0), minlength=n_ctx)
            gamma = np.divide(mass, denom, out=np.zeros_like(mass), where=denom > 0)
            self.orders.append(_Order(adjusted, d, denom, gamma))
        self.n_uniform = vocab_size - 1  # every id but <s>

    def _level_prob(self, n: int, ctx: np.ndarray, gram: np.ndarray, lower: np.ndarray) -> np.ndarray:
        """p_n for arrays of context ids (order n-1; -1 unseen) and n-gram ids (-1 unseen)."""
        o = self.orders[n - 1]
        a = np.where(gram >= 0, o.adjusted[np.maximum(gram, 0)], 0)
        seen = ctx >= 0
        c = np.maximum(ctx, 0)
        denom = np.where(seen, o.denom[c], 0.0)
        seen &= denom > 0
        safe = np.where(seen, denom, 1.0)
        own = np.maximum(a - o.discounts[np.minimum(a, 3)], 0) / safe
        return np.where(seen, own + o.gamma[c] * lower, lower)

    def token_log_probs(self, stream: np.ndarray) -> np.ndarray:
        """Natural-log probability of every token of ``stream`` (same layout as training) but the <s>."""
        stream = np.asarray(stream, np.int64)
        predicted = np.flatnonzero(stream != self.bos)
        prob = np.full(len(predicted), 1.0 / self.n_uniform)
        zeros = np.zeros(len(predicted), np.int64)
        prob = self._level_prob(1, zeros, lookup(self.levels[0], stream[predicted]), prob)
        for n in range(2, self.order + 1):
            ctx = _ending_at(stream, self.levels, self.vocab, predicted - 1, n - 1)  # the n-1 words before
            gram = _ending_at(stream, self.levels, self.vocab, predicted, n)
            prob = self._level_prob(n, ctx, gram, prob)
        return np.log(prob)

    def next_token_probs(self, context: list[int]) -> np.ndarray:
        """(V,) p(w | context) for every id w (0 for <s>); ``context`` holds the preceding ids."""
        words = np.arange(self.vocab, dtype=np.int64)
        prob = np.full(self.vocab, 1.0 / self.n_uniform)
        prob = self._level_prob(1, np.zeros(self.vocab, np.int64), lookup(self.levels[0], words), prob)
        for n in range(2, self.order + 1):
            h = context[len(context) - (n - 1):] if len(context) >= n - 1 else None
            ctx = -1
            if h is not None:
                ctx_ids = window_ids(np.asarray(h, np.int64), self.levels, self.vocab, n - 1)
                ctx = int(ctx_ids[0])
            gram = lookup(self.levels[n - 1], ctx * self.vocab + words) if ctx >= 0 else np.full(self.vocab, -1)
            prob = self._level_prob(n, np.full(self.vocab, ctx), gram, prob)
        return np.where(words == self.bos, 0.0, prob)


    def save_arpa(self, path: str | Path, words: list[str]) -> Path:
        """The model as an ARPA file (``words[i]`` spells id i; the <s> and </s> ids are written as they are
        spelt there): every n-gram seen in training with its interpolated log10 p_n(w | h), and each context's
        log10 gamma(h) as its backoff weight, which is exactly how the interpolated model backs off (an unseen
        n-gram gets gamma(h) p_{n-1}(w | h')). Every word of the vocabulary is a unigram (one never seen gets
        the uniform share, <s> the conventional -99). A backoff-model reader (KenLM's, SRILM's) then scores
        any text as ``token_log_probs`` does, in base 10."""
        if len(words) != self.vocab or any(not w or any(c.isspace() for c in w) for w in words):
            raise ValueError(f"words must spell the {self.vocab} ids, each non-empty and without whitespace")
        # interpolated p_n of every n-gram, order by order
        probs: list[np.ndarray] = []
        for n, level in enumerate(self.levels, start=1):
            ctx = np.zeros(len(level.keys), np.int64) if n == 1 else level.prefix
            lower = (np.full(len(level.keys), 1.0 / self.n_uniform) if n == 1 else probs[-1][level.suffix])
            probs.append(self._level_prob(n, ctx, np.arange(len(level.keys)), lower))
        unigram = np.full(self.vocab, self.orders[0].gamma[0] / self.n_uniform)  # (the uniform share alone)
        unigram[self.levels[0].keys] = probs[0]
        unigram[self.bos] = 0.0
        spelt = [np.asarray(words, object)[self.levels[0].keys]]
        for level in self.levels[1:]:
            spelt.append(np.array([f"{a} {words[k % self.vocab]}" for a, k in zip(spelt[-1][level.prefix],
                                                                                  level.keys)], object))
        sizes = [self.vocab] + [len(level.keys) for level in self.levels[1:]]
        with open(path, "w", encoding="utf-8") as f:
            f.write("\\data\\\n" + "".join(f"ngram {n}={m}\n" for n, m in enumerate(sizes, start=1)))
            for n in range(1, self.order + 1):
                f.write(f"\n\\{n}-grams:\n")
                if n == 1:
                    names, logp = words, np.where(unigram > 0, np.log10(np.maximum(unigram, 1e-300)), -99.0)
                    ids = np.full(self.vocab, -1, np.int64)
                    ids[self.levels[0].keys] = np.arange(len(self.levels[0].keys))
                else:
                    names, logp, ids = spelt[n - 1], np.log10(probs[n - 1]), np.arange(len(self.levels[n - 1].keys))
                backoff = None
                if n < self.order:
                    o = self.orders[n]  # order n + 1: gamma per context id (an order-n n-gram)
                    backoff = np.where(ids >= 0, o.gamma[np.maximum(ids, 0)], 0.0)
                    backoff = np.where(np.where(ids >= 0, o.denom[np.maximum(ids, 0)], 0.0) > 0, backoff, 1.0)
                for i, name in enumerate(names):
                    line = f"{logp[i]:.10g}\t{name}"
                    if backoff is not None and backoff[i] != 1.0:
                        line += f"\t{np.log10(backoff[i]):.10g}" if backoff[i] > 0 else "\t-99"
                    f.write(line + "\n")
            f.write("\n\\end\\\n")
        return Path(path)


class AddKLM:
    """``p(w | h) = (c(hw) + k) / (c(h.) + k V)`` on the full (n-1)-word context; k = 0 is the MLE
    (zero for unseen n-grams, undefined for unseen contexts, where this returns the uniform 1/V)."""

    def __init__(self, stream: np.ndarray, *, order: int, vocab_size: int, bos: int, eos: int, k: float = 1.0):
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        stream = check_stream(stream, order, vocab_size)
        self.order, self.vocab, self.bos, self.k = order, vocab_size, bos, k
        self.levels = count_ngrams(stream, order, vocab_size, bos, eos)
        top = self.levels[-1]
        n_ctx = 1 if order == 1 else len(self.levels[-2].keys)
        ctx = np.zeros(len(top.keys), np.int64) if order == 1 else top.prefix
        self.context_counts = np.bincount(ctx, weights=top.counts, minlength=n_ctx)
        self.n_outcomes = vocab_size - 1  # every id but <s>

    def token_log_probs(self, stream: np.ndarray) -> np.ndarray:
        stream = np.asarray(stream, np.int64)
        predicted = np.flatnonzero(stream != self.bos)
        gram = _ending_at(stream, self.levels, self.vocab, predicted, self.order)
        if self.order == 1:
            ctx = np.zeros(len(predicted), np.int64)
        else:
            ctx = _ending_at(stream, self.levels, self.vocab, predicted - 1, self.order - 1)
        c_hw = np.where(gram >= 0, self.levels[-1].counts[np.maximum(gram, 0)], 0)
        c_h = np.where(ctx >= 0, self.context_counts[np.maximum(ctx, 0)], 0)
        denom = c_h + self.k * self.n_outcomes
        with np.errstate(divide="ignore"):
            return np.where(denom > 0, np.log((c_hw + self.k) / np.where(denom > 0, denom, 1.0)),
                            -np.log(self.n_outcomes))
