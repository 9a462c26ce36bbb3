"""``make gpu-check``: one script for a lent GPU (<= 10 minutes): the test suite on the GPU, then the
shakespeare_char ``gpu`` config trained to the end, printed as one table (best val loss, ms/iter, MFU by
nanoGPT's formula, compile time).

It runs on the GPU machine's own Python with the package on ``PYTHONPATH`` (no venv, no install): jax with
CUDA, flax, optax, orbax and chex are expected there; pytest, if missing, is reported and its row skipped.
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
sys.path.insert(0, str(ROOT))

from nlp_jax.data.corpus import RandomBlocks, load_char_corpus  # noqa: E402
from nlp_jax.models.gpt2 import GPT2, lm_loss  # noqa: E402
from nlp_jax.run import load_experiment, main as run_main  # noqa: E402
from nlp_jax.train.trainer import Objective, Trainer  # noqa: E402

# Dense bfloat16 peak of the card, for MFU (nanoGPT divides by the A100's 312 TFLOPS).
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12}


def run_tests(timeout: int) -> str:
    if importlib.util.find_spec("pytest") is None:
        return "not run: pytest is not installed in this Python"
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", "not slow and not peers",
           str(ROOT / "tests")]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout} s"
    print(out.stdout[-4000:], out.stderr[-2000:])
    lines = [line for line in out.stdout.splitlines() if " passed" in line or " failed" in line or "error" in line]
    return lines[-1] if lines else f"exit {out.returncode}"


def mfu(cfg, n_params: int, seconds_per_iter: float, peak: float) -> float:
    """nanoGPT's estimate_mfu: 6N + 12 L H Q T flops per token, forward and backward."""
    m = cfg.model
    per_token = 6 * n_params + 12 * m.n_layer * m.n_head * (m.n_embd // m.n_head) * m.block_size
    return per_token * m.block_size * cfg.data.batch_size / seconds_per_iter / peak


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--test-timeout", type=int, default=240)
    parser.add_argument("--workdir", default=os.environ.get("OUT", "/tmp") + "/gpu_check_run")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra config overrides")
    args = parser.parse_args()
    device = jax.devices()[0]
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, device {device.device_kind}")
    tests = run_tests(args.test_timeout)
    spec = str(ROOT / "experiments" / "gpt_shakespeare_char.py") + ":gpu"
    module, _ = load_experiment(spec)
    cfg = module.get_config("gpu")
    data = load_char_corpus(cfg.data.path)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vocab_size=data.tokenizer.vocab_size))
    compile_s = compile_seconds(cfg, data.train)
    summary = run_main([spec, "--set", f"workdir={args.workdir}", "--set", "train.resume=false",
                        "--set", "train.progress=false", *sum((["--set", o] for o in args.overrides), [])])
    n_params = sum(p.size for p in jax.tree.leaves(nnx.state(GPT2(cfg.model, rngs=nnx.Rngs(0)), nnx.Param)))
    tokens_per_iter = cfg.data.batch_size * cfg.model.block_size
    rate = summary["tokens_per_second"]  # 0 when a run is too short to time its steady state
    s_per_iter = tokens_per_iter / rate if rate else None
    peak = next((v for k, v in PEAK_FLOPS.items() if k in device.device_kind), None)
    rows = [("device", device.device_kind), ("tests (not slow, not peers)", tests),
            ("gpu config: best val loss (target <= 1.47)", f"{summary['best_val_loss']:.4f}"),
            ("steps", summary["steps"]),
            ("ms/iter (steady)", f"{s_per_iter * 1e3:.2f}" if s_per_iter else "-"),
            ("MFU (nanoGPT's formula, bf16 dense peak)",
             f"{mfu(cfg, n_params, s_per_iter, peak):.1%}" if peak and s_per_iter else "-"),
            ("compile time of the train step", f"{compile_s:.1f} s"),
            ("wall time of the run", f"{summary['wall_seconds']} s")]
    print("\n| gpu-check | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    Path(args.workdir, "gpu_check.json").write_text(json.dumps(dict(rows), indent=2))


if __name__ == "__main__":
    main()
