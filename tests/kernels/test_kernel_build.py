"""The kernel build: cached by source and flags, and a clean False (so callers take XLA) without a compiler."""

import pytest

from nlp_jax.kernels import build as kernels


def test_no_compiler_means_not_registered(monkeypatch, tmp_path):
    monkeypatch.setenv("NLP_JAX_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "no-such-compiler-nlp-jax")
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        kernels.build("matmul.cc")
    assert kernels.register("matmul.cc", {"nlp_jax_test_unused": "Matmul"}) is False


def test_a_build_is_cached_and_keyed_by_flags(monkeypatch, tmp_path):
    monkeypatch.setenv("NLP_JAX_CACHE", str(tmp_path))
    try:
        first = kernels.build("matmul.cc")
    except RuntimeError:
        pytest.skip("no working C++ compiler here")
    assert first.parent == tmp_path / "kernels" and first.exists()
    mtime = first.stat().st_mtime_ns
    assert kernels.build("matmul.cc") == first and first.stat().st_mtime_ns == mtime  # not rebuilt
    other = kernels.build("matmul.cc", (*kernels.BASE_FLAGS, "-DNLP_JAX_TEST_FLAG"))
    assert other != first and other.exists()


def test_the_cache_key_holds_the_cpu_features_not_the_host_name(monkeypatch, tmp_path):
    monkeypatch.setenv("NLP_JAX_CACHE", str(tmp_path))
    try:
        first = kernels.build("matmul.cc")
    except RuntimeError:
        pytest.skip("no working C++ compiler here")
    monkeypatch.setattr(kernels.platform, "node", lambda: "another-container")
    assert kernels.build("matmul.cc") == first  # a new hostname on the same CPU reuses the build
    kernels._cpu_features.cache_clear()
    monkeypatch.setattr(kernels, "_cpu_features", lambda: "flags: a different cpu")
    assert kernels.build("matmul.cc") != first  # another CPU gets its own build


@pytest.mark.parametrize("damage", [b"", b"garbage", "truncate"])
def test_a_damaged_cached_library_is_rebuilt_not_loaded(monkeypatch, tmp_path, damage):
    monkeypatch.setenv("NLP_JAX_CACHE", str(tmp_path))
    try:
        lib = kernels.build("matmul.cc")
    except RuntimeError:
        pytest.skip("no working C++ compiler here")
    good = lib.read_bytes()
    lib.write_bytes(good[: len(good) // 3] if damage == "truncate" else damage)  # SIGBUS if it were loaded
    assert kernels.build("matmul.cc") == lib and lib.read_bytes() == good


def test_a_kernel_that_cannot_load_is_reported_once(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("NLP_JAX_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "no-such-compiler-nlp-jax")
    assert kernels.register("matmul.cc", {"nlp_jax_test_unused": "Matmul"}) is False
    assert "the C++ kernel matmul.cc is off (no C++ compiler" in capsys.readouterr().err
