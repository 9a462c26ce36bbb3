import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from nlp_jax import kernels, ops
from nlp_jax.kernels import elementwise
from nlp_jax.ops.activations import gelu as activations_gelu

X = np.linspace(-8, 8, 4001)


@pytest.fixture(params=["reference", "cpu"])
def impl(request):
    if request.param == "cpu" and (jax.default_backend() != "cpu" or not elementwise.kernel_available()):
        pytest.skip("the C++ CPU kernel is unavailable here")
    return request.param


def test_exact_gelu_against_float64_erf():
    expected = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in X])
    np.testing.assert_allclose(ops.gelu(jnp.asarray(X, jnp.float32)), expected, atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(ops.gelu)(jnp.asarray(X, jnp.float32)), expected, atol=1e-6, rtol=1e-6)


def test_each_implementation_against_float64_in_the_tails_too(impl):
    x = np.concatenate([np.linspace(-14, 14, 6001), [0.0, -0.0, 1e-30, -1e-30]])
    phi = np.array([0.5 * math.erfc(-v / math.sqrt(2)) for v in x])  # erfc: no cancellation for x << 0
    pdf = np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    xf = jnp.asarray(x, jnp.float32)
    y = jax.jit(lambda x: kernels.gelu(x, implementation=impl))(xf)
    dy = jax.jit(jax.grad(lambda x: kernels.gelu(x, implementation=impl).sum()))(xf)
    # 1 + erf(x / sqrt 2) cancels for x << 0: the XLA form is exact only to ~1e-6 absolute there
    np.testing.assert_allclose(y, x * phi, rtol=2e-6, atol=1e-7 if impl == "cpu" else 1e-6)
    np.testing.assert_allclose(dy, phi + x * pdf, rtol=2e-6, atol=2e-7)
    big = jnp.asarray([-1e4, -100.0, 100.0, 1e4], jnp.float32)
    np.testing.assert_array_equal(kernels.gelu(big, implementation=impl), [0.0, 0.0, 100.0, 1e4])


def test_exact_gelu_derivative_matches_jax_and_finite_differences():
    x = jnp.asarray(X, jnp.float32)
    ours = jax.grad(lambda x: ops.gelu(x).sum())(x)
    theirs = jax.grad(lambda x: jax.nn.gelu(x, approximate=False).sum())(x)
    np.testing.assert_allclose(ours, theirs, atol=2e-6)
    with jax.enable_x64(True):
        check_grads(ops.gelu, (jnp.asarray(X[::40], jnp.float64),), order=2, modes=["rev"])


def test_ops_exports_the_activations_module():
    assert ops.gelu is activations_gelu


def test_tanh_gelu_is_gpt2_form():
    x = jnp.asarray(X, jnp.float32)
    expected = 0.5 * X * (1 + np.tanh(math.sqrt(2 / math.pi) * (X + 0.044715 * X ** 3)))
    np.testing.assert_allclose(ops.gelu(x, approximate=True), expected, atol=1e-6)
