"""A whole LSTM layer behind the dispatch: the reference ``ops.recurrent.lstm_layer`` (``lax.scan`` of the
fused step) or, on CPU, the C++ kernel ``csrc/lstm.cc`` for the recurrence over whole float32 sequences
(forward and backward each one call, threads meeting at step boundaries; see the .cc for the equations).
``kernel_available()`` is False when no C++ compiler works; 'auto' then takes the reference."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from nlp_jax.kernels import build, dispatch
from nlp_jax.ops import recurrent as R

Array = jax.Array
_FORWARD, _BACKWARD = "nlp_jax_lstm_fwd", "nlp_jax_lstm_bwd"


@functools.cache
def kernel_available() -> bool:
    """Whether ``csrc/lstm.cc`` is built and registered (compiles it on the first call)."""
    return build.register("lstm.cc", {_FORWARD: "LstmForward", _BACKWARD: "LstmBackward"})


def _forward(x_proj, u, h0, c0):
    b, t, g = x_proj.shape
    outs = (build.f32((b, t, g // 4)), build.f32((b, t, g // 4)), build.f32((b, t, g)))
    hs, cs, acts = build.call(kernel_available, _FORWARD, outs, x_proj, u, h0, c0, vmap_method="sequential")
    return (hs, (hs[:, -1], cs[:, -1])), (u, h0, c0, hs, cs, acts)


@jax.custom_vjp
def lstm_sequence(x_proj: Array, u: Array, h0: Array, c0: Array) -> tuple[Array, tuple[Array, Array]]:
    """The fused LSTM recurrence over x_proj (B, T, 4H) = x W + b (gates f, g, i, o), U (H, 4H), initial
    state h0, c0 (B, H); float32, T >= 1. Returns (hs (B, T, H), (h_T, c_T)), as ``scan_rnn`` does."""
    return _forward(x_proj, u, h0, c0)[0]


def _backward(res, cotangents):
    u, h0, c0, hs, cs, acts = res
    dhs, (dh_last, dc_last) = cotangents
    dhs = dhs.at[:, -1].add(dh_last)
    b, t, h = hs.shape
    outs = (build.f32((b, t, 4 * h)), build.f32((b, h)), build.f32((b, h)))
    dxp, dh0, dc0 = build.call(kernel_available, _BACKWARD, outs, u, acts, cs, c0, dhs, dc_last,
                                 vmap_method="sequential")
    h_prev = jnp.concatenate([h0[:, None], hs[:, :-1]], axis=1)  # (B, T, H)
    du = jnp.einsum("bth,btg->hg", h_prev, dxp)  # sum over steps of h_{t-1}^T dz_t: one large product
    return dxp, du, dh0, dc0


lstm_sequence.defvjp(_forward, _backward)


SUPPORTED = ("auto", "reference", "cpu")


def lstm_layer(params: dict, xs: Array, init: tuple[Array, Array] | None = None, lengths: Array | None = None, *,
               implementation: str | None = None):
    """``ops.recurrent.lstm_layer`` (fused) by the chosen implementation; the kernel takes float32 sequences
    without ``lengths`` (T >= 1). Returns (outputs (B, T, H), final (h, c))."""
    impl = dispatch.check("lstm_layer", implementation, SUPPORTED)
    applies = lengths is None and xs.shape[1] > 0 and xs.dtype == jnp.float32 and kernel_available()
    if impl == "cpu" and not applies:
        raise ValueError("lstm_layer: implementation='cpu' (the C++ kernel) needs float32 sequences of length >= 1, "
                         "no lengths, and a working C++ compiler")
    init = init if init is not None else R.initial_state(xs, params["U_f"].shape[0])

    def reference(params, xs, init):
        return R.lstm_layer(params, xs, init, lengths)

    def cpu(params, xs, init):
        f = R.fuse_lstm_params(params)
        x_proj = xs @ f["W"] + f["b"]  # (B, T, 4H): every step's input projection in one matmul
        return lstm_sequence(x_proj, f["U"].astype(jnp.float32), *(s.astype(jnp.float32) for s in init))

    return dispatch.run("lstm_layer", impl, (params, xs, init), reference=reference,
                        cpu=cpu if applies else None)
