"""The measurements of ``make gpu-check`` besides the GPT runs (``gpu_check.py``): attention TFLOP/s by
implementation, the LSTM LM step's tokens/s, the chunked loss's equality on the device, and nanoGPT run
from a checkout. Each returns ``(check, result)`` rows; a path that cannot run here (cuDNN without a
CUDA GPU, torch missing) gives a row that says so instead of failing the whole check."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from common import interleaved_seconds_per_step, median_time

from nlp_jax import kernels, ops

ATTENTION_IMPLEMENTATIONS = ("cudnn", "xla", "reference", "blockwise")


def causal_attention_flops(b: int, t: int, h: int, d: int) -> float:
    """Forward + backward flops of causal attention as FlashAttention's benchmarks count them: the forward's
    two (T x T x D) products, halved by the causal mask, times 3.5 (the backward is 2.5 forwards)."""
    return 3.5 * 4 * b * h * t * t * d / 2


def attention_rows(shapes, dtype=jnp.bfloat16, repeats: int = 10) -> list[tuple[str, str]]:
    """Causal self-attention forward + backward per implementation: TFLOP/s, and the forward's largest
    deviation from the float32 reference (the check that a fast path computes the same thing)."""
    rows = []
    for b, t, h, d in shapes:
        q, k, v = (jax.random.normal(jax.random.key(i), (b, t, h, d), jnp.float32) for i in range(3))
        exact = jax.jit(lambda q, k, v: ops.scaled_dot_product_attention(q, k, v, is_causal=True))(q, k, v)
        q, k, v = (x.astype(dtype) for x in (q, k, v))
        for impl in ATTENTION_IMPLEMENTATIONS:
            name = f"attention B{b} T{t} H{h} D{d} {jnp.dtype(dtype).name}, {impl}"
            attend = lambda q, k, v, impl=impl: kernels.attention(q, k, v, is_causal=True, implementation=impl)  # noqa: E731
            try:
                out = jax.jit(attend)(q, k, v)
                grad = jax.jit(jax.grad(lambda q, k, v: jnp.sum(attend(q, k, v).astype(jnp.float32) ** 2), (0, 1, 2)))
                seconds = median_time(lambda: grad(q, k, v), repeats=repeats, sync=jax.block_until_ready)
            except (ValueError, NotImplementedError, RuntimeError) as err:  # e.g. cuDNN with no CUDA GPU
                rows.append((name, f"not run: {str(err).splitlines()[0][:200]}"))
                continue
            err = float(jnp.max(jnp.abs(out.astype(jnp.float32) - exact)))
            tflops = causal_attention_flops(b, t, h, d) / seconds / 1e12
            rows.append((name, f"{tflops:.1f} TFLOP/s fwd+bwd ({seconds * 1e3:.2f} ms), "
                               f"max abs err vs f32 ref {err:.1e}"))
    return rows


def lstm_rows(hidden: int, rounds: int = 3, steps: int = 10) -> list[tuple[str, str]]:
    """The LSTM LM train step (bench_rnn's: batch 20 x BPTT 35, vocabulary 10,000, SGD, clip 5), ours in
    float32 and bfloat16 compute and, where torch has the same device, ``torch.nn.LSTM`` (cuDNN on GPU)."""
    import bench_rnn

    data = np.random.default_rng(0).integers(0, bench_rnn.VOCAB, 200_000)
    runners = {f"ours {dt}": bench_rnn.ours(hidden, data, compute_dtype=dt) for dt in ("float32", "bfloat16")}
    device = "cuda" if jax.default_backend() == "gpu" else "cpu"
    try:
        import torch

        if device == "cpu" or torch.cuda.is_available():
            runners[f"torch.nn.LSTM ({device})"] = bench_rnn.torch_lstm(hidden, data, device=device)[0]
    except ImportError:
        pass
    seconds = interleaved_seconds_per_step(runners, rounds=rounds, steps=steps)
    tokens = bench_rnn.BATCH * bench_rnn.BPTT
    return [(f"LSTM LM step, 2 x {hidden}, batch {bench_rnn.BATCH} x {bench_rnn.BPTT}, {name}",
             f"{tokens / s:,.0f} tokens/s ({s * 1e3:.2f} ms)") for name, s in seconds.items()]


def chunked_loss_rows(n: int, v: int, d: int) -> list[tuple[str, str]]:
    """``kernels.linear_cross_entropy`` against the plain logits path on this device, float32 at the
    highest matmul precision (GPUs otherwise take TF32 for float32 products): loss and gradients, and each
    path's compiled temporary memory."""
    h = jax.random.normal(jax.random.key(0), (n, d)) * 0.5
    w = jax.random.normal(jax.random.key(1), (v, d)) * 0.02
    t = jax.random.randint(jax.random.key(2), (n,), 0, v)
    paths = {"plain": lambda h, w: ops.cross_entropy(h @ w.T, t),
             "chunked": lambda h, w: kernels.linear_cross_entropy(h, w, t)}
    results, memory = {}, {}
    with jax.default_matmul_precision("highest"):
        for name, loss in paths.items():
            compiled = jax.jit(jax.value_and_grad(loss, (0, 1))).lower(h, w).compile()
            memory[name] = compiled.memory_analysis().temp_size_in_bytes / 2**20
            results[name] = compiled(h, w)
    (lp, gp), (lc, gc) = results["plain"], results["chunked"]
    loss_err = abs(float(lp) - float(lc))
    grad_err = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(gp, gc))
    verdict = "equal" if loss_err <= 1e-5 and grad_err <= 1e-5 else "NOT EQUAL"
    return [(f"chunked loss N{n} V{v} d{d} f32 vs plain",
             f"{verdict}: loss diff {loss_err:.1e}, max abs grad diff {grad_err:.1e} (tolerance 1e-5)"),
            (f"chunked loss N{n} V{v} d{d} temporary memory",
             f"chunked {memory['chunked']:,.0f} MiB vs plain {memory['plain']:,.0f} MiB")]


_NANO_EVAL = re.compile(r"step (\d+): train loss ([\d.]+), val loss ([\d.]+)")
_NANO_ITER = re.compile(r"iter (\d+): loss ([\d.]+), time ([\d.]+)ms, mfu (-?[\d.]+)%")


def parse_nanogpt_log(text: str, eval_interval: int = 250) -> dict:
    """nanoGPT's train.py output -> best val loss, median ms/iter (iterations 10 on, those right after an
    evaluation excluded: their time includes it) and its last reported MFU (percent, A100 peak)."""
    evals = [(int(s), float(val)) for s, _, val in _NANO_EVAL.findall(text)]
    iters = [(int(i), float(ms), float(m)) for i, _, ms, m in _NANO_ITER.findall(text)]
    steady = [ms for i, ms, _ in iters if i >= 10 and i % eval_interval != 0]
    if not evals or not steady:
        raise ValueError("no evaluation or iteration lines in nanoGPT's output (is it nanoGPT's train.py?)")
    return {"best_val_loss": min(v for _, v in evals), "ms_per_iter": statistics.median(steady),
            "mfu_percent": iters[-1][2], "iters": iters[-1][0]}


def run_nanogpt(checkout: Path, text_file: Path, iters: int, timeout: float, out_dir: Path,
                compile: bool = True) -> dict:
    """nanoGPT's shakespeare_char config (torch.compile, bfloat16 where supported) for ``iters`` iterations
    from a checkout of github.com/karpathy/nanoGPT, on our copy of the text (no download): its own
    prepare.py writes the token files, then train.py runs, stopped at ``timeout`` seconds (what it printed
    until then is parsed). Returns :func:`parse_nanogpt_log`'s fields."""
    checkout = Path(checkout)
    if not (checkout / "train.py").is_file() or not (checkout / "config" / "train_shakespeare_char.py").is_file():
        raise FileNotFoundError(f"--nanogpt {checkout}: not a nanoGPT checkout (no train.py and "
                                "config/train_shakespeare_char.py); clone github.com/karpathy/nanoGPT there")
    data, env = checkout / "data" / "shakespeare_char", dict(os.environ)
    shutil.copyfile(text_file, data / "input.txt")
    if importlib.util.find_spec("requests") is None:  # prepare.py imports it only to download the text we copied
        shim = Path(out_dir, "shim")
        shim.mkdir(parents=True, exist_ok=True)
        (shim / "requests.py").write_text("")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(shim), env.get("PYTHONPATH")]))
    subprocess.run([sys.executable, "prepare.py"], cwd=data, check=True, capture_output=True, timeout=120, env=env)
    cmd = [sys.executable, "train.py", "config/train_shakespeare_char.py", f"--max_iters={iters}",
           f"--lr_decay_iters={iters}", f"--out_dir={out_dir}", f"--compile={compile}"]
    env["PYTHONUNBUFFERED"] = "1"  # so a run stopped at the timeout keeps every line it printed
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    try:
        out = subprocess.run(cmd, cwd=checkout, capture_output=True, text=True, timeout=timeout, env=env)
        log, failed = out.stdout + out.stderr, out.returncode and f"exited {out.returncode}"
    except subprocess.TimeoutExpired as err:  # its output so far is bytes, whatever ``text`` says
        log, failed = (err.stdout or b"").decode(errors="replace"), None
    Path(out_dir, "train.log").write_text(log)
    if failed:
        raise RuntimeError(f"nanoGPT {failed}: {log.strip().splitlines()[-1:]}")
    return parse_nanogpt_log(log)
