import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads

from nlp_jax import ops
from nlp_jax.ops.activations import gelu as activations_gelu

X = np.linspace(-8, 8, 4001)


def test_exact_gelu_against_float64_erf():
    expected = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in X])
    np.testing.assert_allclose(ops.gelu(jnp.asarray(X, jnp.float32)), expected, atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(ops.gelu)(jnp.asarray(X, jnp.float32)), expected, atol=1e-6, rtol=1e-6)


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
