"""Every shipped config of every experiment and study builds and validates; the Makefile's targets name
configs that exist; no two configs of an experiment share a run directory."""

import dataclasses
import json
import re
from pathlib import Path

import pytest

from nlp_jax.run import load_experiment
from nlp_jax.train.config import apply_overrides, to_json

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted([*(p.relative_to(ROOT).as_posix() for p in ROOT.glob("experiments/[!_]*.py")),
                      *(p.parent.relative_to(ROOT).as_posix() for p in ROOT.glob("experiments/*/__init__.py"))])
STUDIES = sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("studies/*/study.py"))


def _module(source: str):
    return load_experiment(str(ROOT / source))[0]


def _cases():
    return [(source, name) for source in EXPERIMENTS + STUDIES for name in _module(source).CONFIGS]


def _runs(cfg) -> list:
    """The experiment configs a config stands for (a study's programme runs several in order)."""
    return list(cfg.runs) if hasattr(cfg, "runs") else [cfg]


def test_every_experiment_and_study_is_found():
    assert len(EXPERIMENTS) >= 11 and "experiments/rlhf_sentiment" in EXPERIMENTS
    assert STUDIES == ["studies/bert_pretraining/study.py", "studies/rlhf_sentiment/study.py",
                       "studies/verifiable_rl/study.py"]


@pytest.mark.parametrize("source,name", _cases(), ids=lambda x: x.removeprefix("experiments/").removeprefix("studies/"))
def test_a_config_builds_validates_and_survives_the_command_line(source, name, tmp_path):
    cfg = _module(source).get_config(name)
    for run in _runs(cfg):
        assert dataclasses.is_dataclass(run), (source, name)
        assert json.loads(to_json(run))["workdir"].startswith("runs/"), "a shipped config writes under runs/"
        # the launcher's path: --set parses every field back to an equal config (validation runs again)
        moved = apply_overrides(run, [f"workdir={tmp_path}"])
        assert moved == dataclasses.replace(run, workdir=str(tmp_path))
        if hasattr(run, "train"):
            assert run.train.seed == apply_overrides(run, [f"train.seed={run.train.seed}"]).train.seed


@pytest.mark.parametrize("source", EXPERIMENTS + STUDIES)
def test_an_unknown_config_is_refused_listing_the_configs_there_are(source):
    module = _module(source)
    with pytest.raises(ValueError, match=re.escape(", ".join(module.CONFIGS))):
        module.get_config("no_such_config")


@pytest.mark.parametrize("source", EXPERIMENTS)
def test_no_two_configs_of_an_experiment_share_a_run_directory(source):
    module = _module(source)
    workdirs = [module.get_config(name).workdir for name in module.CONFIGS if name != "default"]
    assert len(set(workdirs)) == len(workdirs), workdirs


def test_the_makefile_has_one_target_per_experiment_naming_configs_that_exist():
    calls = dict(re.findall(r"\$\(call experiment,([\w./]+),([^)]*)\)", (ROOT / "Makefile").read_text()))
    assert sorted(f"experiments/{f}".removesuffix("/") for f in calls) == EXPERIMENTS
    for file, configs in calls.items():
        module = _module(f"experiments/{file}")
        for name in configs.replace('"', " ").split():
            assert name in module.CONFIGS, (file, name)
