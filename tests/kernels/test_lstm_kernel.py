"""The LSTM recurrence kernel against the lax.scan path (values and gradients, final state included)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nlp_jax.kernels import lstm as lstm_cpu
from nlp_jax.ops import recurrent as R

pytestmark = pytest.mark.skipif(not lstm_cpu.kernel_available(), reason="no C++ compiler: the kernel is unavailable")


def scan_path(x_proj, u, h0, c0):
    return R.scan_rnn(R.lstm_fused_step, {"U": u}, (h0, c0), x_proj)


# hidden sizes below, at and past the 16-unit blocks; T = 1 (no recurrence) up to a few steps
@pytest.mark.parametrize("b, t, h", [(1, 1, 3), (2, 5, 16), (3, 4, 37), (20, 6, 200)])
def test_kernel_equals_scan_with_gradients(b, t, h):
    rng = np.random.default_rng(h)
    x_proj = jnp.asarray(rng.normal(size=(b, t, 4 * h)) * 2, jnp.float32)
    u = jnp.asarray(rng.normal(size=(h, 4 * h)) / np.sqrt(h), jnp.float32)
    h0, c0 = (jnp.asarray(rng.normal(size=(b, h)), jnp.float32) for _ in range(2))
    w_seq, w_h, w_c = (jnp.asarray(rng.normal(size=s), jnp.float32) for s in ((b, t, h), (b, h), (b, h)))

    def loss(fn):
        def f(*args):
            hs, (h_last, c_last) = fn(*args)
            return jnp.sum(hs * w_seq) + jnp.sum(h_last * w_h) + jnp.sum(c_last * w_c)
        return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2, 3)))

    hs, (h_last, c_last) = lstm_cpu.lstm_sequence(x_proj, u, h0, c0)
    want_hs, (want_h, want_c) = scan_path(x_proj, u, h0, c0)
    for got, want in ((hs, want_hs), (h_last, want_h), (c_last, want_c)):
        np.testing.assert_allclose(got, want, atol=2e-6, rtol=1e-5)
    (value, grads), (want_value, want_grads) = loss(lstm_cpu.lstm_sequence)(x_proj, u, h0, c0), loss(scan_path)(
        x_proj, u, h0, c0)
    np.testing.assert_allclose(value, want_value, rtol=1e-5)
    for got, want in zip(grads, want_grads):
        np.testing.assert_allclose(got, want, atol=5e-5, rtol=1e-4)


def test_layer_dispatch_takes_the_kernel_only_without_lengths(vector_kernels):
    params = {f"{k}_{g}": jnp.ones(s) * 0.1 for g in R.GATES for k, s in (("U", (4, 4)), ("W", (3, 4)))}
    xs = jnp.ones((2, 5, 3))
    text = lambda **kw: jax.jit(lambda p, x: lstm_cpu.lstm_layer(p, x, **kw)).lower(params, xs).as_text()  # noqa: E731
    assert "nlp_jax_lstm_fwd" in text() and "nlp_jax_lstm_fwd" not in text(lengths=jnp.array([5, 5]))
    out, _ = lstm_cpu.lstm_layer(params, xs)
    out_len, _ = lstm_cpu.lstm_layer(params, xs, lengths=jnp.array([5, 5]))
    np.testing.assert_allclose(out, out_len, atol=1e-6)
    np.testing.assert_allclose(out, R.lstm_layer(params, xs)[0], atol=1e-6)
    with pytest.raises(ValueError, match="no lengths"):
        lstm_cpu.lstm_layer(params, xs, lengths=jnp.array([5, 5]), implementation="cpu")
