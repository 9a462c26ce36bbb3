"""Peak memory and time of the memory-efficient paths against the plain ones, float32 on this machine.

    python benchmarks/bench_memory.py [loss] [attention] [--sizes 1024 4096 16384] [--time-up-to 4096]

``loss``: the gradient of GPT-2's output layer and cross-entropy (vocabulary 50,257, width 768) over N
tokens, plain (``ops.cross_entropy(h @ W.T)``) against ``kernels.linear_cross_entropy``.
``attention``: the gradient of causal attention (B=1, H=4, head dim 64) over T positions, the reference
(``ops.scaled_dot_product_attention``) against the blockwise path (``kernels.attention(...,
implementation='blockwise')``).
Memory is the compiled executable's temporary buffers (``memory_analysis().temp_size_in_bytes``: what it
allocates besides its inputs and outputs), read without running it; time is the median of 3 runs after a
warm-up. The plain paths are timed only up to ``--time-up-to`` (their largest sizes need more memory than this
machine has); the memory-efficient ones at every size.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
from common import median_time, print_table

from nlp_jax import kernels, ops

MiB = 1 << 20


def _measure(fn, args, timed: bool) -> tuple[float, float | None]:
    compiled = jax.jit(fn).lower(*args).compile()
    temp = compiled.memory_analysis().temp_size_in_bytes / MiB
    seconds = median_time(lambda: compiled(*args), warmup=1, repeats=3, sync=jax.block_until_ready) if timed else None
    return temp, seconds


def loss_cases(n: int):
    v, d = 50257, 768
    h = jax.random.normal(jax.random.key(0), (n, d)) * 0.5
    w = jax.random.normal(jax.random.key(1), (v, d)) * 0.02
    t = jax.random.randint(jax.random.key(2), (n,), 0, v)
    plain = jax.grad(lambda h, w: ops.cross_entropy(h @ w.T, t), (0, 1))
    chunked = jax.grad(lambda h, w: kernels.linear_cross_entropy(h, w, t), (0, 1))
    return {"plain": plain, "chunked": chunked}, (h, w), n * v * 4 / MiB


def attention_cases(t: int):
    shape = (1, t, 4, 64)
    q, k, v = (jax.random.normal(jax.random.key(i), shape) for i in range(3))

    def grad(impl):
        return jax.grad(lambda q, k, v: jnp.sum(kernels.attention(q, k, v, is_causal=True, implementation=impl) ** 2),
                        (0, 1, 2))

    return {"reference": grad("reference"), "blockwise": grad("blockwise")}, (q, k, v), 4 * t * t * 4 / MiB


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", nargs="*", help="loss and/or attention (default: both)")
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="tokens (loss) or sequence lengths (attention)")
    p.add_argument("--time-up-to", type=int, default=4096, help="time the plain path only at sizes up to this")
    a = p.parse_args()
    if set(a.what) - {"loss", "attention"}:
        p.error(f"what: choose from loss, attention, not {' '.join(a.what)}")
    for what in a.what or ("attention", "loss"):
        sizes = a.sizes or ([1024, 4096, 16384] if what == "loss" else [1024, 2048, 4096, 8192, 16384])
        cases = loss_cases if what == "loss" else attention_cases
        rows, names = [], None
        for n in sizes:
            fns, args, full_mib = cases(n)
            names = list(fns)
            row = [n, f"{full_mib:,.0f}"]
            for name in names:
                temp, seconds = _measure(fns[name], args, n <= a.time_up_to or name != names[0])
                row += [f"{temp:,.1f}", "-" if seconds is None else f"{seconds * 1e3:,.0f}"]
            rows.append(row)
            print(row, flush=True)
        size = "tokens" if what == "loss" else "sequence length"
        full = "(N x V) logits MiB" if what == "loss" else "(H x T x T) scores MiB"
        header = [size, full] + [f"{x} {unit}" for x in names for unit in ("temp MiB", "ms")]
        print_table(f"{what}: peak temporary memory of the gradient and its time, float32", header, rows)


if __name__ == "__main__":
    main()
