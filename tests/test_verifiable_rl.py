"""The verifiable-reward experiment end to end at toy size: SFT, every RL method on one budget of completions,
the held-out curves, the report; a rerun reads every stage back; a bad config is refused before any work."""

import dataclasses
import json

import numpy as np
import pytest

from experiments.verifiable_rl.config import METHODS, Config, get_config
from experiments.verifiable_rl.report import first_reaching, gain, table
from experiments.verifiable_rl.stages import LABELS
from nlp_jax.models.gpt2 import GPT2Config
from nlp_jax.objectives import GroupRLConfig
from nlp_jax.run import main


@pytest.mark.slow
def test_each_trainer_spends_one_budget_and_a_rerun_reads_it_back(tmp_path):
    args = ["experiments/verifiable_rl:smoke", "--set", f"workdir={tmp_path}"]
    summary = main(args)
    assert summary["status"] == "finished"
    data = json.loads((tmp_path / "results.json").read_text())
    cfg = get_config("smoke")
    assert {"grpo", "ppo", "online_dpo"} <= set(cfg.methods)  # each trainer (the other critic-free methods: GRPO's)
    for name in cfg.methods:
        curve = data[name]["curve"]
        assert [p["completions"] for p in curve] == [0, 16, 32]  # SFT, then every eval_every completions
        assert curve[0]["exact_match"] == data["sft"]["exact_match"]
        assert all(0 <= p["exact_match"] <= 1 and p["train_seconds"] >= 0 for p in curve)
        assert [p["train_seconds"] for p in curve] == sorted(p["train_seconds"] for p in curve)
        rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        per = cfg.completions_per_update()[name]
        assert sum("loss" in r for r in rows) * per >= cfg.completions  # the budget was spent, in updates
    md = (tmp_path / "results.md").read_text()
    assert all(f"| {LABELS[name]} |" in md for name in cfg.methods)
    assert (tmp_path / "curves.png").stat().st_size > 0
    before = (tmp_path / "results.json").read_text()
    lines = {n: (tmp_path / n / "metrics.jsonl").read_text() for n in cfg.methods}
    main(args)  # everything stored: nothing trained or judged again
    assert (tmp_path / "results.json").read_text() == before
    assert all((tmp_path / n / "metrics.jsonl").read_text() == lines[n] for n in cfg.methods)


def test_the_report_states_the_gain_its_error_and_when_the_target_is_first_met():
    sft = {"exact_match": 0.25, "exact_match_sem": 0.01}
    g, se = gain({"exact_match": 0.5, "exact_match_sem": 0.02}, sft)
    assert g == pytest.approx(25.0) and se == pytest.approx(100 * np.hypot(0.01, 0.02))
    curve = [{"completions": c, "train_seconds": c / 10, "exact_match": em, "exact_match_sem": 0.02}
             for c, em in ((0, 0.25), (100, 0.44), (200, 0.46), (300, 0.5))]
    assert first_reaching(curve, sft, 20)["completions"] == 200  # 21 points, beyond 3 x 2.2
    assert first_reaching(curve, sft, 30) is None
    data = {"sft": {**sft, "demonstrations": 9, "sampled_exact_match": 0.2, "train_seconds": 4.0},
            "grpo": {"method": "GRPO", **curve[-1], "sampled_exact_match": 0.6, "kl": 1.5, "kl_sem": 0.1,
                     "curve": curve}}
    text = table(data)
    assert "| SFT (9 demonstrations) | 0.250 +- 0.010 | - | 0.200 | 0 | - | 0 | 4 |" in text
    assert "| GRPO | 0.500 +- 0.020 | +25.0 +- 2.2 | 0.600 | 1.50 +- 0.10 | 200 completions, 20 s | 300 | 30 |" in text


def test_every_method_has_a_label_and_a_trainer():
    assert set(LABELS) == set(METHODS)


@pytest.mark.parametrize("change, message", [
    (dict(methods=("grpo", "a2c")), "methods \\['a2c'\\] unknown"),
    (dict(eval_every=100), "eval_every=100 must be a multiple"),
    (dict(group=GroupRLConfig(prompts_per_rollout=4, samples=4, max_new_tokens=3)), "group.max_new_tokens=3 leaves"),
    (dict(model=GPT2Config.tiny(vocab_size=14, block_size=8)), "model needs block_size >= 10"),
    (dict(dpo_beta=0.0), "dpo_beta"),
])
def test_a_bad_config_is_refused_naming_the_field(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(get_config("smoke"), **change)
    assert isinstance(get_config(), Config)
