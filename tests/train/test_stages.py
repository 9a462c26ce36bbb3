"""A multi-stage run's stages declared once: settings made of the declared fields and of the stages read,
checked at declaration; and the one way a stage trains."""

import dataclasses

import pytest

from nlp_jax.train.config import OptimConfig, TrainConfig
from nlp_jax.train.records import check_resume
from nlp_jax.train.stages import Stage, Stages, fingerprint


@dataclasses.dataclass(frozen=True, kw_only=True)
class Seeds:
    pairs: int = 11


@dataclasses.dataclass(frozen=True, kw_only=True)
class Cfg:
    sft_optim: OptimConfig = OptimConfig(lr=1e-3)
    sft_train: TrainConfig = TrainConfig(steps=10)
    prompts: int = 4
    rollouts: int = 2
    seeds: Seeds = Seeds()


def graph(cfg: Cfg) -> Stages:
    return Stages(cfg, sft=Stage(fields=("optim=sft_optim", "train=sft_train"), ignore=("sft_train.progress",)),
                  pairs=Stage(fields=("prompts", "seeds.pairs"), reads=("sft",)),
                  ppo=Stage(fields=("rollouts",), reads=("sft", "pairs"), resumable=("rollouts",)))


def test_a_stage_depends_on_its_fields_and_on_every_stage_it_reads():
    cfg = Cfg()
    pairs = graph(cfg).settings("pairs")
    assert pairs["prompts"] == 4 and pairs["seeds.pairs"] == 11 and pairs["<sft>"]["optim"]["lr"] == 1e-3
    assert "progress" not in pairs["<sft>"]["train"]  # ignored: it changes no result
    same = graph(dataclasses.replace(cfg, sft_train=dataclasses.replace(cfg.sft_train, progress=False)))
    assert fingerprint(same.settings("ppo")) == fingerprint(graph(cfg).settings("ppo"))
    more = graph(dataclasses.replace(cfg, sft_optim=OptimConfig(lr=2e-3)))  # the SFT changed: every reader too
    assert all(fingerprint(more.settings(s)) != fingerprint(graph(cfg).settings(s)) for s in ("sft", "pairs", "ppo"))
    fewer = graph(dataclasses.replace(cfg, rollouts=3))  # only PPO's own field
    assert fingerprint(fewer.settings("pairs")) == fingerprint(graph(cfg).settings("pairs"))
    assert fingerprint(fewer.settings("ppo")) != fingerprint(graph(cfg).settings("ppo"))
    assert graph(cfg).settings("ppo", kl_coef=0.1)["kl_coef"] == 0.1  # a per-run share


def test_a_stage_s_resumable_keys_are_honoured_by_the_resume_check(tmp_path):
    stored, longer = graph(Cfg()).settings("ppo"), graph(Cfg(rollouts=3)).settings("ppo")
    check_resume(tmp_path, stored, longer, 5, longer.RESUMABLE)  # more rollouts: resumable, recorded
    assert '"rollouts": 3' in (tmp_path / "config_segments.jsonl").read_text()
    assert longer.plus(round=1).RESUMABLE == ("rollouts",)
    other = graph(Cfg(prompts=8)).settings("ppo")
    with pytest.raises(ValueError, match=r"<pairs>.prompts: 4 -> 8.*or move .* aside to train it again") as err:
        check_resume(tmp_path, stored, other, 5, other.RESUMABLE)
    assert "train.resume" not in str(err.value)  # a key this stage's settings do not have


@pytest.mark.parametrize("stages, message", [
    (dict(sft=Stage(fields=("no_such",))), "stage 'sft': 'no_such' is not a field of Cfg"),
    (dict(sft=Stage(fields=("seeds.nope",))), "'seeds.nope' is not a field"),
    (dict(pairs=Stage(reads=("sft",)), sft=Stage()), "stage 'pairs' reads 'sft', which is not a stage declared "
                                                      "before it"),
    (dict(sft=Stage(fields=("prompts",), ignore=("sft_train.progress",))), "lies in none of its fields"),
])
def test_a_bad_declaration_is_refused_naming_the_stage(stages, message):
    with pytest.raises(ValueError, match=message):
        Stages(Cfg(), **stages).settings(list(stages)[-1])


def test_an_unknown_stage_is_named():
    with pytest.raises(KeyError, match="no stage named 'rm'; the stages are sft, pairs, ppo"):
        graph(Cfg()).settings("rm")
