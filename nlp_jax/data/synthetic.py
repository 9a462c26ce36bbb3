"""Synthetic token sources whose entropy rate is known exactly, for known-answer tests of language models.

An order-k Markov chain over V symbols: the next token depends on the previous k. Its entropy rate is
``H = sum_s pi(s) H(P(. | s))`` (nats/token) with pi the stationary distribution over the V^k contexts, so
the best achievable perplexity of any model on a long sample is ``exp(H)``.
"""

from __future__ import annotations

import numpy as np


class MarkovSource:
    def __init__(self, vocab_size: int, order: int = 1, *, concentration: float = 0.5, seed: int = 0):
        """Transition rows drawn from Dirichlet(concentration): small values give peaked, low-entropy chains."""
        if vocab_size < 2 or order < 1:
            raise ValueError(f"need vocab_size >= 2 and order >= 1, got {vocab_size}, {order}")
        self.vocab_size, self.order = vocab_size, order
        rng = np.random.default_rng(seed)
        self.n_contexts = vocab_size ** order
        self.transitions = rng.dirichlet(np.full(vocab_size, concentration), size=self.n_contexts)  # (V^k, V)

    def _next_context(self, context: np.ndarray, token: np.ndarray) -> np.ndarray:
        return (context * self.vocab_size + token) % self.n_contexts

    def stationary(self, iters: int = 5000, tol: float = 1e-13) -> np.ndarray:
        """Stationary distribution over contexts by power iteration."""
        pi = np.full(self.n_contexts, 1.0 / self.n_contexts)
        ctx = np.repeat(np.arange(self.n_contexts), self.vocab_size)
        nxt = self._next_context(ctx, np.tile(np.arange(self.vocab_size), self.n_contexts))
        for _ in range(iters):
            new = np.bincount(nxt, weights=(pi[:, None] * self.transitions).ravel(), minlength=self.n_contexts)
            if np.abs(new - pi).max() < tol:
                return new
            pi = new
        return pi

    def entropy_rate(self) -> float:
        """H in nats per token."""
        p = self.transitions
        row_entropy = -(p * np.log(np.where(p > 0, p, 1.0))).sum(-1)
        return float(self.stationary() @ row_entropy)

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """n tokens (int32), started from the stationary distribution."""
        rng = np.random.default_rng(seed)
        cdf = np.cumsum(self.transitions, axis=-1)
        context = rng.choice(self.n_contexts, p=self.stationary())
        out = np.empty(n, np.int32)
        u = rng.random(n)
        for i in range(n):
            tok = min(int(np.searchsorted(cdf[context], u[i], side="right")), self.vocab_size - 1)
            out[i] = tok
            context = (context * self.vocab_size + tok) % self.n_contexts
        return out

    def log_probs(self, tokens: np.ndarray) -> np.ndarray:
        """(N - k,) true ``log P(x_t | x_{t-k..t-1})`` for t = k .. N-1."""
        tokens = np.asarray(tokens, np.int64)
        context = np.zeros(len(tokens) - self.order + 1, np.int64)
        for j in range(self.order):
            context = context * self.vocab_size + tokens[j:len(tokens) - self.order + 1 + j]
        return np.log(self.transitions[context[:-1], tokens[self.order:]])
