"""Every experiment runs end to end for 2 steps with its ``:smoke`` config, through the real launcher."""

import json
from pathlib import Path

import pytest

from nlp_jax.run import main

EXPERIMENTS = sorted(Path(__file__).resolve().parents[1].glob("experiments/*.py"))
GPT = Path(__file__).resolve().parents[1] / "experiments" / "gpt_shakespeare_char.py"


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_smoke(path, tmp_path):
    summary = main([f"{path}:smoke", "--set", f"workdir={tmp_path}"])
    assert summary and (tmp_path / "summary.json").exists()
    if "steps" not in summary:  # not a training experiment
        return
    assert summary["steps"] == 2 and summary["status"] == "finished"
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 2
    assert (tmp_path / "loss.png").exists() and (tmp_path / "config.json").exists()


def test_launcher_rejects_unknown_override(capsys):
    with pytest.raises(SystemExit):
        main([f"{GPT}:smoke", "--set", "optim.learning_rate=1"])
    assert "unknown config key" in capsys.readouterr().err


def test_print_config(capsys):
    main([f"{GPT}:cpu", "--print-config", "--set", "train.steps=5"])
    assert json.loads(capsys.readouterr().out)["train"]["steps"] == 5
