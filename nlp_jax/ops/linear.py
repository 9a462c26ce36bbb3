"""The affine map ``y = x W + b``, with a CPU-tuned backward pass behind a backend dispatch.

On XLA's CPU backend, the plain ``x @ W`` backward lets XLA fuse the upstream elementwise gradient
(e.g. GELU's derivative) into the transpose that feeds the weight-gradient matmul; that fused, strided
loop runs an order of magnitude slower than the arithmetic needs (BENCHMARKS.md, "profile"). The CPU
path states the gradients explicitly, ``dx = dy W^T`` and ``dW = x^T dy`` over the flattened tokens, and
puts optimization barriers on the operands so each transpose is a plain (fast) copy. Values and
gradients are the same as the plain path (tested); other backends use the plain path.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


@jax.custom_vjp
def _dense_cpu(x: Array, w: Array) -> Array:
    return x @ w


def _dense_cpu_fwd(x, w):
    return x @ w, (x, w)


def _dense_cpu_bwd(res, dy):
    x, w = res
    x2 = jax.lax.optimization_barrier(x.reshape(-1, x.shape[-1]))  # (N, Din), materialised
    dy2 = jax.lax.optimization_barrier(dy.reshape(-1, dy.shape[-1]))  # (N, Dout)
    dw = (x2.T @ dy2).astype(w.dtype)  # (Din, Dout)
    dx = (dy @ w.T.astype(dy.dtype)).astype(x.dtype)  # (..., Din)
    return dx, dw


_dense_cpu.defvjp(_dense_cpu_fwd, _dense_cpu_bwd)


def default_implementation() -> str:
    return "cpu" if jax.default_backend() == "cpu" else "xla"


def dense(x: Array, w: Array, b: Array | None = None, *, implementation: str | None = None) -> Array:
    """``y = x W + b``. x (..., Din), W (Din, Dout), b (Dout,) -> (..., Dout).

    implementation: 'xla' (plain matmul, any backend), 'cpu' (explicit backward, see module doc), or
    None to pick by backend.
    """
    if x.shape[-1] != w.shape[0]:
        raise ValueError(f"dense: x has {x.shape[-1]} features but W is {w.shape}")
    impl = implementation or default_implementation()
    if impl == "cpu":
        y = _dense_cpu(x, w)
    elif impl == "xla":
        y = x @ w
    else:
        raise ValueError(f"implementation must be 'cpu', 'xla' or None, got {impl!r}")
    return y if b is None else y + b
