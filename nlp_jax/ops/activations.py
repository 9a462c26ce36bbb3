"""Activations with hand-written derivatives where XLA's own are slow.

``gelu(x) = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2))`` (Hendrycks & Gimpel 2016), exact (erf) or with the
tanh approximation ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`` used by GPT-2. The exact form's
derivative ``Phi(x) + x phi(x)`` is written out (one exp, the forward's Phi reused) instead of
differentiating through ``erfc``, whose XLA CPU lowering is a chain of selects. The C++ CPU kernel is
``nlp_jax.kernels.gelu``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

Array = jax.Array
_SQRT_HALF = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@jax.custom_vjp
def _gelu_exact(x: Array) -> Array:
    return 0.5 * x * (1.0 + jax.lax.erf(x * _SQRT_HALF))


def _gelu_exact_fwd(x):
    cdf = 0.5 * (1.0 + jax.lax.erf(x * _SQRT_HALF))  # Phi(x)
    return x * cdf, (x, cdf)


def _gelu_exact_bwd(res, g):
    x, cdf = res
    pdf = jnp.exp(-0.5 * x * x) * _INV_SQRT_2PI  # phi(x)
    return (g * (cdf + x * pdf),)


_gelu_exact.defvjp(_gelu_exact_fwd, _gelu_exact_bwd)


def gelu(x: Array, approximate: bool = False) -> Array:
    """GELU; ``approximate=True`` is the tanh form (GPT-2's ``gelu_new``)."""
    if approximate:
        return jax.nn.gelu(x, approximate=True)
    return _gelu_exact(x)
