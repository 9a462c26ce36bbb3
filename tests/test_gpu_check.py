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
    result = gpu_check.run_tests(10, tmp_path / "hang.log", suite, least=5)
    assert result.startswith("stopped at the budget, after 10 s") and time.monotonic() - start < 40
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
    assert {"gpt bfloat16", "attention", "lstm", "chunked loss", "gpt float32"} <= set(seconds)
    by_start = lambda prefix: {k: v for k, v in rows.items() if k.startswith(prefix)}  # noqa: E731
    for dtype in ("bfloat16", "float32"):
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
