"""Causal attention forward + backward, float32: ours vs ``jax.nn.dot_product_attention`` vs PyTorch SDPA.

    python benchmarks/bench_attention.py [--seq 64 256 1024] [--repeats 10]

Shapes: B=8, H=4, head dim 32. Each backend is timed in the same invocation, rounds interleaved
(ours, jax.nn, torch, ours, ...), and the median per backend is reported. Ratio = peer time / our time
(> 1 means ours is faster).
"""

from __future__ import annotations

import argparse
import statistics

import jax
import jax.numpy as jnp
import numpy as np
from common import median_time, print_table

from nlp_jax import kernels


def jax_fwd_bwd(attn):
    def loss(q, k, v):
        return jnp.sum(attn(q, k, v) ** 2)

    return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))


def torch_fwd_bwd(torch, q, k, v):
    def run():
        for x in (q, k, v):
            x.grad = None
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        (out ** 2).sum().backward()
        return q.grad

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        torch = None
    rows = []
    for t in args.seq:
        rng = np.random.default_rng(0)
        arrays = [rng.normal(size=(args.batch, t, args.heads, args.head_dim)).astype(np.float32) for _ in range(3)]
        q, k, v = (jnp.asarray(a) for a in arrays)
        fns = {
            "ours": jax_fwd_bwd(lambda q, k, v: kernels.attention(q, k, v, is_causal=True)),
            "jax.nn": jax_fwd_bwd(lambda q, k, v: jax.nn.dot_product_attention(q, k, v, is_causal=True)),
        }
        times = {name: [] for name in fns}
        if torch is not None:
            tq, tk, tv = (torch.tensor(a.transpose(0, 2, 1, 3), requires_grad=True) for a in arrays)  # (B, H, T, D)
            times["torch"] = []
        repeats = max(2, args.repeats if t <= 256 else args.repeats // 3)
        for _ in range(args.rounds):
            for name, fn in fns.items():
                times[name].append(median_time(lambda: fn(q, k, v), repeats=repeats, sync=jax.block_until_ready))
            if torch is not None:
                times["torch"].append(median_time(torch_fwd_bwd(torch, tq, tk, tv), repeats=repeats))
        ms = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}
        row = [t, f"{ms['ours']:.2f}", f"{ms['jax.nn']:.2f}", f"{ms['jax.nn'] / ms['ours']:.2f}x"]
        row += [f"{ms['torch']:.2f}", f"{ms['torch'] / ms['ours']:.2f}x"] if torch is not None else ["-", "-"]
        rows.append(row)
    print_table(f"causal attention fwd+bwd, B={args.batch} H={args.heads} Dh={args.head_dim} float32 (ms, median)",
                ["T", "ours", "jax.nn", "jax.nn/ours", "torch SDPA", "torch/ours"], rows)


if __name__ == "__main__":
    main()
