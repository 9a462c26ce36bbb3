"""The dense layer ``y = x W + b`` on CPU: the C++ matrix-product kernel (``csrc/matmul.cc``) and a
backward pass stated explicitly; the reference is ``ops.dense``.

On XLA's CPU backend, the plain ``x @ W`` backward lets XLA fuse the upstream elementwise gradient (e.g.
GELU's derivative) into the transpose that feeds the weight-gradient matmul; that fused, strided loop runs
an order of magnitude slower than the arithmetic needs (BENCHMARKS.md, "profile"). The CPU path states the
gradients, ``dx = dy W^T`` and ``dW = x^T dy`` over the flattened tokens, with optimization barriers on
the operands so each transpose is a plain copy. For float32 with at most 2^20 weights, on a CPU with
16-lane vectors (AVX-512), x W and dy W^T go to the C++ kernel (register-tiled, reads W^T in place); the
weight gradient x^T dy, a long contraction over tokens, stays with XLA's dot, which runs it fastest.
Values and gradients equal the reference (tested).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from nlp_jax import ops
from nlp_jax.kernels import build, dispatch

Array = jax.Array
SUPPORTED = ("auto", "reference", "cpu")
_TARGET = "nlp_jax_matmul"
# Above this many weights the kernel's packed copy of W stops fitting in cache and XLA's dot wins: on an
# LSTM LM's 200 x 10,000 output layer the kernel was 7-13% slower per step (BENCHMARKS.md).
_KERNEL_MAX_WEIGHTS = 1 << 20


@functools.cache
def kernel_available() -> bool:
    """Whether ``csrc/matmul.cc`` is built and registered (compiles it on the first call)."""
    return build.register("matmul.cc", {_TARGET: "Matmul"})


def matmul(a: Array, b: Array, *, trans_a: bool = False, trans_b: bool = False) -> Array:
    """op(a) @ op(b) for 2-D float32 arrays by the C++ kernel (not differentiable: :func:`dense` states
    its gradients with further calls)."""
    if a.ndim != 2 or b.ndim != 2 or a.dtype != np.float32 or b.dtype != np.float32:
        raise ValueError(f"matmul: float32 matrices only, got {a.dtype}{a.shape} and {b.dtype}{b.shape}")
    m, k = a.shape[::-1] if trans_a else a.shape
    kb, n = b.shape[::-1] if trans_b else b.shape
    if k != kb:
        raise ValueError(f"matmul: op(a) is {(m, k)} but op(b) is {(kb, n)}")
    return build.call(kernel_available, _TARGET, build.f32((m, n)), a, b, vmap_method="sequential",
                      trans_a=np.int64(trans_a), trans_b=np.int64(trans_b))


def _kernel_suits(w: Array) -> bool:
    """Whether the C++ kernel takes this layer's float32 products (decided when a function is traced,
    outside the custom VJP, whose traces JAX keeps)."""
    small = w.size <= _KERNEL_MAX_WEIGHTS and build.vector_kernels(16)  # with 8 lanes XLA's dot is faster
    return small and kernel_available()


def _f32(*xs: Array) -> bool:
    return all(x.dtype == jnp.float32 for x in xs)


def _forward(x: Array, w: Array, kernel: bool) -> Array:
    if not (kernel and _f32(x, w)):
        return x @ w
    return matmul(x.reshape(-1, x.shape[-1]), w).reshape(*x.shape[:-1], w.shape[1])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def dense_cpu(x: Array, w: Array, kernel: bool) -> Array:
    """``x W`` (no bias) with the CPU backward pass of the module docstring; ``kernel``: whether the C++
    kernel computes x W and dy W^T of float32 operands."""
    return _forward(x, w, kernel)


def _dense_cpu_fwd(x, w, kernel):
    return _forward(x, w, kernel), (x, w)


def _dense_cpu_bwd(kernel, res, dy):
    x, w = res
    x2, dy2 = jax.lax.optimization_barrier((x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])))
    dw = (x2.T @ dy2).astype(w.dtype)  # (Din, Dout); XLA's dot is fastest for this long contraction
    if kernel and _f32(w, x, dy):
        dx = matmul(dy2, w, trans_b=True).reshape(x.shape)  # dy W^T
    else:
        dx = (dy @ w.T.astype(dy.dtype)).astype(x.dtype)
    return dx, dw


dense_cpu.defvjp(_dense_cpu_fwd, _dense_cpu_bwd)


def dense(x: Array, w: Array, b: Array | None = None, *, implementation: str | None = None) -> Array:
    """``y = x W + b`` (``ops.dense``) by the chosen implementation: 'auto' takes the CPU path on CPU and the
    reference elsewhere; 'cpu' is the CPU path (on CPU only). x (..., Din), W (Din, Dout), b (Dout,)."""
    impl = dispatch.check("dense", implementation, SUPPORTED)
    if x.shape[-1] != w.shape[0]:
        raise ValueError(f"dense: x has {x.shape[-1]} features but W is {w.shape}")
    y = dispatch.run("dense", impl, (x, w), reference=ops.dense, cpu=lambda x, w: dense_cpu(x, w, _kernel_suits(w)),
                     cpu_auto=True)
    return y if b is None else y + b
