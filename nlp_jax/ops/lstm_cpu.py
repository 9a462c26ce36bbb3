"""A fused LSTM layer over whole sequences on CPU by the C++ kernel ``lstm_cpu.cc`` (float32), with its
backward pass written out (see the .cc for the equations). Built on first use by ``ops.kernels``;
``kernel_available()`` is False when no C++ compiler works, and ``ops.recurrent.lstm_layer`` then
scans ``lstm_fused_step`` with XLA."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from nlp_jax.ops import kernels

Array = jax.Array
_FORWARD, _BACKWARD = "nlp_jax_lstm_fwd", "nlp_jax_lstm_bwd"


@functools.cache
def kernel_available() -> bool:
    """Whether ``lstm_cpu.cc`` is built and registered (compiles it on the first call)."""
    return kernels.register("lstm_cpu.cc", {_FORWARD: "LstmForward", _BACKWARD: "LstmBackward"})


def _forward(x_proj, u, h0, c0):
    b, t, g = x_proj.shape
    outs = (kernels.f32((b, t, g // 4)), kernels.f32((b, t, g // 4)), kernels.f32((b, t, g)))
    hs, cs, acts = kernels.call(kernel_available, _FORWARD, outs, x_proj, u, h0, c0, vmap_method="sequential")
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
    outs = (kernels.f32((b, t, 4 * h)), kernels.f32((b, h)), kernels.f32((b, h)))
    dxp, dh0, dc0 = kernels.call(kernel_available, _BACKWARD, outs, u, acts, cs, c0, dhs, dc_last,
                                 vmap_method="sequential")
    h_prev = jnp.concatenate([h0[:, None], hs[:, :-1]], axis=1)  # (B, T, H)
    du = jnp.einsum("bth,btg->hg", h_prev, dxp)  # sum over steps of h_{t-1}^T dz_t: one large product
    return dxp, du, dh0, dc0


lstm_sequence.defvjp(_forward, _backward)
