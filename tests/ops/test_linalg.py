import numpy as np
import pytest
import scipy.sparse

from nlp_jax.ops.linalg import randomized_svd


def test_randomized_svd_recovers_the_top_singular_triplets():
    rng = np.random.default_rng(0)
    u, _ = np.linalg.qr(rng.standard_normal((300, 300)))
    v, _ = np.linalg.qr(rng.standard_normal((200, 200)))
    s = np.r_[np.linspace(10, 5, 8), 0.01 * rng.random(192)]  # rank-8 signal plus a small tail
    a = (u[:, :200] * s) @ v.T
    uk, sk, vtk = randomized_svd(a, 8, seed=1)
    np.testing.assert_allclose(sk, np.linalg.svd(a, compute_uv=False)[:8], rtol=1e-6)
    np.testing.assert_allclose(np.abs(np.sum(uk * u[:, :8], axis=0)), 1.0, atol=1e-6)  # same subspace, up to sign
    np.testing.assert_allclose((uk * sk) @ vtk, (u[:, :8] * s[:8]) @ v[:, :8].T, atol=1e-3)


def test_randomized_svd_takes_sparse_matrices():
    a = scipy.sparse.random(120, 80, density=0.05, random_state=0, format="csr")
    _, s, _ = randomized_svd(a, 5, power_iters=8)
    np.testing.assert_allclose(s, np.linalg.svd(a.toarray(), compute_uv=False)[:5], rtol=1e-4)
    with pytest.raises(ValueError, match="k must"):
        randomized_svd(a, 0)
