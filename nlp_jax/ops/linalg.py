"""Truncated SVD by randomised range finding (Halko, Martinsson & Tropp 2011, algorithms 4.4 and 5.1).

For A (m, n) and a target rank k: sample Y = (A A^T)^q A G with a Gaussian G (n, k + p), orthonormalise
it between the power iterations, take Q = orth(Y), and the exact SVD of the small B = Q^T A gives
A ~ (Q U_B) S V^T. ``a`` may be any matrix that supports ``@`` with dense arrays and ``.T`` (NumPy, SciPy
sparse), so a sparse PPMI matrix is never densified.
"""

from __future__ import annotations

import numpy as np


def randomized_svd(a, k: int, *, oversample: int = 10, power_iters: int = 4, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The top ``k`` singular triplets: U (m, k), S (k,) descending, Vt (k, n)."""
    m, n = a.shape
    if not 0 < k <= min(m, n):
        raise ValueError(f"k must lie in [1, {min(m, n)}], got {k}")
    rng = np.random.default_rng(seed)
    q = np.linalg.qr(a @ rng.standard_normal((n, min(k + oversample, n))))[0]
    for _ in range(power_iters):
        q = np.linalg.qr(a.T @ q)[0]
        q = np.linalg.qr(a @ q)[0]
    u_b, s, vt = np.linalg.svd(np.asarray((a.T @ q).T), full_matrices=False)
    return (q @ u_b)[:, :k], s[:k], vt[:k]
