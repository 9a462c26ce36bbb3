import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", False)
# float64-reference tolerances assume full-precision matmuls: on GPUs/TPUs the default lets XLA use TF32 or
# bfloat16 passes, which would break them (on CPU this changes nothing).
jax.config.update("jax_default_matmul_precision", "highest")
