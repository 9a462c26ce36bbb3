"""The kernel build: cached by source and flags, and a clean False (so callers take XLA) without a compiler;
where 'auto' takes the kernels; the 8-lane build an AVX2 CPU gets."""

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nlp_jax.kernels import build as kernels

# What the cache does is the same at any optimisation level: these tests compile at -O0 (about 1.5 s a build
# instead of 2.5 s), and build the library once for the module; each test starts from a copy of that cache.
QUICK = ("-O0", *(f for f in kernels.BASE_FLAGS if not f.startswith("-O")))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A cache folder holding matmul.cc built with ``QUICK``."""
    root = tmp_path_factory.mktemp("kernel-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NLP_JAX_CACHE", str(root))
        patch.delenv("NLP_JAX_KERNEL_FLAGS", raising=False)
        try:
            kernels.build("matmul.cc", QUICK)
        except RuntimeError:
            pytest.skip("no working C++ compiler here")
    return root


@pytest.fixture
def cache(built, monkeypatch, tmp_path):
    """This test's own copy of the built cache, as $NLP_JAX_CACHE; returns the cached library."""
    shutil.copytree(built, tmp_path, dirs_exist_ok=True)
    monkeypatch.setenv("NLP_JAX_CACHE", str(tmp_path))
    monkeypatch.delenv("NLP_JAX_KERNEL_FLAGS", raising=False)  # the flags are the tests' own
    (lib,) = (tmp_path / "kernels").glob("matmul_*.so")
    return lib


def test_no_compiler_means_not_registered(monkeypatch, tmp_path):
    monkeypatch.setenv("NLP_JAX_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "no-such-compiler-nlp-jax")
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        kernels.build("matmul.cc")
    assert kernels.register("matmul.cc", {"nlp_jax_test_unused": "Matmul"}) is False


def test_a_build_is_cached_and_keyed_by_flags(cache, tmp_path, monkeypatch):
    mtime = cache.stat().st_mtime_ns
    assert kernels.build("matmul.cc", QUICK) == cache and cache.stat().st_mtime_ns == mtime  # not rebuilt
    other = kernels.build("matmul.cc", (*QUICK, "-DNLP_JAX_TEST_FLAG"))
    assert other != cache and other.parent == tmp_path / "kernels" and other.exists()
    monkeypatch.setenv("NLP_JAX_KERNEL_FLAGS", " -DNLP_JAX_TEST_FLAG ")  # added after the given flags
    assert kernels.build("matmul.cc", QUICK) == other


@pytest.mark.skipif(platform.machine() != "x86_64" or " avx2" not in kernels._cpu_features(),
                    reason="the flags below are x86's")
@pytest.mark.parametrize("extra, lanes", [
    ("", None),  # this CPU's own: 16 with AVX-512, else 8
    ("-mno-avx512f", 8),  # what an AVX2 CPU builds
    ("-mno-avx512f -mno-fma", 0),  # AVX2 without FMA: never measured
    ("-mno-avx2", 0),
])
def test_auto_takes_each_vector_kernel_where_the_built_vectors_are_wide_enough_for_it(extra, lanes, monkeypatch):
    lanes = (16 if " avx512f" in kernels._cpu_features() else 8) if lanes is None else lanes
    monkeypatch.setenv("NLP_JAX_KERNEL_FLAGS", extra)
    monkeypatch.delenv("NLP_JAX_VECTOR_KERNELS", raising=False)
    kernels.vector_lanes.cache_clear()
    try:
        assert kernels.vector_lanes() == lanes
        assert kernels.vector_kernels() is (lanes >= 8) and kernels.vector_kernels(16) is (lanes == 16)
        monkeypatch.setenv("NLP_JAX_VECTOR_KERNELS", "1")  # the override wins either way
        assert kernels.vector_kernels() and kernels.vector_kernels(16)
        monkeypatch.setenv("NLP_JAX_VECTOR_KERNELS", "0")
        assert not kernels.vector_kernels() and not kernels.vector_kernels(16)
        monkeypatch.setenv("CXX", "no-such-compiler-nlp-jax")
        kernels.vector_lanes.cache_clear()
        assert kernels.vector_lanes() == 0  # no compiler, no kernels
    finally:
        kernels.vector_lanes.cache_clear()


@pytest.mark.skipif(" avx512f" not in kernels._cpu_features(), reason="without AVX-512 the other tests run 8 lanes")
def test_the_8_lane_kernels_an_avx2_cpu_builds_equal_the_references(tmp_path):
    """On a CPU with AVX-512 the kernels are built for 16 lanes; an AVX2 CPU builds them for 8 (another
    register tile, other reductions). This builds them as it does (``-mno-avx512f``) and runs the kernels'
    float64-reference tests on them in a process of their own (at -O0, like the tests above: the lanes'
    logic is under test here, not the optimiser)."""
    here = Path(__file__).parent
    tests = [str(here / f) for f in ("test_attention_kernel.py", "test_lstm_kernel.py", "test_matmul_kernel.py",
                                     "test_layer_norm.py", "test_gelu.py")]
    env = {**os.environ, "NLP_JAX_KERNEL_FLAGS": "-mno-avx512f -O0", "NLP_JAX_CACHE": str(tmp_path)}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *tests,
                          "-k", "float64 or equals_scan or finite or leak"], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and " failed" not in run.stdout
    built = sorted(lib.name.split("_")[0] for lib in (tmp_path / "kernels").glob("*.so"))
    assert built == ["attention", "elementwise", "lstm", "matmul"]  # what ran was built with those flags


def test_the_cache_key_holds_the_cpu_features_not_the_host_name(cache, monkeypatch):
    monkeypatch.setattr(kernels.platform, "node", lambda: "another-container")
    assert kernels.build("matmul.cc", QUICK) == cache  # a new hostname on the same CPU reuses the build
    kernels._cpu_features.cache_clear()
    monkeypatch.setattr(kernels, "_cpu_features", lambda: "flags: a different cpu")
    assert kernels.build("matmul.cc", QUICK) != cache  # another CPU gets its own build


@pytest.mark.parametrize("damage", [b"", b"garbage", "truncate"])
def test_a_damaged_cached_library_is_rebuilt_not_loaded(cache, damage):
    good = cache.read_bytes()
    cache.write_bytes(good[: len(good) // 3] if damage == "truncate" else damage)  # SIGBUS if it were loaded
    assert kernels.build("matmul.cc", QUICK) == cache and cache.read_bytes() == good


def test_a_kernel_that_cannot_load_is_reported_once(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("NLP_JAX_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "no-such-compiler-nlp-jax")
    assert kernels.register("matmul.cc", {"nlp_jax_test_unused": "Matmul"}) is False
    assert "the C++ kernel matmul.cc is off (no C++ compiler" in capsys.readouterr().err
