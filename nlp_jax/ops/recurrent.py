"""Recurrent networks as pure functions of one step, unrolled with ``lax.scan``.

Simple RNN (Elman), as the cheat sheet writes it, with the output layer tied to the embedding:

    e_t = E x_t,    h_t = g(U h_{t-1} + W e_t),    y_t = softmax(E^T h_t)

LSTM (Hochreiter & Schmidhuber 1997), with the cheat sheet's gate names:

    f_t = sigma(U_f h_{t-1} + W_f x_t)    k_t = c_{t-1} * f_t                 (forget)
    g_t = tanh(U_g h_{t-1} + W_g x_t)     i_t = sigma(U_i h_{t-1} + W_i x_t)
    j_t = g_t * i_t                                                         (add)
    c_t = j_t + k_t                                                         (context update)
    o_t = sigma(U_o h_{t-1} + W_o x_t)    h_t = o_t * tanh(c_t)             (output)

Each gate may carry a bias (``b_f`` etc., standard practice; the sheet omits it). The fast path stacks
the four gates into one (D, 4H) and one (H, 4H) matrix and hoists every step's input projection out of
the scan into one matmul; tests prove it equal to the per-gate path (the C++ CPU kernel of the whole
recurrence is ``nlp_jax.kernels.lstm_layer``). Bidirectional RNNs concatenate
the forward and backward states, ``h_t = h^f_t (+) h^b_t``, and run the backward direction from each
sequence's true end when sequences are padded.

Layout: sequences are time-major inside the scans, (T, B, D); the public functions take batch-major
(B, T, D) and per-sequence ``lengths`` (B,).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Array = jax.Array
GATES = ("f", "g", "i", "o")  # order of the stacked gates in the fused matrices


def rnn_step(params: dict, h: Array, e: Array, activation: Callable = jnp.tanh) -> Array:
    """``h_t = g(U h_{t-1} + W e_t (+ b))``. params: U (H, H), W (D, H), optional b (H,). With bfloat16
    weights and a float32 state (mixed precision) ``U h`` runs in bfloat16 and accumulates in float32."""
    pre = _state_matmul(h, params["U"]) + e @ params["W"]
    return activation(pre + params["b"] if "b" in params else pre)


def tied_output_logits(embedding: Array, h: Array) -> Array:
    """``E^T h_t``: logits over the vocabulary from the embedding matrix E stored as (V, D)."""
    return h @ embedding.T


def lstm_step(params: dict, state: tuple[Array, Array], x: Array) -> tuple[Array, Array]:
    """One LSTM step with the cheat sheet's gates. params: U_f, U_g, U_i, U_o (H, H); W_* (D, H);
    optional b_* (H,). state = (h, c). Returns (h_t, c_t)."""
    h, c = state

    def gate(name, nonlinearity):
        pre = _state_matmul(h, params[f"U_{name}"]) + x @ params[f"W_{name}"]
        return nonlinearity(pre + params[f"b_{name}"] if f"b_{name}" in params else pre)

    f = gate("f", jax.nn.sigmoid)
    k = c * f
    g = gate("g", jnp.tanh)
    i = gate("i", jax.nn.sigmoid)
    j = g * i
    c_new = j + k
    o = gate("o", jax.nn.sigmoid)
    return o * jnp.tanh(c_new), c_new


def _state_matmul(h: Array, u: Array) -> Array:
    """``h U``; with half-precision U (bfloat16 compute) the product runs in U's dtype and accumulates in
    h's, so the recurrent state keeps its precision. Otherwise the plain promoted product."""
    if jnp.finfo(u.dtype).bits > 16:
        return h @ u
    return jnp.matmul(h.astype(u.dtype), u, preferred_element_type=jnp.promote_types(h.dtype, u.dtype))


def initial_state(xs: Array, hidden: int) -> tuple[Array, Array]:
    """The zero LSTM state (h, c) for inputs xs (B, T, D): in xs's dtype, but at least float32 (bfloat16
    inputs keep a float32 state, the mixed-precision rule for the recurrence's accumulators)."""
    z = jnp.zeros((xs.shape[0], hidden), jnp.promote_types(xs.dtype, jnp.float32))
    return z, z


def fuse_lstm_params(params: dict) -> dict:
    """Per-gate params -> {'U': (H, 4H), 'W': (D, 4H), 'b': (4H,)} in the order of ``GATES``."""
    hidden = params["U_f"].shape[0]
    b = [params.get(f"b_{n}", jnp.zeros((hidden,), params["U_f"].dtype)) for n in GATES]
    return {"U": jnp.concatenate([params[f"U_{n}"] for n in GATES], axis=1),
            "W": jnp.concatenate([params[f"W_{n}"] for n in GATES], axis=1),
            "b": jnp.concatenate(b)}


def lstm_fused_step(fused: dict, state: tuple[Array, Array], x_proj: Array) -> tuple[Array, Array]:
    """The same step with the gates stacked: ``x_proj = x W + b`` is precomputed, one (H, 4H) matmul (in
    U's dtype, accumulated in the state's, as in :func:`rnn_step`)."""
    h, c = state
    f, g, i, o = jnp.split(x_proj + _state_matmul(h, fused["U"]), 4, axis=-1)
    c_new = jnp.tanh(g) * jax.nn.sigmoid(i) + c * jax.nn.sigmoid(f)  # j_t + k_t
    return jax.nn.sigmoid(o) * jnp.tanh(c_new), c_new


def _mask_steps(lengths: Array | None, t: int, b: int) -> Array:
    """(T, B, 1) bool: step t of sequence b is real (t < length_b)."""
    if lengths is None:
        return jnp.ones((t, b, 1), bool)
    return (jnp.arange(t)[:, None] < jnp.asarray(lengths)[None, :])[..., None]


def scan_rnn(step: Callable, params, init, xs: Array, lengths: Array | None = None):
    """Run ``step(params, state, x_t) -> new_state`` over xs (B, T, D) with ``lax.scan``.

    The state is an array (RNN) or a tuple whose first element is the output h (LSTM). Past a
    sequence's length the state is carried unchanged and the output is 0, so the final state is the
    state at the true end. Returns (outputs (B, T, H), final state).
    """
    xs_t = jnp.swapaxes(xs, 0, 1)  # (T, B, D)
    mask = _mask_steps(lengths, xs_t.shape[0], xs_t.shape[1])

    def body(state, inp):
        x, m = inp
        new = step(params, state, x)
        new = jax.tree.map(lambda n, o: jnp.where(m, n, o), new, state)
        h = new[0] if isinstance(new, tuple) else new
        return new, jnp.where(m, h, 0)

    final, hs = jax.lax.scan(body, init, (xs_t, mask))
    return jnp.swapaxes(hs, 0, 1), final


def lstm_layer(params: dict, xs: Array, init: tuple[Array, Array] | None = None,
               lengths: Array | None = None, *, fused: bool = True):
    """A whole LSTM layer over xs (B, T, D); fused=True hoists the input projection out of the scan.
    Returns (outputs (B, T, H), final (h, c))."""
    init = init if init is not None else initial_state(xs, params["U_f"].shape[0])
    if not fused:
        return scan_rnn(lstm_step, params, init, xs, lengths)
    f = fuse_lstm_params(params)
    x_proj = xs @ f["W"] + f["b"]  # (B, T, 4H): every step's input projection in one matmul
    return scan_rnn(lstm_fused_step, f, init, x_proj, lengths)


def reverse_padded(xs: Array, lengths: Array | None) -> Array:
    """Reverse each sequence of xs (B, T, ...) within its length; padding stays at the end."""
    t = xs.shape[1]
    if lengths is None:
        return xs[:, ::-1]
    pos = jnp.arange(t)[None, :]
    lengths = jnp.asarray(lengths)[:, None]
    src = jnp.where(pos < lengths, lengths - 1 - pos, pos)  # (B, T)
    return jnp.take_along_axis(xs, src.reshape(src.shape + (1,) * (xs.ndim - 2)), axis=1)


def bidirectional(run: Callable, params_f, params_b, xs: Array, lengths: Array | None = None):
    """``h_t = h^f_t (+) h^b_t``: ``run(params, xs, lengths) -> (outputs (B, T, H), final)`` is applied
    left to right, and right to left from each sequence's true end. Returns ((B, T, 2H), (final_f, final_b))."""
    out_f, final_f = run(params_f, xs, lengths)
    out_b, final_b = run(params_b, reverse_padded(xs, lengths), lengths)
    return jnp.concatenate([out_f, reverse_padded(out_b, lengths)], axis=-1), (final_f, final_b)
