"""``make gpu-check``: one script for a lent GPU, within a time budget (default 570 s), printing one table:

1. the shakespeare_char ``gpu`` config for 5,000 iterations in bfloat16 compute (best val loss, full split
   and nanoGPT's estimate; ms/iter; MFU by nanoGPT's formula; compile time), target val loss <= 1.47;
2. causal attention forward + backward, TFLOP/s, by implementation: cuDNN, XLA, our reference, blockwise;
3. the LSTM LM train step's tokens/s (Zaremba's medium size), float32 and bfloat16, and torch.nn.LSTM;
4. the chunked cross-entropy's equality with the plain loss on the GPU (GPT-2's vocabulary);
5. the same GPT config in float32, for as many iterations as the budget leaves (all 5,000 if they fit);
6. nanoGPT (PyTorch, torch.compile) on the same config, when ``--nanogpt DIR`` names a checkout: our ms/iter
   against its (goal >= 1.25x) with its best val loss;
7. the test suite (not slow, not peers) on the GPU, in whatever time is left.

Each section writes the table so far to ``<workdir>/gpu_check.md`` and ``.json``, so a run stopped by the
machine's limit keeps what it measured. It runs on the GPU machine's own Python with the package on
``PYTHONPATH`` (no venv, no install); the data comes from ``NLP_JAX_DATA`` (carry the Tiny Shakespeare
text there: the machine reaches no network). ``--smoke`` runs every section at toy sizes, for CPU tests.
Results go to BENCHMARKS.md with the card and the date.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jax
from flax import nnx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import gpu_sections as S  # noqa: E402
from nlp_jax.data.corpus import RandomBlocks, load_char_corpus  # noqa: E402
from nlp_jax.data.root import resolve  # noqa: E402
from nlp_jax.models.gpt2 import GPT2, lm_loss  # noqa: E402
from nlp_jax.run import load_experiment, main as run_main  # noqa: E402
from nlp_jax.train.trainer import Objective, Trainer  # noqa: E402

# Dense bfloat16 peak of the card, for MFU (nanoGPT divides by the A100's 312 TFLOPS).
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12}
FP32_SLOWDOWN = 2.5  # assumed float32 / bfloat16 time per iteration, to size the float32 run to the budget
SIZES = {  # full (a GPU) and smoke (toy sizes, any machine)
    "full": dict(config="gpu", attention=[(64, 256, 6, 64), (8, 2048, 16, 64), (2, 8192, 16, 128)], lstm=650,
                 loss=(8192, 50257, 768), repeats=10),
    "smoke": dict(config="smoke", attention=[(2, 64, 2, 16)], lstm=16, loss=(64, 101, 16), repeats=2),
}


class Table:
    """The check's rows, rewritten to disk after every section."""

    def __init__(self, workdir: Path):
        self.rows: list[tuple[str, str]] = []
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)

    def add(self, rows) -> None:
        for name, value in rows:
            print(f"  {name}: {value}", flush=True)
            self.rows.append((name, str(value)))
        (self.workdir / "gpu_check.json").write_text(json.dumps(dict(self.rows), indent=2))
        (self.workdir / "gpu_check.md").write_text(self.markdown())

    def markdown(self) -> str:
        return "\n".join(["| gpu-check | result |", "|---|---|", *(f"| {n} | {v} |" for n, v in self.rows)])


def mfu(model_cfg, n_params: int, batch_size: int, seconds_per_iter: float, peak: float) -> float:
    """nanoGPT's estimate_mfu: 6N + 12 L H Q T flops per token, forward and backward."""
    m = model_cfg
    per_token = 6 * n_params + 12 * m.n_layer * m.n_head * (m.n_embd // m.n_head) * m.block_size
    return per_token * m.block_size * batch_size / seconds_per_iter / peak


def compile_seconds(cfg, data) -> float:
    """Time of the first train step (trace + compile + run) minus a steady step."""
    trainer = Trainer(GPT2(cfg.model, rngs=nnx.Rngs(0)), Objective.of(lm_loss), cfg.optim, cfg.train.steps)
    source = RandomBlocks(data, cfg.data.batch_size, cfg.model.block_size, seed=0)
    times = []
    for i in range(3):
        t = time.perf_counter()
        jax.block_until_ready(trainer.step(source(i))["loss"])
        times.append(time.perf_counter() - t)
    return times[0] - times[-1]


def best_evals(workdir: Path) -> dict:
    """The lowest full-split and estimated val losses in a run's metrics.jsonl."""
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    evals = [r for r in records if "val_loss" in r]
    return {k: min(r[k] for r in evals) for k in ("val_loss", "val_loss_estimate") if evals and k in evals[0]}


def gpt_run(spec: str, cfg, dtype: str, steps: int, workdir: Path, overrides: list[str], peak) -> tuple[list, dict]:
    """One run of the char-level GPT config; rows and its summary (``s_per_iter`` added)."""
    summary = run_main([spec, "--rerun", "--set", f"workdir={workdir}", "--set", "train.resume=false",
                        "--set", "train.progress=false", "--set", f"model.compute_dtype={dtype}",
                        "--set", f"train.steps={steps}", *sum((["--set", o] for o in overrides), [])])
    n_params = sum(p.size for p in jax.tree.leaves(nnx.state(GPT2(cfg.model, rngs=nnx.Rngs(0)), nnx.Param)))
    rate = summary["tokens_per_second"]  # 0 when a run is too short to time its steady state
    summary["s_per_iter"] = cfg.data.batch_size * cfg.model.block_size / rate if rate else None
    best = best_evals(workdir)
    s = summary["s_per_iter"]
    label = f"gpt {dtype}, {steps} iters"
    rows = [(f"{label}: best val loss, full split / nanoGPT's estimate (target <= 1.47)",
             " / ".join(f"{best[k]:.4f}" for k in ("val_loss", "val_loss_estimate") if k in best)),
            (f"{label}: ms/iter (steady)", f"{s * 1e3:.2f}" if s else "-"),
            (f"{label}: MFU (nanoGPT's formula, bf16 dense peak)",
             f"{mfu(cfg.model, n_params, cfg.data.batch_size, s, peak):.1%}" if peak and s else "-"),
            (f"{label}: wall time of the run", f"{summary['wall_seconds']} s")]
    return rows, summary


def run_tests(timeout: float) -> str:
    if importlib.util.find_spec("pytest") is None:
        return "not run: pytest is not installed in this Python"
    if timeout < 30:
        return f"not run: {timeout:.0f} s left of the budget"
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", "not slow and not peers",
           str(ROOT / "tests")]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    except subprocess.TimeoutExpired:
        return f"stopped at the budget, after {timeout:.0f} s"
    print(out.stdout[-4000:], out.stderr[-2000:])
    lines = [line for line in out.stdout.splitlines() if " passed" in line or " failed" in line or "error" in line]
    return lines[-1] if lines else f"exit {out.returncode}"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=570, help="seconds for the whole check")
    parser.add_argument("--iters", type=int, default=None, help="GPT iterations (default: the config's 5,000)")
    parser.add_argument("--nanogpt", type=Path, default=None, help="a checkout of github.com/karpathy/nanoGPT")
    parser.add_argument("--smoke", action="store_true", help="every section at toy sizes (for CPU tests)")
    parser.add_argument("--skip-tests", action="store_true", help="leave out the test suite (section 7)")
    parser.add_argument("--workdir", type=Path, default=Path(os.environ.get("OUT", "/tmp"), "gpu_check_run"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra GPT config overrides")
    return parser.parse_args(argv)


def main(argv=None) -> Table:
    args = parse_args(argv)
    start, size = time.monotonic(), SIZES["smoke" if args.smoke else "full"]
    left = lambda: args.budget - (time.monotonic() - start)  # noqa: E731
    device = jax.devices()[0]
    table = Table(args.workdir)
    table.add([("device", f"{device.device_kind} ({jax.default_backend()}), jax {jax.__version__}")])
    spec = str(ROOT / "experiments" / "gpt_shakespeare_char.py") + ":" + size["config"]
    module, _ = load_experiment(spec)
    cfg = module.resolve_config(module.get_config(size["config"]))
    iters = args.iters or cfg.train.steps
    peak = next((v for k, v in PEAK_FLOPS.items() if k in device.device_kind), None)
    half = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, compute_dtype="bfloat16"))
    table.add([("gpt compile time of the train step (bf16)",
                f"{compile_seconds(half, load_char_corpus(cfg.data.path).train):.1f} s")])
    rows, bf16 = gpt_run(spec, cfg, "bfloat16", iters, args.workdir / "gpt_bfloat16", args.overrides, peak)
    table.add(rows)
    table.add(S.attention_rows(size["attention"], repeats=size["repeats"]))
    table.add(S.lstm_rows(size["lstm"]))
    table.add(S.chunked_loss_rows(*size["loss"]))
    nano_reserve = 1.5 * bf16["wall_seconds"] + 90 if args.nanogpt else 0.0
    per_iter = FP32_SLOWDOWN * bf16["wall_seconds"] / iters
    fp32_iters = min(iters, int((left() - nano_reserve - 60) / per_iter) // 250 * 250) if not args.smoke else iters
    if fp32_iters > 0:
        table.add(gpt_run(spec, cfg, "float32", fp32_iters, args.workdir / "gpt_float32", args.overrides, peak)[0])
    else:
        table.add([("gpt float32", f"not run: {left():.0f} s left of the budget")])
    if args.nanogpt:
        try:
            nano = S.run_nanogpt(args.nanogpt, resolve(cfg.data.path), iters, max(left() - 40, 60),
                                 args.workdir / "nanogpt")
            ratio = nano["ms_per_iter"] / (bf16["s_per_iter"] * 1e3) if bf16["s_per_iter"] else None
            table.add([(f"nanoGPT, {nano['iters']} iters: best val loss (estimate)", f"{nano['best_val_loss']:.4f}"),
                       ("nanoGPT: ms/iter (median) / its MFU (A100 peak)",
                        f"{nano['ms_per_iter']:.2f} / {nano['mfu_percent']:.1f}%"),
                       ("speed, ours bf16 vs nanoGPT (goal >= 1.25x)", f"{ratio:.2f}x" if ratio else "-")])
        except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as err:
            table.add([("nanoGPT", f"not run: {err}")])
    else:
        table.add([("nanoGPT", "not run: no --nanogpt checkout given")])
    tests = "not run: --skip-tests" if args.skip_tests else run_tests(left() - 10)
    table.add([("tests (not slow, not peers)", tests)])
    print("\n" + table.markdown())
    return table


if __name__ == "__main__":
    main()
