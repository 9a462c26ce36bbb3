"""The affine map ``y = x W + b``, with a CPU-tuned backward pass behind a backend dispatch.

On XLA's CPU backend, the plain ``x @ W`` backward lets XLA fuse the upstream elementwise gradient
(e.g. GELU's derivative) into the transpose that feeds the weight-gradient matmul; that fused, strided
loop runs an order of magnitude slower than the arithmetic needs (BENCHMARKS.md, "profile"). The CPU
path states the gradients explicitly, ``dx = dy W^T`` and ``dW = x^T dy`` over the flattened tokens, and
puts optimization barriers on the operands so each transpose is a plain (fast) copy. For float32, the
forward product x W and dx = dy W^T go to the C++ kernel of ``matmul_cpu`` (which reads W^T in place)
where it is available and W has at most 2^20 weights: on a small model's shapes XLA's CPU dot reaches
100-170 GFLOP/s on two cores, the kernel up to 1.3x that. The weight gradient x^T dy, a long contraction
over tokens, stays with XLA's dot, which runs it fastest. Values and gradients equal the plain path
(tested); other backends use the plain path.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from nlp_jax.ops import matmul_cpu

Array = jax.Array


# Above this many weights the kernel's packed copy of W stops fitting in cache and XLA's dot wins: on an
# LSTM LM's 200 x 10,000 output layer the kernel was 7-13% slower per step (BENCHMARKS.md).
_KERNEL_MAX_WEIGHTS = 1 << 20


def _use_kernel(w: Array, *xs: Array) -> bool:
    small = w.size <= _KERNEL_MAX_WEIGHTS
    return small and all(x.dtype == jnp.float32 for x in (w, *xs)) and matmul_cpu.kernel_available()


def _dense_cpu_forward(x: Array, w: Array) -> Array:
    if not _use_kernel(w, x):
        return x @ w
    return matmul_cpu.matmul(x.reshape(-1, x.shape[-1]), w).reshape(*x.shape[:-1], w.shape[1])


@jax.custom_vjp
def _dense_cpu(x: Array, w: Array) -> Array:
    return _dense_cpu_forward(x, w)


def _dense_cpu_fwd(x, w):
    return _dense_cpu_forward(x, w), (x, w)


def _dense_cpu_bwd(res, dy):
    x, w = res
    x2, dy2 = jax.lax.optimization_barrier((x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])))
    dw = (x2.T @ dy2).astype(w.dtype)  # (Din, Dout); XLA's dot is fastest for this long contraction
    if _use_kernel(w, x, dy):
        dx = matmul_cpu.matmul(dy2, w, trans_b=True).reshape(x.shape)  # dy W^T
    else:
        dx = (dy @ w.T.astype(dy.dtype)).astype(x.dtype)
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
