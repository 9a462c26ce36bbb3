"""The C++ CPU kernels' tests (``test_*_kernel.py``) run only where JAX's default backend is the CPU;
the dispatch tests run everywhere."""

import jax
import pytest


def pytest_collection_modifyitems(config, items):
    if jax.default_backend() == "cpu":
        return
    skip = pytest.mark.skip(reason=f"C++ CPU kernel test; the default backend is {jax.default_backend()}")
    for item in items:
        if item.path.name.endswith("_kernel.py"):
            item.add_marker(skip)


@pytest.fixture
def vector_kernels(monkeypatch):
    """'auto' takes the vector kernels as on a CPU with AVX-512 or AVX2 (where they are the fast path)."""
    from nlp_jax.kernels import build

    monkeypatch.setattr(build, "vector_kernels", lambda lanes=8: True)
