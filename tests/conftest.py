import os
from pathlib import Path

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402

# One compilation cache for the suite's processes: a program compiled once (the tiny models many tests share,
# closures jitted anew at every call) is read back, not compiled again, by either pytest worker. It lives in
# the checkout's .cache/ (git-ignored); NLP_JAX_TEST_JAX_CACHE="" turns it off. The processes tests start
# (the launcher, the 8-device and multi-host workers) do not use it: multi-process JAX coordinates its
# cache across processes, which a test's short-lived workers must not wait on.
_CACHE = os.environ.get("NLP_JAX_TEST_JAX_CACHE", str(Path(__file__).resolve().parents[1] / ".cache" / "jax"))
if _CACHE:
    jax.config.update("jax_compilation_cache_dir", _CACHE)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
jax.config.update("jax_enable_x64", False)
# float64-reference tolerances assume full-precision matmuls: on GPUs/TPUs the default lets XLA use TF32 or
# bfloat16 passes, which would break them (on CPU this changes nothing).
jax.config.update("jax_default_matmul_precision", "highest")
