"""Configs as frozen dataclasses, and the ``--set a.b=value`` override syntax.

An override names a field path through nested dataclasses; an unknown name fails with the list of valid
names at that level, and a value that does not parse as the field's type fails with the expected type.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any

from nlp_jax.validate import at_least, check_fields, in_unit, positive


@dataclasses.dataclass(frozen=True, kw_only=True)
class OptimConfig:
    name: str = "adamw"  # 'adamw' or 'sgd' (plain SGD, as Zaremba et al. 2014)
    lr: float = 1e-3  # peak learning rate
    min_lr: float = 1e-4  # final learning rate of the cosine decay
    warmup_steps: int = 100  # linear warmup from 0 to lr
    decay_steps: int | None = None  # cosine decay length (warmup included); None = train.steps
    schedule: str = "cosine"  # 'cosine' (warmup + cosine), 'constant' (warmup then flat), or 'epoch_decay'
    steps_per_epoch: int = 0  # 'epoch_decay': steps in one epoch
    decay_start_epoch: int = 4  # 'epoch_decay': lr is constant for this many epochs, then decays
    decay_rate: float = 0.5  # 'epoch_decay': lr factor per epoch after the start
    beta1: float = 0.9  # AdamW first-moment decay
    beta2: float = 0.99  # AdamW second-moment decay
    eps: float = 1e-8  # AdamW epsilon
    weight_decay: float = 0.1  # decoupled weight decay, on parameters with ndim >= 2 only
    grad_clip: float = 1.0  # global-norm clipping threshold; 0 disables

    def __post_init__(self):
        check_fields(self, lr=at_least(0.0), min_lr=at_least(0.0), warmup_steps=at_least(0),
                     decay_steps=((lambda v: v is None or v >= 1), "None or >= 1"), steps_per_epoch=at_least(0),
                     decay_start_epoch=at_least(0), decay_rate=positive(), beta1=in_unit(),
                     beta2=in_unit(), eps=positive(), weight_decay=at_least(0.0),
                     grad_clip=at_least(0.0))


@dataclasses.dataclass(frozen=True, kw_only=True)
class MeshConfig:
    data: int = 1  # data-parallel groups (-1: every device the fsdp axis leaves); see train.sharding
    fsdp: int = 1  # devices each parameter and optimizer moment is split over (FSDP)

    def __post_init__(self):
        check_fields(self, data=((lambda v: v == -1 or v >= 1), "-1 or >= 1"), fsdp=at_least(1))


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    steps: int = 2000  # optimizer steps
    seed: int = 1337  # seed of parameter init, data order and dropout
    log_every: int = 10  # steps between metric lines
    eval_every: int = 250  # steps between evaluations (0: only at the end)
    ckpt_every: int = 500  # steps between checkpoints (0: only at the end / on interrupt)
    keep_last: int = 2  # most recent checkpoints kept (the best one is kept separately)
    resume: bool = True  # continue from the latest checkpoint in the run directory if there is one
    progress: bool = True  # progress bar on the terminal
    tensorboard: bool = False  # also write TensorBoard event files to <workdir>/tensorboard
    mesh: MeshConfig = MeshConfig()  # devices: data x fsdp must be all of them (1 x 1: the default device)
    # stop as diverged when a step's loss exceeds the first step's by this many times max(|first|, 1) (0: only
    # a NaN or infinity stops the run); 10 lets an LM starting at ln V ~ 4 reach 46, DPO at ln 2 reach 10.7
    max_loss_rise: float = 10.0

    def __post_init__(self):
        check_fields(self, steps=at_least(0), log_every=at_least(1), eval_every=at_least(0),
                     ckpt_every=at_least(0), keep_last=at_least(1), max_loss_rise=at_least(0.0))


def to_dict(cfg: Any) -> dict:
    """A config as plain data: a dataclass, or a dict whose values are dataclasses, dicts or plain values
    (the share of an experiment's config that one of its stages trains with, so that changing another
    stage's settings does not stop this one from resuming)."""
    if isinstance(cfg, dict):
        return {k: to_dict(v) if isinstance(v, dict) or dataclasses.is_dataclass(v) else v for k, v in cfg.items()}
    return dataclasses.asdict(cfg)


def to_json(cfg: Any) -> str:
    return json.dumps(to_dict(cfg), indent=2, sort_keys=True)


def _parse(text: str, tp: Any, name: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if type(None) in args and text.lower() in ("none", "null"):
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _parse(text, arg, name)
            except ValueError:
                continue
        raise ValueError(f"{name}: cannot parse {text!r} as {tp}")
    if origin is tuple:
        inner = typing.get_args(tp)[0]
        return tuple(_parse(p.strip(), inner, name) for p in text.strip("()").split(",") if p.strip())
    if tp is bool:
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"{name}: expected a bool (true/false), got {text!r}")
    if tp in (int, float):
        try:
            value = float(text) if tp is float else int(text)
        except ValueError:
            raise ValueError(f"{name}: expected {tp.__name__}, got {text!r}") from None
        return value
    if tp is str:
        return text
    raise ValueError(f"{name}: fields of type {tp} cannot be set from the command line")


def override(cfg: Any, assignment: str) -> Any:
    """Return ``cfg`` with one ``path.to.field=value`` assignment applied (a new frozen dataclass)."""
    if "=" not in assignment:
        raise ValueError(f"override must look like key.path=value, got {assignment!r}")
    path, text = assignment.split("=", 1)
    return _set(cfg, path.strip().split("."), text.strip(), path.strip())


def _set(cfg: Any, keys: list[str], text: str, full: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    head = keys[0]
    if head not in fields:
        raise KeyError(f"unknown config key {full!r}: {head!r} is not one of {sorted(fields)}")
    current = getattr(cfg, head)
    if len(keys) > 1:
        if not dataclasses.is_dataclass(current):
            raise KeyError(f"unknown config key {full!r}: {head!r} is a value, not a group")
        return dataclasses.replace(cfg, **{head: _set(current, keys[1:], text, full)})
    if dataclasses.is_dataclass(current):
        raise KeyError(f"{full!r} is a group; set one of its fields: {[f.name for f in dataclasses.fields(current)]}")
    tp = typing.get_type_hints(type(cfg))[head]
    return dataclasses.replace(cfg, **{head: _parse(text, tp, full)})


def apply_overrides(cfg: Any, assignments: list[str]) -> Any:
    for a in assignments:
        cfg = override(cfg, a)
    return cfg
