import jax.numpy as jnp
import numpy as np
import pytest

from nlp_jax.kernels import matmul as matmul_cpu

pytestmark = pytest.mark.skipif(not matmul_cpu.kernel_available(), reason="no C++ compiler: the kernel is unavailable")


# ragged rows (not multiples of the 6-row tiles or 96-row blocks) and columns (not multiples of 16 or 64)
@pytest.mark.parametrize("m, k, n", [(1, 1, 1), (5, 3, 7), (17, 33, 65), (100, 64, 130), (97, 200, 300), (7, 0, 5)])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_all_layouts_against_float64(m, k, n, trans_a, trans_b):
    rng = np.random.default_rng(m * 1000 + n)
    a, b = rng.normal(size=(m, k)).astype(np.float32), rng.normal(size=(k, n)).astype(np.float32)
    got = matmul_cpu.matmul(jnp.asarray(a.T if trans_a else a), jnp.asarray(b.T if trans_b else b),
                            trans_a=trans_a, trans_b=trans_b)
    want = a.astype(np.float64) @ b.astype(np.float64)
    assert got.shape == (m, n)
    np.testing.assert_allclose(got, want, atol=2e-6 * max(k, 1) ** 0.5 * 4, rtol=1e-5)


def test_shape_errors():
    with pytest.raises(ValueError, match="op\\(a\\)"):
        matmul_cpu.matmul(jnp.zeros((2, 3)), jnp.zeros((4, 5)))
    with pytest.raises(ValueError, match="float32"):
        matmul_cpu.matmul(jnp.zeros((2, 3), jnp.bfloat16), jnp.zeros((3, 5)))
