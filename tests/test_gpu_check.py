"""``make gpu-check`` (benchmarks/gpu_check.py) can only be measured on a GPU, but every section runs at toy
sizes on any machine (``--smoke``): the slow test runs it end to end on the CPU and checks the table; the
fast ones check nanoGPT's log parser and the flop count on known answers."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_sections as S  # noqa: E402

NANOGPT_LOG = """\
step 0: train loss 4.2874, val loss 4.2823
iter 0: loss 4.2654, time 29472.01ms, mfu -100.00%
iter 10: loss 3.2147, time 16.20ms, mfu 22.90%
iter 20: loss 2.7875, time 16.40ms, mfu 22.85%
iter 30: loss 2.6155, time 15.90ms, mfu 22.91%
step 250: train loss 1.9686, val loss 2.0668
iter 250: loss 2.0236, time 2250.16ms, mfu 20.82%
iter 260: loss 1.9802, time 16.10ms, mfu 20.97%
step 500: train loss 1.5306, val loss 1.7204
"""


def test_nanogpt_log_gives_best_val_loss_steady_ms_and_mfu():
    out = S.parse_nanogpt_log(NANOGPT_LOG)
    assert out["best_val_loss"] == 1.7204
    assert out["ms_per_iter"] == 16.15  # median of 16.2, 16.4, 15.9, 16.1: iter 0 and the evaluated 250 excluded
    assert out["mfu_percent"] == 20.97 and out["iters"] == 260
    with pytest.raises(ValueError, match="nanoGPT's output"):
        S.parse_nanogpt_log("Traceback (most recent call last): ...")


def test_nanogpt_needs_a_checkout(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a nanoGPT checkout"):
        S.run_nanogpt(tmp_path, tmp_path / "input.txt", 10, 60, tmp_path / "out")


# nanoGPT's model.py interface (GPTConfig fields, GPT(config)(idx, targets) -> (logits, loss),
# configure_optimizers) on a bigram model: what is under test is the harness that imports and times it.
STAND_IN_MODEL = """\
from dataclasses import dataclass

import torch


@dataclass
class GPTConfig:
    block_size: int
    vocab_size: int
    n_layer: int
    n_head: int
    n_embd: int
    dropout: float
    bias: bool


class GPT(torch.nn.Module):
    def __init__(self, config):
        super().__init__()
        self.emb = torch.nn.Embedding(config.vocab_size, config.vocab_size)

    def forward(self, idx, targets):
        logits = self.emb(idx)
        return logits, torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())

    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type):
        return torch.optim.AdamW(self.parameters(), lr=learning_rate, betas=betas, weight_decay=weight_decay)
"""


def test_gpt2_rows_time_ours_and_a_nanogpt_checkout_on_one_batch(tmp_path, monkeypatch):
    """nanoGPT's side and the table; our side runs in the smoke run below (its compilation is the cost)."""
    pytest.importorskip("torch")
    (tmp_path / "model.py").write_text(STAND_IN_MODEL)
    parts = {"forward": 0.0002, "forward + backward": 0.0006}  # of a 1 ms step
    monkeypatch.setattr(S, "_ours_gpt2_step", lambda *a: (lambda n: time.sleep(0.001 * n), 2_000_000, lambda r: parts))
    shape = dict(n_layer=1, n_head=2, n_embd=16, block_size=32, vocab_size=64)
    rows = dict(S.gpt2_rows(shape, 2, 1e12, tmp_path, rounds=1, steps=2, compile=False))
    label = "GPT-2 2M (1 x 16, T 32, V 64), batch 2"
    assert rows[f"{label}, ours bf16"].split(" ms/step, ")[1].split(" tokens/s")[0].replace(",", "").isdigit()
    assert "MFU " in rows[f"{label}, ours bf16"] and "MFU " in rows[f"{label}, nanoGPT (eager)"]
    assert float(rows[f"{label}: speed, ours vs nanoGPT (goal >= 1.3x)"][:-1]) > 0
    assert rows[f"{label}: where ours' step goes (parts timed alone)"].startswith("forward + loss 0.2 ms (")
    assert "model" not in sys.modules  # the checkout's model.py was not left importable as 'model'
    assert S.gpt2_flops_per_token(124_000_000, 12, 12, 768, 1024) == 6 * 124_000_000 + 12 * 12 * 768 * 1024


def test_causal_attention_flops_count_flashattention_s_way():
    # B1 H1 T2 D1: forward 4 * 1 * 1 * 4 * 1 / 2 = 8 flops, times 3.5 with the backward
    assert S.causal_attention_flops(1, 2, 1, 1) == 28.0


def test_a_failing_section_leaves_its_error_and_the_next_section_runs(tmp_path):
    import gpu_check

    table = gpu_check.Table(tmp_path)
    table.guarded("broken", lambda: [("never", 1 / 0)])
    table.guarded("fine", lambda: [("fine", "1.0 s")])
    assert table.rows == [("broken", "failed: ZeroDivisionError: division by zero"), ("fine", "1.0 s")]
    assert json.loads((tmp_path / "gpu_check.json").read_text())["fine"] == "1.0 s"
    assert set(json.loads((tmp_path / "gpu_check_seconds.json").read_text())) == {"broken", "fine"}


def test_skip_names_sections_and_rejects_unknown_ones(tmp_path, capsys):
    import gpu_check

    args = gpu_check.parse_args(["--skip", "lstm, attention", "--skip-tests"])
    assert args.skip == {"lstm", "attention", "tests"}
    table = gpu_check.Table(tmp_path, args.skip)
    table.guarded("lstm", lambda: [("never", 1 / 0)])  # a skipped section is not called
    assert table.rows == [("lstm", "not run: --skip")]
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--skip", "lstm,flash"])
    assert "unknown section(s) ['flash']" in capsys.readouterr().err


@pytest.mark.slow
def test_the_test_run_reports_pytest_s_summary_and_is_killed_with_its_children_at_the_budget(tmp_path):
    import gpu_check

    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_ok.py").write_text("def test_ok():\n    pass\n")
    assert gpu_check.run_tests(120, tmp_path / "ok.log", suite).startswith("1 passed")
    assert gpu_check.run_tests(29, tmp_path / "none.log", suite) == "not run: 29 s left of the budget"
    pid_file = tmp_path / "child.pid"
    (suite / "test_ok.py").unlink()
    (suite / "test_hang.py").write_text(  # a grandchild that outlives a plain kill of pytest
        "import subprocess, sys\n"
        "def test_hang():\n"
        f"    child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
        f"    open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "    child.wait()\n")
    start = time.monotonic()
    result = gpu_check.run_tests(6, tmp_path / "hang.log", suite, least=5)  # pytest starts in about 1 s
    assert result.startswith("stopped at the budget, after 6 s") and time.monotonic() - start < 40
    child = int(pid_file.read_text())
    for _ in range(50):  # the killed grandchild is gone once reaped (it is re-parented to init)
        if not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"process {child}, started by the test run, outlived the budget")


@pytest.mark.slow
def test_every_section_runs_at_toy_sizes(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke", "--budget", "900", "--iters", "4",
           "--skip-tests", "--workdir", str(tmp_path)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.loads((tmp_path / "gpu_check.json").read_text())
    table = (tmp_path / "gpu_check.md").read_text().splitlines()
    assert table[0] == "| gpu-check | result |" and len(table) == len(rows) + 2
    assert all(line.count("|") == 3 for line in table)  # no value breaks the markdown table
    assert not [v for v in rows.values() if v.startswith("failed:")]  # a guarded section keeps going: say so
    seconds = json.loads((tmp_path / "gpu_check_seconds.json").read_text())
    assert {"gpt2 124M", "gpt bfloat16", "gpt bfloat16 attention dropout", "attention", "lstm", "chunked loss",
            "bert", "seq2seq", "dpo", "grpo", "gpt float32"} <= set(seconds)
    for family in ("BERT 1 x 16 fine-tuning step", "transformer seq2seq 1+1 x 16", "DPO step", "GRPO-style"):
        speed = [v for k, v in rows.items() if k.startswith(family) and ": speed, ours vs " in k]
        assert len(speed) == 1 and float(speed[0][:-1]) > 0, (family, speed)  # both sides ran on one batch
    assert rows["transformer seq2seq 1+1 x 16, batch 2 x 8: beam search (5 beams, ours)"].endswith("sentences/s")
    assert "ms/step" in rows["GPT-2 0M (2 x 32, T 64, V 128), batch 2, ours bf16"]
    assert rows["GPT-2 0M (2 x 32, T 64, V 128), batch 2: where ours' step goes (parts timed alone)"].startswith(
        "forward + loss ")
    assert rows["GPT-2 0M (2 x 32, T 64, V 128), batch 2: nanoGPT"] == "not run: no --nanogpt checkout given"
    by_start = lambda prefix: {k: v for k, v in rows.items() if k.startswith(prefix)}  # noqa: E731
    for dtype in ("bfloat16", "bfloat16, attention dropout 0.2", "float32"):
        best = by_start(f"gpt {dtype}, 4 iters: best val loss")
        assert len(best) == 1 and float(next(iter(best.values())).split(" / ")[0]) > 0
        assert float(rows[f"gpt {dtype}, 4 iters: compile time (first logged window less its steady steps)"][:-2]) > 0
    attention = by_start("attention ")
    assert len(attention) == len(S.ATTENTION_IMPLEMENTATIONS)
    for name, value in attention.items():
        if name.endswith("cudnn"):
            assert value.startswith("not run: "), value  # no CUDA GPU here
        else:
            assert "TFLOP/s" in value and float(value.split("max abs err vs f32 ref ")[1]) < 0.05, value
    lstm = by_start("LSTM LM step")
    assert any("bfloat16" in k for k in lstm) and all("tokens/s" in v for v in lstm.values())
    assert next(iter(by_start("chunked loss N64 V101 d16 f32").values())).startswith("equal")
    assert rows["nanoGPT"] == "not run: no --nanogpt checkout given"
    assert rows["tests"] == "not run: --skip"
