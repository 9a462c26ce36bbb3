"""A fused LSTM layer over whole sequences on CPU by the C++ kernel ``lstm_cpu.cc`` (float32), with its
backward pass written out (see the .cc for the equations). Built on first use by ``ops.kernels``;
``kernel_available()`` is False when no C++ compiler works, and ``ops.recurrent.lstm_layer`` then
scans ``lstm_fused_step`` with XLA."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
_FORWARD, _BACKWARD = "nlp_jax_lstm_fwd", "nlp_jax_lstm_bwd"


@functools.cache
def kernel_available() -> bool:
    """Whether ``lstm_cpu.cc`` is built and registered (compiles it on the first call)."""
    from nlp_jax.ops import kernels

    return kernels.register("lstm_cpu.cc", {_FORWARD: "LstmForward", _BACKWARD: "LstmBackward"})


def _f32(*shape) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(shape, np.float32)


def _forward(x_proj, u, h0, c0):
    if not kernel_available():
        raise RuntimeError("the LSTM CPU kernel is unavailable (no working C++ compiler)")
    b, t, g = x_proj.shape
    hs, cs, acts = jax.ffi.ffi_call(_FORWARD, (_f32(b, t, g // 4), _f32(b, t, g // 4), _f32(b, t, g)),
                                    vmap_method="sequential")(x_proj, u, h0, c0)
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
    dxp, dh0, dc0 = jax.ffi.ffi_call(_BACKWARD, (_f32(b, t, 4 * h), _f32(b, h), _f32(b, h)),
                                     vmap_method="sequential")(u, acts, cs, c0, dhs, dc_last)
    h_prev = jnp.concatenate([h0[:, None], hs[:, :-1]], axis=1)  # (B, T, H)
    du = jnp.einsum("bth,btg->hg", h_prev, dxp)  # sum over steps of h_{t-1}^T dz_t: one large product
    return dxp, du, dh0, dc0


lstm_sequence.defvjp(_forward, _backward)
