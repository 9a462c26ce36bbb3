"""Skip-gram / CBOW training over a token chunk behind the dispatch: the reference ``ops.sgns.sgns_train``
(batched scatter-add SGD under ``lax.scan``, any backend) or, on CPU, the C++ kernel ``csrc/sgns.cc``
(sequential per-example SGD as word2vec.c, lock-free threads, negatives from an alias table), equal to
the reference with batches of one example (tested). ``kernel_available()`` is False when no C++ compiler
works; 'auto' then takes the reference.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from nlp_jax.kernels import build, dispatch
from nlp_jax.ops import sgns as S

_TARGET = "nlp_jax_sgns_train"
# Reassociation lets the compiler vectorise the dot-product reductions (no -ffast-math: NaN/inf semantics
# stay intact).
_FLAGS = (*build.BASE_FLAGS, "-fno-math-errno", "-fassociative-math", "-fno-signed-zeros", "-fno-trapping-math")


@functools.cache
def kernel_available() -> bool:
    """Whether ``csrc/sgns.cc`` is built and registered (compiles it on the first call)."""
    return build.register("sgns.cc", {_TARGET: "SgnsTrain"}, _FLAGS)


def sgns_kernel(w_in: jax.Array, w_out: jax.Array, tokens: jax.Array, docs: jax.Array, reach: jax.Array,
               bounds: jax.Array, lrs: jax.Array, noise: tuple[jax.Array, jax.Array], seed: jax.Array | int, *,
               window: int, negative: int, sg: bool, threads: int, negatives: jax.Array | None = None
               ) -> tuple[jax.Array, jax.Array]:
    """Sequential SGD over the centres ``bounds[0] .. bounds[1] - 1`` of a token chunk (see csrc/sgns.cc);
    the embeddings are updated in place when the caller donates them. tokens, docs, reach (m,) int32;
    bounds (2,) int32; lrs (2,) the rate at the first centre and after the last; noise = (prob, alias), an
    ``ops.sampling.alias_table``, sampled with the int32 ``seed`` unless ``negatives`` are given:
    (m, 2 window, k) for skip-gram, (m, k) for CBOW."""
    if not kernel_available():
        raise RuntimeError("the sgns CPU kernel is unavailable (no working C++ compiler); "
                           "use implementation='reference'")
    call = jax.ffi.ffi_call(_TARGET, (jax.ShapeDtypeStruct(w_in.shape, w_in.dtype),
                                      jax.ShapeDtypeStruct(w_out.shape, w_out.dtype)),
                            input_output_aliases={0: 0, 1: 1})
    negatives = jnp.zeros((0,), jnp.int32) if negatives is None else negatives
    i32 = functools.partial(jnp.asarray, dtype=jnp.int32)
    return call(w_in, w_out, i32(tokens), i32(docs), i32(reach), i32(bounds), jnp.asarray(lrs, jnp.float32),
                i32(negatives), noise[0], i32(noise[1]), i32(seed).reshape(1), window=np.int64(window),
                negative=np.int64(negative), sg=np.int64(sg), threads=np.int64(threads))


SUPPORTED = ("auto", "reference", "cpu")


def sgns_train(w_in: jax.Array, w_out: jax.Array, tokens: jax.Array, docs: jax.Array, reach: jax.Array,
               bounds: jax.Array, lrs: jax.Array, noise: tuple[jax.Array, jax.Array], key: jax.Array, *,
               window: int, negative: int, sg: bool, batch: int, threads: int = 1,
               negatives: jax.Array | None = None, implementation: str | None = None) -> tuple[jax.Array, jax.Array]:
    """``ops.sgns.sgns_train`` (arguments there) by the chosen implementation; ``batch`` is the reference's
    examples per SGD step, ``threads`` the kernel's. Returns the updated (w_in, w_out)."""
    impl = dispatch.check("sgns_train", implementation, SUPPORTED)
    if impl == "cpu" and not kernel_available():
        raise ValueError("sgns_train: implementation='cpu' needs a working C++ compiler to build csrc/sgns.cc")
    args = (w_in, w_out, tokens, docs, reach, bounds, lrs, noise, key, negatives)

    def reference(w_in, w_out, tokens, docs, reach, bounds, lrs, noise, key, negatives):
        return S.sgns_train(w_in, w_out, tokens, docs, reach, bounds, lrs, noise, key, window=window,
                            negative=negative, sg=sg, batch=batch, negatives=negatives)

    def cpu(w_in, w_out, tokens, docs, reach, bounds, lrs, noise, key, negatives):
        seed = jax.random.randint(key, (), 0, jnp.iinfo(jnp.int32).max)
        return sgns_kernel(w_in, w_out, tokens, docs, reach, bounds, lrs, noise, seed, window=window,
                           negative=negative, sg=sg, threads=threads, negatives=negatives)

    return dispatch.run("sgns_train", impl, args, reference=reference, cpu=cpu if kernel_available() else None,
                        cpu_auto=True)  # scalar C++: fast on every CPU
