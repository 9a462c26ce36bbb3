"""The CPU kernel ``sgns_cpu.cc`` as an XLA FFI custom call (built on first use by ``ops.kernels``).

``available()`` is False when no C++ compiler works; callers then take the XLA path (``ops.sgns``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from nlp_jax.ops import kernels

_TARGET = "nlp_jax_sgns_train"
# Reassociation lets the compiler vectorise the dot-product reductions (no -ffast-math: NaN/inf semantics
# stay intact).
_FLAGS = (*kernels.BASE_FLAGS, "-fno-math-errno", "-fassociative-math", "-fno-signed-zeros", "-fno-trapping-math")


@functools.cache
def available() -> bool:
    """Whether the kernel is built and registered (compiles it on the first call)."""
    return kernels.register("sgns_cpu.cc", {_TARGET: "SgnsTrain"}, _FLAGS)


def sgns_train(w_in: jax.Array, w_out: jax.Array, tokens: jax.Array, docs: jax.Array, reach: jax.Array,
               bounds: jax.Array, lrs: jax.Array, noise: tuple[jax.Array, jax.Array], seed: jax.Array | int, *,
               window: int, negative: int, sg: bool, threads: int, negatives: jax.Array | None = None
               ) -> tuple[jax.Array, jax.Array]:
    """Sequential SGD over the centres ``bounds[0] .. bounds[1] - 1`` of a token chunk (see sgns_cpu.cc);
    the embeddings are updated in place when the caller donates them. tokens, docs, reach (m,) int32;
    bounds (2,) int32; lrs (2,) the rate at the first centre and after the last; noise = (prob, alias), an
    ``ops.sampling.alias_table``, sampled with the int32 ``seed`` unless ``negatives`` are given:
    (m, 2 window, k) for skip-gram, (m, k) for CBOW."""
    if not available():
        raise RuntimeError("the sgns CPU kernel is unavailable (no working C++ compiler); use impl='xla'")
    call = jax.ffi.ffi_call(_TARGET, (jax.ShapeDtypeStruct(w_in.shape, w_in.dtype),
                                      jax.ShapeDtypeStruct(w_out.shape, w_out.dtype)),
                            input_output_aliases={0: 0, 1: 1})
    negatives = jnp.zeros((0,), jnp.int32) if negatives is None else negatives
    i32 = functools.partial(jnp.asarray, dtype=jnp.int32)
    return call(w_in, w_out, i32(tokens), i32(docs), i32(reach), i32(bounds), jnp.asarray(lrs, jnp.float32),
                i32(negatives), noise[0], i32(noise[1]), i32(seed).reshape(1), window=np.int64(window),
                negative=np.int64(negative), sg=np.int64(sg), threads=np.int64(threads))
