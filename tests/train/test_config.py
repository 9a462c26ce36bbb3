import dataclasses
from pathlib import Path

import pytest

from nlp_jax.train.config import OptimConfig, TrainConfig, apply_overrides, override


@dataclasses.dataclass(frozen=True, kw_only=True)
class Cfg:
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    name: str = "x"
    dims: tuple[int, ...] = (1, 2)


def test_overrides_parse_by_field_type():
    cfg = apply_overrides(Cfg(), ["optim.lr=3e-4", "train.steps=7", "train.resume=false", "name=run1",
                                  "optim.decay_steps=none", "dims=4,5,6"])
    assert cfg.optim.lr == 3e-4 and cfg.train.steps == 7 and cfg.train.resume is False
    assert cfg.name == "run1" and cfg.optim.decay_steps is None and cfg.dims == (4, 5, 6)
    assert override(cfg, "optim.decay_steps=100").optim.decay_steps == 100
    assert Cfg().optim.lr == 1e-3  # frozen: the original is untouched


def test_unknown_key_lists_valid_keys():
    with pytest.raises(KeyError, match="'lr'.*'warmup_steps'|valid|not one of"):
        override(Cfg(), "optim.learning_rate=1")
    with pytest.raises(KeyError, match="is a group"):
        override(Cfg(), "optim=1")


def test_wrong_type_is_rejected():
    with pytest.raises(ValueError, match="train.steps: expected int"):
        override(Cfg(), "train.steps=ten")
    with pytest.raises(ValueError, match="expected a bool"):
        override(Cfg(), "train.resume=maybe")
    with pytest.raises(ValueError, match="key.path=value"):
        override(Cfg(), "train.steps")


@pytest.mark.parametrize("assignment, message", [
    ("train.log_every=0", "TrainConfig.log_every must be >= 1, got 0"),
    ("train.steps=-5", "TrainConfig.steps must be >= 0"),
    ("train.eval_every=-1", "TrainConfig.eval_every must be >= 0"),
    ("optim.lr=-0.001", "OptimConfig.lr must be finite and >= 0.0"),
    ("optim.lr=inf", "OptimConfig.lr must be finite and >= 0.0, got inf"),
    ("optim.beta2=1.0", "OptimConfig.beta2 must be in \\[0, 1\\)"),
    ("data.batch_size=0", "DataConfig.batch_size must be >= 1"),
    ("data.eval_batch_size=0", "DataConfig.eval_batch_size must be >= 1"),
    ("model.block_size=0", "GPT2Config.block_size must be >= 1"),
    ("model.dropout=1.0", "GPT2Config.dropout must be in"),
])
def test_out_of_range_values_are_refused_at_the_override(assignment, message):
    from nlp_jax.run import load_experiment

    module, _ = load_experiment(str(Path(__file__).resolve().parents[2] / "experiments" / "gpt_shakespeare_char.py"))
    with pytest.raises(ValueError, match=message):
        apply_overrides(module.get_config("cpu"), [assignment])


def test_a_stage_share_of_a_config_is_plain_data_and_results_keep_their_settings(tmp_path, capsys):
    from nlp_jax.train.config import to_dict
    from nlp_jax.train.stages import StageResults, fingerprint

    share = {"optim": OptimConfig(lr=0.5), "inner": {"train": TrainConfig(steps=3)}, "batch": 4}
    assert to_dict(share) == {"optim": to_dict(OptimConfig(lr=0.5)), "inner": {"train": to_dict(TrainConfig(steps=3))},
                              "batch": 4}
    assert fingerprint(share) == fingerprint(dict(reversed(share.items()))) != fingerprint({**share, "batch": 5})
    results, calls = StageResults(tmp_path), []
    measure = lambda: calls.append(1) or {"value": len(calls)}  # noqa: E731
    assert results.get("a", measure, share)["value"] == 1
    assert StageResults(tmp_path).get("a", measure, share)["value"] == 1  # read back: not measured again
    assert StageResults(tmp_path).get("a", measure, {**share, "batch": 5})["value"] == 2
    assert "a was measured with other settings" in capsys.readouterr().out
    assert not StageResults(tmp_path).has("a", share) and StageResults(tmp_path).has("a", {**share, "batch": 5})
