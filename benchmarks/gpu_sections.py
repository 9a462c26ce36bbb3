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


def gpt2_flops_per_token(n_params: int, n_layer: int, n_head: int, n_embd: int, block_size: int) -> float:
    """nanoGPT's estimate_mfu count: 6 N + 12 L H Q T flops a token, forward and backward."""
    return 6 * n_params + 12 * n_layer * n_head * (n_embd // n_head) * block_size


def _ours_gpt2_step(shape: dict, batch: int, dtype: str, data: np.ndarray):
    """Our GPT-2 train step as ``train`` runs it (``Trainer.step``: forward, backward, global-norm clip 1.0,
    AdamW lr 6e-4, weight decay 0.1, betas 0.9 / 0.95), a random block batch a step, the loss read back."""
    from flax import nnx

    from nlp_jax.data.corpus import RandomBlocks
    from nlp_jax.models.gpt2 import GPT2, GPT2Config
    from nlp_jax.objectives import Objective, lm_loss
    from nlp_jax.train.config import OptimConfig
    from nlp_jax.train.trainer import Trainer

    model = GPT2(GPT2Config(**shape, dropout=0.0, compute_dtype=dtype), rngs=nnx.Rngs(0))
    n_params = sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    optim = OptimConfig(lr=6e-4, min_lr=6e-5, warmup_steps=10, beta2=0.95, weight_decay=0.1, grad_clip=1.0)
    trainer = Trainer(model, Objective.of(lm_loss), optim, 10_000)
    source = RandomBlocks(data, batch, shape["block_size"], seed=0)

    def run(n):
        for _ in range(n):
            float(trainer.step(source(trainer.step_count))["loss"])

    fixed = {k: jnp.asarray(v) for k, v in source(0).items()}

    def parts(repeats: int) -> dict[str, float]:
        """Seconds of the step's parts alone on one fixed batch: the forward pass with the loss, and forward +
        backward (the rest of a step: clipping, AdamW, the batch's transfer, reading the loss). Pure functions
        of the parameters as they are now (a step donates the buffers of the ones before)."""
        graphdef, params = nnx.split(trainer.model)
        loss = lambda p, b: lm_loss(nnx.merge(graphdef, p), b, None)[0]  # noqa: E731
        forward, backward = jax.jit(loss), jax.jit(jax.grad(loss))
        timed = lambda fn: median_time(lambda: fn(params, fixed), repeats=repeats,  # noqa: E731
                                       sync=jax.block_until_ready)
        return {"forward": timed(forward), "forward + backward": timed(backward)}

    return run, n_params, parts


def _nanogpt_step(checkout: Path, shape: dict, batch: int, data: np.ndarray, compile: bool):
    """nanoGPT's ``model.py`` (imported from the checkout, never copied) trained as its train.py does on one
    device: bfloat16 autocast where the device has it, torch.compile, its fused AdamW, clip 1.0."""
    import torch

    sys.path.insert(0, str(checkout))
    try:
        from model import GPT, GPTConfig
    finally:  # nothing else sees the checkout's files as top-level modules
        sys.path.remove(str(checkout))
        sys.modules.pop("model", None)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    model = GPT(GPTConfig(**shape, dropout=0.0, bias=True)).to(device)
    optimizer = model.configure_optimizers(0.1, 6e-4, (0.9, 0.95), device)
    step_model = torch.compile(model) if compile else model
    ctx = (torch.amp.autocast(device_type="cuda", dtype=torch.bfloat16) if device == "cuda"
           else torch.autocast(device_type="cpu", enabled=False))
    tokens = torch.from_numpy(data.astype(np.int64))
    t = shape["block_size"]

    def run(n):
        for _ in range(n):
            ix = torch.randint(len(tokens) - t, (batch,))
            x = torch.stack([tokens[i:i + t] for i in ix]).to(device, non_blocking=True)
            y = torch.stack([tokens[i + 1:i + 1 + t] for i in ix]).to(device, non_blocking=True)
            with ctx:
                _, loss = step_model(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            loss.item()

    def peak_bytes():
        return torch.cuda.max_memory_allocated() if device == "cuda" else None

    return run, peak_bytes


def gpt2_rows(shape: dict, batch: int, peak: float | None, nanogpt: Path | None, *, rounds: int = 3,
              steps: int = 10, compile: bool = True, trace_dir: Path | None = None) -> list[tuple[str, str]]:
    """GPT-2 (``shape``: 124M is 12 x 12 heads x 768, context 1024, vocabulary 50,304) train steps on random
    tokens, ours in bfloat16 compute and, given a nanoGPT checkout, its model with torch.compile on the same
    device and batch, timed in interleaved rounds: ms a step, tokens/s, MFU (nanoGPT's formula against the
    card's dense bfloat16 ``peak``), peak device memory, and the speed ratio; then where our step's time goes
    (its forward and backward passes timed alone) and, given ``trace_dir``, a JAX profiler trace of 3 steps
    there (for TensorBoard or Perfetto). ``compile=False`` runs nanoGPT eagerly (the CPU smoke test: inductor
    compiles slowly there)."""
    data = np.random.default_rng(0).integers(0, shape["vocab_size"], 2_000_000).astype(np.int32)
    ours, n_params, parts = _ours_gpt2_step(shape, batch, "bfloat16", data)
    runners = {"ours bf16": ours}
    memory = {"ours bf16": lambda: (jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use")}
    how = None
    if nanogpt is not None:
        for how in ("torch.compile", "eager")[0 if compile else 1:]:
            try:
                run, peak_bytes = _nanogpt_step(nanogpt, shape, batch, data, compile=how == "torch.compile")
                run(2)  # compiles here: a failure to compile falls back to eager
                break
            except Exception as err:  # noqa: BLE001 -- e.g. no C compiler for inductor on this machine
                print(f"nanoGPT with {how} failed ({type(err).__name__}: {err}); trying the next way", flush=True)
                run = None
        if run is not None:
            runners[f"nanoGPT ({how})"], memory[f"nanoGPT ({how})"] = run, peak_bytes
    seconds = interleaved_seconds_per_step(runners, rounds=rounds, steps=steps)
    tokens = batch * shape["block_size"]
    flops = gpt2_flops_per_token(n_params, shape["n_layer"], shape["n_head"], shape["n_embd"], shape["block_size"])
    label = (f"GPT-2 {n_params / 1e6:.0f}M ({shape['n_layer']} x {shape['n_embd']}, T {shape['block_size']}, "
             f"V {shape['vocab_size']:,}), batch {batch}")
    rows = []
    for name, s in seconds.items():
        used = memory[name]()
        rows.append((f"{label}, {name}", f"{s * 1e3:.1f} ms/step, {tokens / s:,.0f} tokens/s, MFU "
                     + (f"{flops * tokens / s / peak:.1%}" if peak else "- (no peak known for this device)")
                     + (f", peak memory {used / 2**30:.1f} GiB" if used else "")))
    step, part = seconds["ours bf16"], parts(max(steps, 3))
    fwd, bwd = part["forward"], part["forward + backward"] - part["forward"]
    rest = step - fwd - bwd
    rows.append((f"{label}: where ours' step goes (parts timed alone)",
                 f"forward + loss {fwd * 1e3:.1f} ms ({fwd / step:.0%}), backward {bwd * 1e3:.1f} ms "
                 f"({bwd / step:.0%}), clip + AdamW + the rest {rest * 1e3:.1f} ms ({rest / step:.0%})"))
    if trace_dir is not None:
        with jax.profiler.trace(str(trace_dir)):
            ours(3)
        rows.append((f"{label}: profiler trace of 3 steps", str(trace_dir)))
    if len(seconds) > 1:
        theirs = next(s for name, s in seconds.items() if name != "ours bf16")
        rows.append((f"{label}: speed, ours vs nanoGPT (goal >= 1.3x)", f"{theirs / seconds['ours bf16']:.2f}x"))
    else:
        rows.append((f"{label}: nanoGPT", "not run: no --nanogpt checkout given" if nanogpt is None
                     else "not run: it failed with torch.compile and eagerly (see the log)"))
    return rows
