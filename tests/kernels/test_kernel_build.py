"""The kernel build: cached by source and flags, and a clean False (so callers take XLA) without a compiler."""

import shutil

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
    (lib,) = (tmp_path / "kernels").glob("matmul_*.so")
    return lib


def test_no_compiler_means_not_registered(monkeypatch, tmp_path):
    monkeypatch.setenv("NLP_JAX_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "no-such-compiler-nlp-jax")
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        kernels.build("matmul.cc")
    assert kernels.register("matmul.cc", {"nlp_jax_test_unused": "Matmul"}) is False


def test_a_build_is_cached_and_keyed_by_flags(cache, tmp_path):
    mtime = cache.stat().st_mtime_ns
    assert kernels.build("matmul.cc", QUICK) == cache and cache.stat().st_mtime_ns == mtime  # not rebuilt
    other = kernels.build("matmul.cc", (*QUICK, "-DNLP_JAX_TEST_FLAG"))
    assert other != cache and other.parent == tmp_path / "kernels" and other.exists()


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
