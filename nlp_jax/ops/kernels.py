"""Builds the package's C++ CPU kernels (``*.cc`` next to this file) and registers them as XLA FFI targets.

A kernel's source ships with the package and is compiled on first use with the system C++ compiler
(``$CXX``, default ``c++``) into ``$NLP_JAX_CACHE/kernels`` (default ``~/.cache/nlp_jax/kernels``), keyed
by the source, the flags and the host, so it is built once per machine. ``register`` returns False when
no compiler works; callers then take their XLA path, which needs nothing.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

import jax
import numpy as np

# -march=native is safe because the library is built on the machine that runs it; -ffp-contract=fast lets
# a * b + c become one fused multiply-add (ISO modes such as -std=c++17 turn contraction off otherwise).
BASE_FLAGS = ("-O3", "-march=native", "-ffp-contract=fast", "-std=c++17", "-shared", "-fPIC", "-pthread")


def cache_dir() -> Path:
    return Path(os.environ.get("NLP_JAX_CACHE", Path.home() / ".cache" / "nlp_jax")) / "kernels"


def build(source: str, flags: tuple[str, ...] = BASE_FLAGS) -> Path:
    """Compile ``source`` (a file name in this package) into a cached shared library; returns its path."""
    src = Path(__file__).with_name(source)
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        raise RuntimeError(f"no C++ compiler {cxx!r} on PATH (set $CXX)")
    headers = b"".join(h.read_bytes() for h in sorted(src.parent.glob("*.h")))
    key = src.read_bytes() + headers + " ".join([cxx, *flags, platform.node(), jax.__version__]).encode()
    lib = cache_dir() / f"{src.stem}_{hashlib.sha256(key).hexdigest()[:16]}.so"
    if not lib.exists():
        lib.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=lib.parent) as tmp:  # build aside, then rename: atomic
            out = Path(tmp) / lib.name
            cmd = [cxx, *flags, f"-I{jax.ffi.include_dir()}", f"-I{src.parent}", str(src), "-o", str(out)]
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"building {src.name} failed:\n{' '.join(cmd)}\n{result.stderr[-2000:]}")
            out.replace(lib)
    return lib


def register(source: str, targets: dict[str, str], flags: tuple[str, ...] = BASE_FLAGS) -> bool:
    """Build ``source`` and register each exported handler symbol under its XLA target name
    (``targets``: target -> symbol) for the CPU platform. False if it cannot be built or loaded."""
    try:
        lib = ctypes.cdll.LoadLibrary(str(build(source, flags)))
    except (RuntimeError, OSError):
        return False
    for target, symbol in targets.items():
        jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")
    return True


def f32(shape) -> jax.ShapeDtypeStruct:
    """A float32 result of the given shape, for :func:`call`."""
    return jax.ShapeDtypeStruct(tuple(shape), np.float32)


def call(available: Callable[[], bool], target: str, outs, *args, vmap_method: str = "broadcast_all", **attrs):
    """``jax.ffi.ffi_call(target, outs)(*args, **attrs)`` for a kernel registered by ``available()``
    (which builds it on first use); a RuntimeError if it cannot be built, so callers take their XLA path."""
    if not available():
        raise RuntimeError(f"the CPU kernel {target!r} is unavailable (no working C++ compiler); use the XLA path")
    return jax.ffi.ffi_call(target, outs, vmap_method=vmap_method)(*args, **attrs)
