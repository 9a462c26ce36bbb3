"""Builds and registers the CPU kernel ``sgns_cpu.cc`` as an XLA FFI custom call.

The C++ source ships with the package and is compiled on first use with the system C++ compiler
(``$CXX``, default ``c++``) into ``$NLP_JAX_CACHE/kernels`` (default ``~/.cache/nlp_jax/kernels``),
keyed by the source, the flags and the host, so it is built once per machine. ``available()`` is False
when no compiler works; callers then take the XLA path (``ops.sgns``), which needs nothing.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

_SOURCE = Path(__file__).with_name("sgns_cpu.cc")
_TARGET = "nlp_jax_sgns_train"
# -O3 with reassociation lets the compiler vectorise the dot-product reductions (no -ffast-math: NaN/inf
# semantics stay intact); -march=native is safe because the library is built on the machine that runs it.
_FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fassociative-math", "-fno-signed-zeros",
          "-fno-trapping-math", "-std=c++17", "-shared", "-fPIC", "-pthread"]


def _cache_dir() -> Path:
    return Path(os.environ.get("NLP_JAX_CACHE", Path.home() / ".cache" / "nlp_jax")) / "kernels"


def _build() -> Path:
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        raise RuntimeError(f"no C++ compiler {cxx!r} on PATH (set $CXX)")
    tag = hashlib.sha256(_SOURCE.read_bytes() + " ".join([cxx, *_FLAGS, platform.node(), jax.__version__])
                         .encode()).hexdigest()[:16]
    lib = _cache_dir() / f"sgns_cpu_{tag}.so"
    if not lib.exists():
        lib.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=lib.parent) as tmp:  # build aside, then rename: atomic
            out = Path(tmp) / lib.name
            cmd = [cxx, *_FLAGS, f"-I{jax.ffi.include_dir()}", str(_SOURCE), "-o", str(out)]
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"building {_SOURCE.name} failed:\n{' '.join(cmd)}\n{result.stderr[-2000:]}")
            out.replace(lib)
    return lib


@functools.cache
def available() -> bool:
    """Whether the kernel is built and registered (compiles it on the first call)."""
    try:
        lib = ctypes.cdll.LoadLibrary(str(_build()))
    except (RuntimeError, OSError):
        return False
    jax.ffi.register_ffi_target(_TARGET, jax.ffi.pycapsule(lib.SgnsTrain), platform="cpu")
    return True


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
