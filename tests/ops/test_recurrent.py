import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads

from nlp_jax.ops import recurrent as R

B, T, D, H = 3, 7, 5, 4


def lstm_params(seed=0, bias=True, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    p = {}
    for n in R.GATES:
        p[f"U_{n}"] = rng.normal(size=(H, H)) * 0.5
        p[f"W_{n}"] = rng.normal(size=(D, H)) * 0.5
        if bias:
            p[f"b_{n}"] = rng.normal(size=(H,)) * 0.1
    return {k: jnp.asarray(v, dtype) for k, v in p.items()}


def np_lstm(p, xs):
    """Float64 loops over batch and time, written from the gate equations."""
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    out = np.zeros((xs.shape[0], xs.shape[1], H))
    for b in range(xs.shape[0]):
        h, c = np.zeros(H), np.zeros(H)
        for t in range(xs.shape[1]):
            x = xs[b, t]
            gate = lambda n: h @ p[f"U_{n}"] + x @ p[f"W_{n}"] + p.get(f"b_{n}", 0)  # noqa: E731
            f, g, i, o = sig(gate("f")), np.tanh(gate("g")), sig(gate("i")), sig(gate("o"))
            c = g * i + c * f
            h = o * np.tanh(c)
            out[b, t] = h
    return out


def inputs(seed=1):
    return np.random.default_rng(seed).normal(size=(B, T, D))


class TestLSTM(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_plain_and_fused_layers_match_float64_reference(self):
        p, xs = lstm_params(), inputs()
        expected = np_lstm(p, xs)
        for fused in (False, True):
            out, (h, c) = self.variant(lambda p, x: R.lstm_layer(p, x, fused=fused))(p, jnp.asarray(xs, jnp.float32))
            np.testing.assert_allclose(out, expected, atol=1e-5)
            np.testing.assert_allclose(h, expected[:, -1], atol=1e-5)

    def test_scan_equals_step_by_step(self):
        p, xs = lstm_params(), jnp.asarray(inputs(), jnp.float32)
        out, _ = R.lstm_layer(p, xs, fused=False)
        state = (jnp.zeros((B, H)), jnp.zeros((B, H)))
        for t in range(T):
            state = R.lstm_step(p, state, xs[:, t])
            np.testing.assert_allclose(out[:, t], state[0], atol=1e-6)

    def test_gradients(self):
        with jax.enable_x64(True):
            p = lstm_params(dtype=jnp.float64)
            xs = jnp.asarray(inputs())
            check_grads(lambda p, x: R.lstm_layer(p, x, fused=True)[0].sum(), (p, xs), order=1, modes=["rev"])
            g_plain = jax.grad(lambda p: (R.lstm_layer(p, xs, fused=False)[0] ** 2).sum())(p)
            g_fused = jax.grad(lambda p: (R.lstm_layer(p, xs, fused=True)[0] ** 2).sum())(p)
            for k in p:
                np.testing.assert_allclose(g_plain[k], g_fused[k], rtol=1e-10, atol=1e-12)


def test_rnn_step_and_tied_output():
    rng = np.random.default_rng(2)
    p = {"U": jnp.asarray(rng.normal(size=(H, H))), "W": jnp.asarray(rng.normal(size=(D, H)))}
    h, e = jnp.asarray(rng.normal(size=(B, H))), jnp.asarray(rng.normal(size=(B, D)))
    np.testing.assert_allclose(R.rnn_step(p, h, e), np.tanh(np.asarray(h) @ p["U"] + np.asarray(e) @ p["W"]),
                               rtol=1e-5)
    emb = jnp.asarray(rng.normal(size=(11, H)))
    logits = R.tied_output_logits(emb, h)
    np.testing.assert_allclose(logits, np.asarray(h) @ np.asarray(emb).T, rtol=1e-5)


def rnn_run(p, xs, lengths):
    init = jnp.zeros((xs.shape[0], H), xs.dtype)
    return R.scan_rnn(R.rnn_step, p, init, xs, lengths)


def test_variable_lengths_equal_unpadded_runs():
    p, xs = lstm_params(), jnp.asarray(inputs(), jnp.float32)
    lengths = jnp.array([7, 3, 5])
    out, (h, _) = R.lstm_layer(p, xs, lengths=lengths)
    for b, n in enumerate([7, 3, 5]):
        alone, (h_alone, _) = R.lstm_layer(p, xs[b:b + 1, :n])
        np.testing.assert_allclose(out[b, :n], alone[0], atol=1e-6)
        np.testing.assert_allclose(h[b], h_alone[0], atol=1e-6)  # final state = state at the true end
        assert np.all(np.asarray(out[b, n:]) == 0)


def test_bidirectional_mirror_and_padding():
    rng = np.random.default_rng(3)
    pf, pb = ({"U": jnp.asarray(rng.normal(size=(H, H)), jnp.float32),
               "W": jnp.asarray(rng.normal(size=(D, H)), jnp.float32)} for _ in range(2))
    xs = jnp.asarray(inputs(), jnp.float32)
    out, _ = R.bidirectional(rnn_run, pf, pb, xs)
    chex.assert_shape(out, (B, T, 2 * H))
    mirrored, _ = R.bidirectional(rnn_run, pb, pf, xs[:, ::-1])  # swap directions, reverse input
    np.testing.assert_allclose(out, jnp.concatenate([mirrored[:, ::-1, H:], mirrored[:, ::-1, :H]], -1), atol=1e-6)
    lengths = jnp.array([7, 2, 4])
    padded, _ = R.bidirectional(rnn_run, pf, pb, xs, lengths)
    for b, n in enumerate([7, 2, 4]):
        alone, _ = R.bidirectional(rnn_run, pf, pb, xs[b:b + 1, :n])
        np.testing.assert_allclose(padded[b, :n], alone[0], atol=1e-6)  # backward starts at the true end


def test_reverse_padded():
    xs = jnp.arange(2 * 5).reshape(2, 5)[..., None]
    out = R.reverse_padded(xs, jnp.array([5, 3]))[..., 0]
    np.testing.assert_array_equal(out, [[4, 3, 2, 1, 0], [7, 6, 5, 8, 9]])
