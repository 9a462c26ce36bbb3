"""word2vec: skip-gram and CBOW with negative sampling, trained by sparse SGD (Mikolov et al. 2013).

The host (NumPy) draws each epoch's subsample and every centre's dynamic window and cuts the token
stream into chunks of ``chunk_words`` centres; one jitted call per chunk forms the examples, draws the
negatives and applies the sparse SGD updates on the device (``kernels.sgns_train``: the C++ kernel on
CPU, batched XLA updates elsewhere). Dispatch is asynchronous, so the host prepares the next chunk while
the device trains on this one.

Why not ``train.loop``: that loop takes dense gradients of a loss with Optax; word2vec's point is plain
SGD touching a few rows per example (the learning rate decays linearly to ``min_alpha`` over all words,
as in word2vec.c and gensim), so it keeps this small trainer of its own.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from nlp_jax.data.word2vec import IndexedCorpus, keep_probabilities, subsample
from nlp_jax.kernels import sgns_train
from nlp_jax.models.word_vectors import WordVectors
from nlp_jax.ops.sampling import alias_table


@dataclasses.dataclass(frozen=True, kw_only=True)
class Word2VecConfig:
    sg: bool = True  # skip-gram (True) or CBOW (False)
    vector_size: int = 100  # D
    window: int = 5  # maximum distance of a context word (the dynamic window samples 1..window)
    negative: int = 5  # k negatives per example
    sample: float = 1e-4  # subsampling threshold t (0: off)
    epochs: int = 5
    alpha: float = 0.025  # initial learning rate
    min_alpha: float = 1e-4  # final learning rate (linear decay over all epochs)
    chunk_words: int = 1 << 16  # centre words per jitted call
    batch: int = 4096  # examples (skip-gram pairs, CBOW windows) per SGD step on the 'xla' path
    noise_power: float = 0.75  # negatives ~ count**noise_power
    init_range: float = 1.0  # input vectors start uniform in [-init_range, init_range) / D (gensim: 1, word2vec.c: 0.5)
    implementation: str = "auto"  # 'cpu' (C++ kernel, sequential SGD), 'reference' (batched updates), 'auto'
    threads: int = 0  # threads of the 'cpu' kernel (0: all cores; > 1 is lock-free and not bit-reproducible)
    seed: int = 1

    def __post_init__(self):
        for name in ("vector_size", "window", "negative", "epochs", "chunk_words", "batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"Word2VecConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.min_alpha <= self.alpha:
            raise ValueError(f"need 0 < min_alpha <= alpha, got min_alpha={self.min_alpha}, alpha={self.alpha}")


@functools.partial(jax.jit, static_argnames=("window", "negative", "sg", "batch", "implementation", "threads"),
                   donate_argnums=(0, 1))
def train_chunk(w_in, w_out, tokens, docs, reach, bounds, lrs, noise, key, **static):
    """One chunk of the token stream (``kernels.sgns_train``), jitted with the embeddings donated."""
    return sgns_train(w_in, w_out, tokens, docs, reach, bounds, lrs, noise, key, **static)


def padded_chunk(ids: np.ndarray, docs: np.ndarray, reach: np.ndarray, lo: int, size: int, window: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions lo - window .. lo + size + window of the stream as (size + 2 window,) arrays; beyond the
    stream: token 0, document -1 (never a context), reach 0."""
    m = size + 2 * window
    tokens, chunk_docs, chunk_reach = np.zeros(m, np.int32), np.full(m, -1, np.int32), np.zeros(m, np.int32)
    src = slice(max(lo - window, 0), min(lo + size + window, len(ids)))
    dst = slice(src.start - (lo - window), src.stop - (lo - window))
    tokens[dst], chunk_docs[dst], chunk_reach[dst] = ids[src], docs[src], reach[src]
    return tokens, chunk_docs, chunk_reach


class Word2Vec:
    def __init__(self, config: Word2VecConfig, corpus: IndexedCorpus):
        self.config, self.corpus = config, corpus
        rng = np.random.default_rng(config.seed)
        shape = (len(corpus.words), config.vector_size)
        self.w_in = jnp.asarray((2 * rng.random(shape, np.float32) - 1) * config.init_range / config.vector_size)
        self.w_out = jnp.zeros(shape, jnp.float32)

    def host_chunks(self) -> Iterator[tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray, int]]:
        """All the host's work for ``train``: per epoch, subsample and draw each centre's window, then
        yield every chunk as ((tokens, docs, reach), bounds, lrs, number of centre words)."""
        c = self.config
        rng = np.random.default_rng(c.seed)
        keep = keep_probabilities(self.corpus.counts, c.sample)
        for epoch in range(c.epochs):
            ids, docs = subsample(self.corpus, keep, rng)
            if len(ids) == 0:
                raise ValueError("subsampling kept no word: the corpus is empty or `sample` is far too small")
            reach = (c.window - rng.integers(0, c.window, len(ids))).astype(np.int32)
            for lo in range(0, len(ids), c.chunk_words):
                hi = min(lo + c.chunk_words, len(ids))
                frac = (epoch + np.array([lo, hi]) / len(ids)) / c.epochs
                lrs = np.maximum(c.alpha - (c.alpha - c.min_alpha) * frac, c.min_alpha).astype(np.float32)
                bounds = np.array([c.window, c.window + hi - lo], np.int32)
                yield padded_chunk(ids, docs, reach, lo, c.chunk_words, c.window), bounds, lrs, hi - lo

    def train(self, *, progress: bool = True) -> dict:
        """Train for ``epochs`` passes; returns effective words (kept by subsampling), seconds, words/s."""
        c = self.config
        noise = tuple(map(jnp.asarray, alias_table(self.corpus.counts.astype(np.float64) ** c.noise_power)))
        static = dict(window=c.window, negative=c.negative, sg=c.sg, batch=c.batch, implementation=c.implementation,
                      threads=c.threads or os.cpu_count() or 1)
        expected = float(keep_probabilities(self.corpus.counts, c.sample) @ self.corpus.counts) * c.epochs
        bar = tqdm(total=round(expected), unit="word", unit_scale=True, disable=not progress, desc="word2vec")
        effective, start_time = 0, time.perf_counter()
        for call, (chunk, bounds, lrs, words) in enumerate(self.host_chunks()):
            key = jax.random.fold_in(jax.random.key(c.seed), call)
            self.w_in, self.w_out = train_chunk(self.w_in, self.w_out, *chunk, bounds, lrs, noise, key, **static)
            effective += words
            bar.update(words)
        jax.block_until_ready((self.w_in, self.w_out))
        bar.close()
        seconds = time.perf_counter() - start_time
        return {"effective_words": effective, "seconds": seconds, "words_per_s": effective / seconds}

    def word_vectors(self) -> WordVectors:
        """The input embeddings (the usual word vectors), most frequent word first."""
        return WordVectors(self.corpus.words, np.asarray(self.w_in))
