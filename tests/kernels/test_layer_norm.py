import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nlp_jax import kernels, nn, ops
from nlp_jax.kernels import elementwise


@pytest.fixture(params=["reference", "cpu"])
def impl(request):
    if request.param == "cpu" and (jax.default_backend() != "cpu" or not elementwise.kernel_available()):
        pytest.skip("the C++ CPU kernel is unavailable here")
    return request.param


def layer_norm64(x, scale, bias, eps, c):
    """Float64 layer norm and the gradients of sum(layer_norm * c) by the textbook formulas."""
    x, scale, c = (np.asarray(a, np.float64) for a in (x, scale, c))
    mean = x.mean(-1, keepdims=True)
    rstd = 1 / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + eps)
    xhat = (x - mean) * rstd
    y = xhat * scale + (0 if bias is None else np.asarray(bias, np.float64))
    g = c * scale
    dx = rstd * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
    axes = tuple(range(x.ndim - 1))
    return y, dx, (c * xhat).sum(axes), c.sum(axes)


@pytest.mark.parametrize("shape", [(1, 1), (3, 5, 37), (70, 128), (4, 300)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_values_and_gradients_against_float64(impl, shape, with_bias):
    rng = np.random.default_rng(shape[-1])
    x = (rng.normal(size=shape) * 3 + 2).astype(np.float32)
    scale = rng.normal(size=shape[-1:]).astype(np.float32)
    bias = rng.normal(size=shape[-1:]).astype(np.float32) if with_bias else None
    c = rng.normal(size=shape).astype(np.float32)

    def loss(x, scale, bias):
        return jnp.sum(kernels.layer_norm(x, scale, bias, eps=1e-5, implementation=impl) * c)

    y = jax.jit(lambda x, s, b: kernels.layer_norm(x, s, b, implementation=impl))(x, scale, bias)
    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2) if with_bias else (0, 1)))(x, scale, bias)
    want_y, want_dx, want_dscale, want_dbias = layer_norm64(x, scale, bias, 1e-5, c)
    np.testing.assert_allclose(y, want_y, atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(grads[0], want_dx, atol=2e-4, rtol=1e-4)
    np.testing.assert_allclose(grads[1], want_dscale, atol=1e-4, rtol=1e-5)
    if with_bias:
        np.testing.assert_allclose(grads[2], want_dbias, atol=1e-4, rtol=1e-5)


def test_constant_rows_give_bias_and_finite_gradients(impl):
    x = jnp.full((2, 8), 3.0)
    scale, bias = jnp.arange(8.0), jnp.ones(8)
    np.testing.assert_allclose(kernels.layer_norm(x, scale, bias, implementation=impl), jnp.ones((2, 8)), atol=1e-6)
    g = jax.grad(lambda x: kernels.layer_norm(x, scale, bias, implementation=impl).sum())(x)
    assert np.isfinite(np.asarray(g)).all()


def test_module_matches_flax_layer_norm():
    from flax import nnx

    x = jax.random.normal(jax.random.key(0), (4, 6, 32)) * 2 + 1
    ours, theirs = nn.LayerNorm(32, eps=1e-5), nnx.LayerNorm(32, epsilon=1e-5, rngs=nnx.Rngs(0))
    np.testing.assert_allclose(ours(x), theirs(x), atol=2e-6)
    assert set(nnx.state(ours, nnx.Param).keys()) == {"scale", "bias"}
    assert nn.LayerNorm(32, bias=False).bias is None


def test_errors_and_dispatch():
    with pytest.raises(ValueError, match="shape"):
        ops.layer_norm(jnp.zeros((2, 4)), jnp.ones(3))
    with pytest.raises(ValueError, match="implementation"):
        kernels.layer_norm(jnp.zeros((2, 4)), jnp.ones(4), implementation="fast9")
    with pytest.raises(ValueError, match="float32"):
        kernels.layer_norm(jnp.ones((2, 4), jnp.bfloat16), jnp.ones(4), implementation="cpu")
    y = kernels.layer_norm(jnp.ones((2, 4), jnp.bfloat16), jnp.ones(4))  # 'auto': the reference for bf16
    assert y.dtype == jnp.bfloat16
