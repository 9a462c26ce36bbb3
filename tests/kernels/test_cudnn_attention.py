"""cuDNN's flash attention (``implementation='cudnn'``, through ``jax.nn.dot_product_attention``) against the
float32 reference, values and gradients, with this package's conventions: causal masks aligned to the end of
the keys when T < S (the KV cache), padding masks, and zeros on a row that sees no key. cuDNN exists only on
NVIDIA GPUs, so these run in ``make gpu-check``'s test section and are skipped elsewhere."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nlp_jax import ops
from nlp_jax.kernels import dispatch
from nlp_jax.kernels import sdpa as A

pytestmark = pytest.mark.skipif(not dispatch.has_platform("cuda"), reason="cuDNN attention needs an NVIDIA GPU")
TOL = 3e-2  # bfloat16 inputs (8 bits of mantissa) against float32 arithmetic, relative to the largest value


def _case(name):
    b, h, d = 2, 4, 64
    t, s = (64, 128) if name == "causal, T < S" else (128, 128)
    rng = np.random.default_rng(len(name))
    q, k, v = (jnp.asarray(rng.normal(size=(b, n, h, d)), jnp.float32) for n in (t, s, s))
    mask, causal = None, name.startswith("causal")
    if name in ("padding", "an empty row"):
        lengths = np.array([s, s // 3])
        mask = jnp.asarray(np.arange(s)[None, :] < lengths[:, None])[:, None, None, :]  # (B, 1, 1, S)
    if name == "an empty row":
        mask = jnp.broadcast_to(mask, (b, h, t, s)).at[1, 2, 5, :].set(False)
    return (q, k, v), dict(mask=mask, is_causal=causal)


def _close(got, want):
    scale = float(jnp.max(jnp.abs(want))) or 1.0
    assert float(jnp.max(jnp.abs(got.astype(jnp.float32) - want))) <= TOL * scale


@pytest.mark.parametrize("name", ["causal", "causal, T < S", "padding", "an empty row"])
def test_cudnn_values_and_gradients_match_the_float32_reference(name):
    (q, k, v), kw = _case(name)
    c = jax.random.normal(jax.random.key(0), q.shape)
    ref = lambda q, k, v: ops.scaled_dot_product_attention(q, k, v, **kw)  # noqa: E731
    fast = lambda q, k, v: A.attention(q.astype(jnp.bfloat16), k.astype(jnp.bfloat16), v.astype(jnp.bfloat16),  # noqa: E731
                                       implementation="cudnn", **kw)
    _close(jax.jit(fast)(q, k, v), ref(q, k, v))
    grads = [jax.jit(jax.grad(lambda q, k, v, f=f: jnp.sum(f(q, k, v).astype(jnp.float32) * c), (0, 1, 2)))(q, k, v)
             for f in (fast, ref)]
    for got, want in zip(*grads):
        _close(got, want)
    if name == "an empty row":
        assert float(jnp.abs(jax.jit(fast)(q, k, v)[1, 5, 2]).max()) == 0.0
