"""Count-based word vectors: PPMI-SVD (Levy, Goldberg & Dagan 2015, "Improving distributional similarity
with lessons learned from word embeddings").

Windowed co-occurrence counts -> PPMI with context distribution smoothing (alpha = 0.75) and an optional
shift log k -> truncated SVD  M ~ U S V^T -> word vectors W = U S^p (p = 0.5, the "eigenvalue weighting"
the paper recommends over the classic p = 1), optionally plus the context vectors V S^p (w + c).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from nlp_jax.data.word2vec import IndexedCorpus
from nlp_jax.models.word_vectors import WordVectors
from nlp_jax.ops.counting import cooccurrence, pmi
from nlp_jax.ops.linalg import randomized_svd


@dataclasses.dataclass(frozen=True, kw_only=True)
class PPMISVDConfig:
    window: int = 2  # context words on each side (Levy et al.: small windows suit similarity)
    weighting: str = "linear"  # 'uniform' or 'linear' (word2vec's dynamic-window expectation)
    alpha: float = 0.75  # context distribution smoothing exponent (1: none)
    shift: float = 1.0  # k in PPMI - log k (1: no shift)
    dim: int = 100  # SVD rank = vector size
    eig: float = 0.5  # p in W = U S^p
    add_context: bool = False  # return W + C (C = V S^p) instead of W
    power_iters: int = 4  # randomised SVD power iterations
    seed: int = 0


def ppmi_svd(corpus: IndexedCorpus, config: PPMISVDConfig) -> tuple[WordVectors, dict]:
    """Word vectors for ``corpus.words``; returns them and timings / sizes."""
    c = config
    t0 = time.perf_counter()
    counts = cooccurrence(corpus.ids, corpus.doc_ids, len(corpus.words), c.window, weighting=c.weighting)
    matrix = pmi(counts, alpha=c.alpha, shift=c.shift, positive=True)
    t1 = time.perf_counter()
    u, s, vt = randomized_svd(matrix.to_scipy(), c.dim, power_iters=c.power_iters, seed=c.seed)
    vectors = u * s**c.eig
    if c.add_context:
        vectors = vectors + vt.T * s**c.eig
    t2 = time.perf_counter()
    stats = {"nnz": int(len(matrix.data)), "count_seconds": t1 - t0, "svd_seconds": t2 - t1,
             "seconds": t2 - t0}
    return WordVectors(corpus.words, vectors.astype(np.float32)), stats
