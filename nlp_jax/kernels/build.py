"""Builds the package's C++ CPU kernels (``csrc/*.cc``) and registers them as XLA FFI targets.

A kernel's source ships with the package and is compiled on first use with the system C++ compiler
(``$CXX``, default ``c++``) into ``$NLP_JAX_CACHE/kernels`` (default ``~/.cache/nlp_jax/kernels``). The
cached library is keyed by the sources, the compiler and its version, the flags, the CPU's feature flags
(the build uses ``-march=native``) and the jax version, so it is built once per machine kind and never
reused on a CPU it was not built for. ``register`` returns False when no compiler works; the dispatch then
takes the reference path, which needs nothing.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

SOURCES = Path(__file__).with_name("csrc")
# -march=native is safe because the library is built on the machine that runs it; -ffp-contract=fast lets
# a * b + c become one fused multiply-add (ISO modes such as -std=c++17 turn contraction off otherwise).
BASE_FLAGS = ("-O3", "-march=native", "-ffp-contract=fast", "-std=c++17", "-shared", "-fPIC", "-pthread")


def cache_dir() -> Path:
    return Path(os.environ.get("NLP_JAX_CACHE", Path.home() / ".cache" / "nlp_jax")) / "kernels"


@functools.cache
def _cpu_features() -> str:
    """The CPU's model and feature flags (what -march=native compiles for), or the machine name."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.machine() + platform.processor()
    wanted = ("model name", "flags", "Features", "CPU part")
    return "\n".join(sorted({line for line in lines if line.split(":")[0].strip() in wanted}))


def _flags(flags: tuple[str, ...]) -> tuple[str, ...]:
    """``flags`` and then those of ``NLP_JAX_KERNEL_FLAGS``."""
    return (*flags, *shlex.split(os.environ.get("NLP_JAX_KERNEL_FLAGS", "")))


@functools.cache
def vector_lanes() -> int:
    """The floats in one vector of the kernels built on ``cpu_kernels.h`` here, as the header picks them
    from the compiler's macros for the build flags: 16 with AVX-512F, 8 with AVX2 and FMA; 0 elsewhere
    (other CPUs, where the kernels were never measured, or no compiler)."""
    cxx = os.environ.get("CXX", "c++")
    try:
        out = subprocess.run([cxx, *_flags(BASE_FLAGS), "-dM", "-E", "-x", "c++", os.devnull], capture_output=True,
                             text=True).stdout
    except OSError:
        return 0
    macros = {line.split()[1] for line in out.splitlines() if line.startswith("#define ")}
    return 16 if "__AVX512F__" in macros else 8 if {"__AVX2__", "__FMA__"} <= macros else 0


def vector_kernels(lanes: int = 8) -> bool:
    """Whether 'auto' takes a C++ vector kernel that beats XLA's code from ``lanes``-float vectors on.
    Built for 8 lanes and limited to AVX2 on an AVX-512 CPU (XLA limited alike), the attention, layer-norm,
    cross-entropy and LSTM kernels beat XLA, while the dense layer's and GELU's made the GPT step slower
    than XLA's code (BENCHMARKS.md, 2026-12-06): those two ask for 16 lanes. ``NLP_JAX_VECTOR_KERNELS=1`` /
    ``0`` overrides the check."""
    forced = os.environ.get("NLP_JAX_VECTOR_KERNELS")
    if forced in ("0", "1"):
        return forced == "1"
    return vector_lanes() >= lanes


@functools.cache
def _compiler_version(cxx: str) -> str:
    result = subprocess.run([cxx, "--version"], capture_output=True, text=True)
    return result.stdout


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _intact(lib: Path) -> bool:
    """Whether ``lib`` is the library this package built: its sha256 equals the one recorded beside it at
    build time. Loading a truncated .so can kill the process (SIGBUS) before Python can catch anything."""
    stamp = lib.with_suffix(".sha256")
    try:
        return lib.is_file() and stamp.read_text().strip() == _digest(lib)
    except OSError:
        return False


def build(source: str, flags: tuple[str, ...] = BASE_FLAGS) -> Path:
    """Compile ``csrc/<source>`` into a cached shared library (rebuilt when the cached one is damaged);
    returns its path. ``NLP_JAX_KERNEL_FLAGS`` adds compiler flags after ``flags`` (e.g. ``-mno-avx512f``
    builds the 8-lane kernels an AVX2 CPU gets, on a CPU with AVX-512)."""
    src = SOURCES / source
    flags = _flags(flags)
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        raise RuntimeError(f"no C++ compiler {cxx!r} on PATH (set $CXX)")
    headers = b"".join(h.read_bytes() for h in sorted(SOURCES.glob("*.h")))
    key = b"\0".join([src.read_bytes(), headers, " ".join([cxx, *flags, jax.__version__]).encode(),
                      _compiler_version(cxx).encode(), _cpu_features().encode()])
    lib = cache_dir() / f"{src.stem}_{hashlib.sha256(key).hexdigest()[:16]}.so"
    if not _intact(lib):
        lib.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=lib.parent) as tmp:  # build aside, then rename: atomic
            out = Path(tmp) / lib.name
            cmd = [cxx, *flags, f"-I{jax.ffi.include_dir()}", f"-I{SOURCES}", str(src), "-o", str(out)]
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"building {src.name} failed:\n{' '.join(cmd)}\n{result.stderr[-2000:]}")
            stamp = Path(tmp) / "stamp"
            stamp.write_text(_digest(out))
            out.replace(lib)
            stamp.replace(lib.with_suffix(".sha256"))  # written last: a library without it is rebuilt
    return lib


def register(source: str, targets: dict[str, str], flags: tuple[str, ...] = BASE_FLAGS) -> bool:
    """Build ``source`` and register each exported handler symbol under its XLA target name
    (``targets``: target -> symbol) for the CPU platform. False if it cannot be built or loaded, said once
    on stderr with the reason (the dispatch then takes the reference path)."""
    try:
        lib = ctypes.cdll.LoadLibrary(str(build(source, flags)))
        handlers = {target: getattr(lib, symbol) for target, symbol in targets.items()}
    except (RuntimeError, OSError, AttributeError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"nlp_jax: the C++ kernel {source} is off ({reason}); using the reference path", file=sys.stderr)
        return False
    for target, handler in handlers.items():
        jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(handler), platform="cpu")
    return True


def f32(shape) -> jax.ShapeDtypeStruct:
    """A float32 result of the given shape, for :func:`call`."""
    return jax.ShapeDtypeStruct(tuple(shape), np.float32)


def call(available: Callable[[], bool], target: str, outs, *args, vmap_method: str = "broadcast_all", **attrs):
    """``jax.ffi.ffi_call(target, outs)(*args, **attrs)`` for a kernel registered by ``available()``
    (which builds it on first use); a RuntimeError if it cannot be built."""
    if not available():
        raise RuntimeError(f"the CPU kernel {target!r} is unavailable (no working C++ compiler)")
    return jax.ffi.ffi_call(target, outs, vmap_method=vmap_method)(*args, **attrs)
