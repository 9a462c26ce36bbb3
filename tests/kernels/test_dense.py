import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nlp_jax import kernels, ops


class TestDense(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_cpu_path_equals_plain_path_values_and_gradients(self):
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.normal(size=(3, 5, 8)), jnp.float32)
        w = jnp.asarray(rng.normal(size=(8, 6)), jnp.float32)
        b = jnp.asarray(rng.normal(size=(6,)), jnp.float32)
        c = jnp.asarray(rng.normal(size=(3, 5, 6)), jnp.float32)

        def loss(impl):
            return self.variant(lambda x, w, b: jnp.sum(jnp.tanh(kernels.dense(x, w, b, implementation=impl)) * c))

        np.testing.assert_allclose(kernels.dense(x, w, b, implementation="cpu"), x @ w + b, rtol=1e-6, atol=1e-6)
        g_cpu = jax.grad(loss("cpu"), argnums=(0, 1, 2))(x, w, b)
        g_xla = jax.grad(loss("reference"), argnums=(0, 1, 2))(x, w, b)
        for a, e in zip(g_cpu, g_xla):
            np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-5)


def test_gradient_against_float64_formula():
    rng = np.random.default_rng(1)
    x, w, dy = rng.normal(size=(4, 7, 3)), rng.normal(size=(3, 5)), rng.normal(size=(4, 7, 5))
    _, vjp = jax.vjp(lambda x, w: kernels.dense(x, w, implementation="cpu"), jnp.asarray(x, jnp.float32),
                     jnp.asarray(w, jnp.float32))
    dx, dw = vjp(jnp.asarray(dy, jnp.float32))
    np.testing.assert_allclose(dx, dy @ w.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dw, x.reshape(-1, 3).T @ dy.reshape(-1, 5), rtol=1e-5, atol=1e-5)


def test_shape_and_implementation_errors():
    with pytest.raises(ValueError, match="features"):
        ops.dense(jnp.zeros((2, 3)), jnp.zeros((4, 5)))
    with pytest.raises(ValueError, match="implementation"):
        kernels.dense(jnp.zeros((2, 3)), jnp.zeros((3, 5)), implementation="gpu9")


def test_the_reference_choice_never_builds_the_kernel(monkeypatch):
    from nlp_jax.kernels import build, matmul

    def no_build():
        raise AssertionError("the reference path built the C++ kernel")

    monkeypatch.setattr(build, "vector_kernels", lambda lanes=8: True)  # a CPU whose 'auto' would take it
    monkeypatch.setattr(matmul, "kernel_available", no_build)
    x, w = jnp.ones((2, 3), jnp.float32), jnp.ones((3, 4), jnp.float32)
    np.testing.assert_array_equal(kernels.dense(x, w, implementation="reference"), x @ w)
