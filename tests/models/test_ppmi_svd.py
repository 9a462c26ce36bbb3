import dataclasses

import numpy as np
import pytest

from nlp_jax.data.word2vec import index_word_corpus
from nlp_jax.models.ppmi_svd import PPMISVDConfig, ppmi_svd


def corpus(seed=0):
    """Documents each drawn from one of three topics of 3, 4 and 5 words (distinct singular values)."""
    rng = np.random.default_rng(seed)
    topics = [[f"t{t}w{i}" for i in range(n)] for t, n in enumerate((3, 4, 5))]
    return index_word_corpus([" ".join(rng.choice(topics[d % 3], 40)) for d in range(30)], min_count=1)


def reference(c, cfg: PPMISVDConfig) -> np.ndarray:
    """Float64, plain loops: weighted window counts -> smoothed PPMI -> full SVD -> U S^p (+ V S^p)."""
    v = len(c.words)
    counts = np.zeros((v, v))
    for i in range(len(c.ids)):
        for j in range(len(c.ids)):
            d = abs(i - j)
            if 0 < d <= cfg.window and c.doc_ids[i] == c.doc_ids[j]:
                counts[c.ids[i], c.ids[j]] += (cfg.window - d + 1) / cfg.window
    ctx = counts.sum(0) ** cfg.alpha
    with np.errstate(divide="ignore"):
        pmi = np.log(counts / counts.sum(1, keepdims=True) / (ctx / ctx.sum())) - np.log(cfg.shift)
    u, s, vt = np.linalg.svd(np.maximum(pmi, 0))
    out = u[:, :cfg.dim] * s[:cfg.dim] ** cfg.eig
    return out + vt[:cfg.dim].T * s[:cfg.dim] ** cfg.eig if cfg.add_context else out


@pytest.mark.parametrize("changes", [{}, {"add_context": True, "eig": 1.0}, {"alpha": 1.0, "shift": 2.0, "window": 3}])
def test_ppmi_svd_equals_a_dense_float64_reference(changes):
    c = corpus()
    cfg = dataclasses.replace(PPMISVDConfig(dim=4), **changes)
    wv, stats = ppmi_svd(c, cfg)
    expected = reference(c, cfg)
    assert wv.words == c.words and wv.vectors.shape == (12, 4) and stats["nnz"] > 30
    # singular vectors are defined up to sign: compare with each column's sign aligned (u and v flip together)
    signs = np.sign(np.sum(wv.vectors * expected, axis=0))
    np.testing.assert_allclose(wv.vectors * signs, expected, atol=1e-4)
