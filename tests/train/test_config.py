import dataclasses

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
