"""Matrix products on CPU by the C++ kernel ``matmul_cpu.cc`` (built on first use by ``ops.kernels``).

``matmul(a, b, trans_a=, trans_b=)`` computes op(a) @ op(b) for float32 matrices, op the identity or the
transpose; ``ops.dense`` uses it for its forward and backward products on CPU. ``kernel_available()`` is
False when no C++ compiler works; callers then use XLA's dot.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from nlp_jax.ops import kernels

Array = jax.Array
_TARGET = "nlp_jax_matmul"


@functools.cache
def kernel_available() -> bool:
    """Whether ``matmul_cpu.cc`` is built and registered (compiles it on the first call)."""
    return kernels.register("matmul_cpu.cc", {_TARGET: "Matmul"})


def matmul(a: Array, b: Array, *, trans_a: bool = False, trans_b: bool = False) -> Array:
    """op(a) @ op(b) for 2-D float32 arrays by the C++ kernel (not differentiable: ``ops.dense`` states
    its gradients with further calls)."""
    if a.ndim != 2 or b.ndim != 2 or a.dtype != np.float32 or b.dtype != np.float32:
        raise ValueError(f"matmul: float32 matrices only, got {a.dtype}{a.shape} and {b.dtype}{b.shape}")
    m, k = a.shape[::-1] if trans_a else a.shape
    kb, n = b.shape[::-1] if trans_b else b.shape
    if k != kb:
        raise ValueError(f"matmul: op(a) is {(m, k)} but op(b) is {(kb, n)}")
    return kernels.call(kernel_available, _TARGET, kernels.f32((m, n)), a, b, vmap_method="sequential",
                        trans_a=np.int64(trans_a), trans_b=np.int64(trans_b))
