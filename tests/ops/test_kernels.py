"""The kernel build: cached by source and flags, and a clean False (so callers take XLA) without a compiler."""

import pytest

from nlp_jax.ops import kernels


def test_no_compiler_means_not_registered(monkeypatch, tmp_path):
    monkeypatch.setenv("NLP_JAX_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "no-such-compiler-nlp-jax")
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        kernels.build("matmul_cpu.cc")
    assert kernels.register("matmul_cpu.cc", {"nlp_jax_test_unused": "Matmul"}) is False


def test_a_build_is_cached_and_keyed_by_flags(monkeypatch, tmp_path):
    monkeypatch.setenv("NLP_JAX_CACHE", str(tmp_path))
    try:
        first = kernels.build("matmul_cpu.cc")
    except RuntimeError:
        pytest.skip("no working C++ compiler here")
    assert first.parent == tmp_path / "kernels" and first.exists()
    mtime = first.stat().st_mtime_ns
    assert kernels.build("matmul_cpu.cc") == first and first.stat().st_mtime_ns == mtime  # not rebuilt
    other = kernels.build("matmul_cpu.cc", (*kernels.BASE_FLAGS, "-DNLP_JAX_TEST_FLAG"))
    assert other != first and other.exists()
