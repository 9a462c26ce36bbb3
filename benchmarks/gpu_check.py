"""``make gpu-check``: one script for a lent GPU, within a time budget (default 570 s), printing one table:

1. GPT-2 124M (12 layers, 12 heads, 768 wide, context 1024, vocabulary padded to 50,304) train steps on
   random tokens, bfloat16 compute, AdamW: ms a step, tokens/s, MFU (nanoGPT's formula against the card's
   dense bfloat16 peak), peak memory; and nanoGPT's ``model.py`` with torch.compile on the same card and
   batch when ``--nanogpt DIR`` names a checkout (goals: >= 45% MFU, >= 1.3x nanoGPT's tokens/s); where our
   step's time goes (forward, backward, the rest) and a profiler trace of 3 steps in ``<workdir>/gpt2_trace``;
2. the shakespeare_char ``gpu`` config for 5,000 iterations in bfloat16 compute (best val loss, full split
   and nanoGPT's estimate; ms/iter; MFU by nanoGPT's formula; compile time), target val loss <= 1.47; then the
   same with nanoGPT's attention-probability dropout of 0.2 (the reference attention path, which XLA fuses:
   cuDNN's has no dropout);
3. nanoGPT (PyTorch, torch.compile) on the same config, when ``--nanogpt DIR`` names a checkout: our ms/iter
   against its (goal >= 1.25x) with its best val loss;
4. causal attention forward + backward, TFLOP/s, by implementation: cuDNN, XLA, our reference, blockwise;
5. the LSTM LM train step's tokens/s (Zaremba's medium size), float32 and bfloat16, and torch.nn.LSTM;
6. the chunked cross-entropy's equality with the plain loss on the GPU (GPT-2's vocabulary);
7. every other model family beside its PyTorch peer (``gpu_families``): BERT-base fine-tuning against
   transformers, the transformer encoder-decoder step against torch.nn.Transformer and our beam search, DPO's
   step and a GRPO-style rollout + update on GPT-2 124M against transformers' GPT-2;
8. the same GPT config in float32, for as many iterations as the budget leaves (all 5,000 if they fit);
9. the test suite (not slow, not peers) on the GPU, in whatever time is left.

Each section writes the table so far to ``<workdir>/gpu_check.md`` and ``.json`` (and its wall time to
``gpu_check_seconds.json``), so a run stopped by the machine's limit keeps what it measured; a section that
fails leaves one row with its error and the rest still run. It runs on the GPU machine's own Python with the
package on ``PYTHONPATH`` (no venv, no install); the data comes from ``NLP_JAX_DATA`` (carry the Tiny
Shakespeare text there: the machine reaches no network). ``--smoke`` runs every section at toy sizes, for
CPU tests. Results go to BENCHMARKS.md with the card and the date.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import jax
from flax import nnx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import gpu_families as F  # noqa: E402
import gpu_sections as S  # noqa: E402

from nlp_jax.data.root import resolve  # noqa: E402
from nlp_jax.models.gpt2 import GPT2  # noqa: E402
from nlp_jax.run import load_experiment  # noqa: E402
from nlp_jax.run import main as run_main  # noqa: E402

# Dense bfloat16 peak of the card, for MFU (nanoGPT divides by the A100's 312 TFLOPS).
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12}
FP32_SLOWDOWN = 2.5  # assumed float32 / bfloat16 time per iteration, to size the float32 run to the budget
GPT2_124M = dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50304)  # GPT-2 small, V padded
ATTN_DROPOUT = 0.2  # nanoGPT's shakespeare_char dropout, which its attention applies to the probabilities too
TINY_GPT2 = dict(n_layer=2, n_head=2, n_embd=32, block_size=64, vocab_size=128)
SIZES = {  # full (a GPU) and smoke (toy sizes, any machine)
    "full": dict(config="gpu", attention=[(64, 256, 6, 64), (8, 2048, 16, 64), (2, 8192, 16, 128)], lstm=(650, 3, 10),
                 loss=(8192, 50257, 768), repeats=10, gpt2=GPT2_124M, gpt2_batch=16,
                 bert=(dict(n_layer=12, n_embd=768, n_head=12, n_inner=3072, vocab_size=30522), 32, 128),
                 seq2seq=(dict(src_vocab=8000, tgt_vocab=8000, d_model=512, n_head=8, enc_layers=6, dec_layers=6,
                               d_ff=2048, max_len=64), 128, 64),
                 dpo=(GPT2_124M, 16, 512, 128), grpo=(GPT2_124M, 16, 8, 64, 64), timing={}),
    "smoke": dict(config="smoke", attention=[(2, 64, 2, 16)], lstm=(16, 1, 2), loss=(64, 101, 16), repeats=2,
                  gpt2=TINY_GPT2, gpt2_batch=2,
                  bert=(dict(n_layer=1, n_embd=16, n_head=2, n_inner=32, vocab_size=50), 2, 16),
                  seq2seq=(dict(src_vocab=20, tgt_vocab=20, d_model=16, n_head=2, enc_layers=1, dec_layers=1, d_ff=32,
                                max_len=16), 2, 8),
                  dpo=(TINY_GPT2, 2, 16, 4), grpo=(TINY_GPT2, 2, 2, 4, 4), timing=dict(rounds=1, steps=1)),
}

SECTIONS = ("gpt2 124M", "gpt bfloat16", "gpt bfloat16 attention dropout", "nanoGPT", "attention", "lstm",
            "chunked loss", "bert", "seq2seq", "dpo", "grpo", "gpt float32", "tests")


class Table:
    """The check's rows, rewritten to disk after every section."""

    def __init__(self, workdir: Path, skip=()):
        self.skip = set(skip)  # sections named by --skip: one row says so
        self.rows: list[tuple[str, str]] = []
        self.seconds: dict[str, float] = {}  # each guarded section's wall time
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)

    def add(self, rows) -> None:
        for name, value in rows:
            print(f"  {name}: {value}", flush=True)
            self.rows.append((name, str(value)))
        (self.workdir / "gpu_check.json").write_text(json.dumps(dict(self.rows), indent=2))
        (self.workdir / "gpu_check.md").write_text(self.markdown())

    def guarded(self, name: str, section) -> None:
        """Add a section's rows; a section that fails gives one row with its error (traceback on stderr), so
        one failure on an untried machine does not lose the sections after it."""
        if name in self.skip:
            return self.add([(name, "not run: --skip")])
        start = time.monotonic()
        try:
            self.add(section())
        except Exception as err:  # noqa: BLE001 -- any failure of one measurement is reported, not fatal
            traceback.print_exc()
            self.add([(name, f"failed: {type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}")])
        self.seconds[name] = round(time.monotonic() - start, 1)
        print(f"[{name}: {self.seconds[name]} s]", flush=True)
        (self.workdir / "gpu_check_seconds.json").write_text(json.dumps(self.seconds, indent=2))

    def markdown(self) -> str:
        return "\n".join(["| gpu-check | result |", "|---|---|", *(f"| {n} | {v} |" for n, v in self.rows)])


def mfu(model_cfg, n_params: int, batch_size: int, seconds_per_iter: float, peak: float) -> float:
    """nanoGPT's estimate_mfu: 6N + 12 L H Q T flops per token, forward and backward."""
    m = model_cfg
    per_token = 6 * n_params + 12 * m.n_layer * m.n_head * (m.n_embd // m.n_head) * m.block_size
    return per_token * m.block_size * batch_size / seconds_per_iter / peak


def best_evals(workdir: Path) -> dict:
    """The lowest full-split and estimated val losses in a run's metrics.jsonl."""
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    evals = [r for r in records if "val_loss" in r]
    return {k: min(r[k] for r in evals) for k in ("val_loss", "val_loss_estimate") if evals and k in evals[0]}


def gpt_run(spec: str, cfg, dtype: str, steps: int, workdir: Path, overrides: list[str], peak,
            what: str = "") -> tuple[list, dict]:
    """One run of the char-level GPT config (``what`` names a variant in its rows); rows and its summary
    (``s_per_iter`` added)."""
    summary = run_main([spec, "--rerun", "--set", f"workdir={workdir}", "--set", "train.resume=false",
                        "--set", "train.progress=false", "--set", f"model.compute_dtype={dtype}",
                        "--set", f"train.steps={steps}", *sum((["--set", o] for o in overrides), [])])
    n_params = sum(p.size for p in jax.tree.leaves(nnx.state(GPT2(cfg.model, rngs=nnx.Rngs(0)), nnx.Param)))
    rate = summary["tokens_per_second"]  # 0 when a run is too short to time its steady state
    summary["s_per_iter"] = cfg.data.batch_size * cfg.model.block_size / rate if rate else None
    best = best_evals(workdir)
    s = summary["s_per_iter"]
    label = f"gpt {dtype}{what}, {steps} iters"
    rows = [(f"{label}: best val loss, full split / nanoGPT's estimate (target <= 1.47)",
             " / ".join(f"{best[k]:.4f}" for k in ("val_loss", "val_loss_estimate") if k in best)),
            (f"{label}: ms/iter (steady)", f"{s * 1e3:.2f}" if s else "-"),
            (f"{label}: MFU (nanoGPT's formula, bf16 dense peak)",
             f"{mfu(cfg.model, n_params, cfg.data.batch_size, s, peak):.1%}" if peak and s else "-"),
            (f"{label}: compile time (first logged window less its steady steps)",
             f"{summary['startup_seconds'] - cfg.train.log_every * s:.1f} s" if s else "-"),
            (f"{label}: wall time of the run", f"{summary['wall_seconds']} s")]
    return rows, summary


def nanogpt_rows(checkout: Path, text: Path, iters: int, left, workdir: Path, ours_s_per_iter) -> list:
    """nanoGPT on the same config in the time left (with torch.compile, or without where compiling fails);
    its speed against our bfloat16 run's."""
    try:
        nano, how = S.run_nanogpt(checkout, text, iters, max(left() - 40, 60), workdir), "torch.compile"
    except RuntimeError as err:
        print(f"nanoGPT with torch.compile failed ({err}); again without it", flush=True)
        nano, how = S.run_nanogpt(checkout, text, iters, max(left() - 40, 60), workdir, compile=False), "eager"
    ratio = nano["ms_per_iter"] / (ours_s_per_iter * 1e3) if ours_s_per_iter else None
    return [(f"nanoGPT ({how}), {nano['iters']} iters: best val loss (estimate)", f"{nano['best_val_loss']:.4f}"),
            ("nanoGPT: ms/iter (median) / its MFU (A100 peak)",
             f"{nano['ms_per_iter']:.2f} / {nano['mfu_percent']:.1f}%"),
            ("speed, ours bf16 vs nanoGPT (goal >= 1.25x)", f"{ratio:.2f}x" if ratio else "-")]


def run_tests(timeout: float, log: Path, tests: Path = ROOT / "tests", *, least: float = 30.0) -> str:
    """The fast suite (``tests``) on this machine's default device, in parallel where pytest-xdist is
    installed (JAX told not to preallocate, so the workers share the GPU), its output in ``log``; stopped at
    ``timeout`` with all its workers; not started with less than ``least`` seconds left."""
    if importlib.util.find_spec("pytest") is None:
        return "not run: pytest is not installed in this Python"
    if timeout < least:
        return f"not run: {timeout:.0f} s left of the budget"
    workers = min(8, (os.cpu_count() or 2) // 2) if importlib.util.find_spec("xdist") else 0
    cmd = [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", "-m", "not slow and not peers",
           *(["-n", str(workers)] if workers > 1 else []), str(tests)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    how = f" ({workers} xdist workers)" if workers > 1 else ""
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: pytest and every worker it started
            proc.wait()
            return f"stopped at the budget, after {timeout:.0f} s{how}; {log.name} has the output so far"
    output = log.read_text().splitlines()
    print("\n".join(output[-40:]))
    lines = [line for line in output if " passed" in line or " failed" in line or "error" in line]
    return (lines[-1] if lines else f"exit {proc.returncode}") + how


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=570, help="seconds for the whole check")
    parser.add_argument("--iters", type=int, default=None, help="GPT iterations (default: the config's 5,000)")
    parser.add_argument("--nanogpt", type=Path, default=None, help="a checkout of github.com/karpathy/nanoGPT")
    parser.add_argument("--smoke", action="store_true", help="every section at toy sizes (for CPU tests)")
    parser.add_argument("--skip-tests", action="store_true", help="leave out the test suite (section 9)")
    parser.add_argument("--skip", default="", help=f"comma-separated sections to leave out: {', '.join(SECTIONS)}")
    parser.add_argument("--workdir", type=Path, default=Path(os.environ.get("OUT", "/tmp"), "gpu_check_run"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra GPT config overrides")
    args = parser.parse_args(argv)
    args.skip = {name.strip() for name in args.skip.split(",") if name.strip()} | (
        {"tests"} if args.skip_tests else set())
    if unknown := args.skip - set(SECTIONS):
        parser.error(f"--skip: unknown section(s) {sorted(unknown)}; the sections are {', '.join(SECTIONS)}")
    return args


def main(argv=None) -> Table:
    args = parse_args(argv)
    start, size = time.monotonic(), SIZES["smoke" if args.smoke else "full"]
    left = lambda: args.budget - (time.monotonic() - start)  # noqa: E731
    device = jax.devices()[0]
    table = Table(args.workdir, args.skip)
    table.add([("device", f"{device.device_kind} ({jax.default_backend()}), jax {jax.__version__}")])
    spec = str(ROOT / "experiments" / "gpt_shakespeare_char.py") + ":" + size["config"]
    module, _ = load_experiment(spec)
    cfg = module.resolve_config(module.get_config(size["config"]))
    iters = args.iters or cfg.train.steps
    peak = next((v for k, v in PEAK_FLOPS.items() if k in device.device_kind), None)
    table.guarded("gpt2 124M", lambda: S.gpt2_rows(
        size["gpt2"], size["gpt2_batch"], peak, args.nanogpt, compile=not args.smoke,
        trace_dir=None if args.smoke else args.workdir / "gpt2_trace", **size["timing"]))
    bf16 = {}  # the bfloat16 run's summary, which sizes the float32 run and times nanoGPT against ours

    def bf16_run():
        rows, summary = gpt_run(spec, cfg, "bfloat16", iters, args.workdir / "gpt_bfloat16", args.overrides, peak)
        bf16.update(summary)
        return rows

    table.guarded("gpt bfloat16", bf16_run)
    # nanoGPT's dropout of 0.2 on the attention probabilities too (the reference path, XLA-fused; cuDNN has none)
    table.guarded("gpt bfloat16 attention dropout", lambda: gpt_run(
        spec, cfg, "bfloat16", iters, args.workdir / "gpt_bfloat16_attn_dropout",
        [*args.overrides, f"model.attn_dropout={ATTN_DROPOUT}"], peak, f", attention dropout {ATTN_DROPOUT}")[0])
    if args.nanogpt:
        table.guarded("nanoGPT", lambda: nanogpt_rows(args.nanogpt, resolve(cfg.data.path), iters, left,
                                                      args.workdir / "nanogpt", bf16.get("s_per_iter")))
    else:
        table.add([("nanoGPT", "not run: no --nanogpt checkout given")])
    table.guarded("attention", lambda: S.attention_rows(size["attention"], repeats=size["repeats"]))
    table.guarded("lstm", lambda: S.lstm_rows(*size["lstm"]))
    table.guarded("chunked loss", lambda: S.chunked_loss_rows(*size["loss"]))
    for family in ("bert", "seq2seq", "dpo", "grpo"):  # each model family beside its PyTorch peer
        table.guarded(family, lambda family=family: getattr(F, f"{family}_rows")(*size[family], **size["timing"]))
    per_iter = FP32_SLOWDOWN * bf16.get("wall_seconds", left() / 4) / iters  # a guess when bfloat16 failed
    fp32_iters = min(iters, int((left() - 60) / per_iter) // 250 * 250) if not args.smoke else iters
    if fp32_iters > 0 or "gpt float32" in args.skip:
        table.guarded("gpt float32", lambda: gpt_run(
            spec, cfg, "float32", fp32_iters, args.workdir / "gpt_float32", args.overrides, peak)[0])
    else:
        table.add([("gpt float32", f"not run: {left():.0f} s left of the budget")])
    table.guarded("tests", lambda: [("tests (not slow, not peers)",
                                     run_tests(left() - 10, args.workdir / "tests.log"))])
    print("\n" + table.markdown())
    return table


if __name__ == "__main__":
    main()
