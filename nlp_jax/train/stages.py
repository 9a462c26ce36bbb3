"""A multi-stage run (train a policy, judge it, draw pairs from it, train on them...): its stages declared once,
each with the config fields its results depend on and the stages whose results it reads; every stored result
is keyed by the fingerprint of those settings, so changing one stage's settings measures that stage (and
every stage that reads it) again and keeps the rest::

    graph = Stages(cfg, sft=Stage(fields=("model", "sft_optim")),
                   pairs=Stage(fields=("train_prompts",), reads=("sft",)))
    results = StageResults(cfg.workdir)
    if not results.has("pairs", graph.settings("pairs")):
        results.put("pairs", {...}, graph.settings("pairs"))
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from nlp_jax.data.atomic import write_atomic
from nlp_jax.train.config import to_dict
from nlp_jax.train.loop import train
from nlp_jax.train.records import dumps, write_summary


def fingerprint(config: Any) -> str:
    """A short hash of a config (a dataclass or a dict of them), equal exactly when the configs are."""
    return hashlib.sha256(dumps(to_dict(config), sort_keys=True).encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage: the config fields its results depend on (dotted paths, ``"sft_train"`` or ``"seeds.pairs"``;
    ``"optim=sft_optim"`` records the field under the key ``optim``), those of their parts to leave out
    (``ignore``: e.g. ``"sft_train.progress"``, which changes no result), the keys a resumed training run may
    change besides the loop's own (``resumable``: e.g. a count of rollouts), and the stages whose results it
    reads."""
    fields: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    resumable: tuple[str, ...] = ()


class Settings(dict):
    """A stage's settings: plain data to fingerprint, and the ``config`` of its training runs (whose resume
    check reads ``RESUMABLE``, as it reads an experiment config's)."""
    RESUMABLE: tuple[str, ...] = ()

    def plus(self, **extra: Any) -> Settings:
        """These settings with ``extra`` (e.g. one round of several), resumable as these."""
        out = Settings({**self, **extra})
        out.RESUMABLE = self.RESUMABLE
        return out


class Stages:
    """The stages of one run over its ``config``, checked when declared: every field path names a field of the
    config, and every stage read is declared before the stage that reads it (so there is no cycle)."""

    def __init__(self, config: Any, **stages: Stage):
        self.config, self.stages = config, stages
        for i, (name, stage) in enumerate(stages.items()):
            paths = [_key_path(f)[1] for f in stage.fields]
            for path in paths + list(stage.ignore):
                _field(config, path, name)
            for ignored in stage.ignore:
                if not any(ignored.startswith(p + ".") for p in paths):
                    raise ValueError(f"stage {name!r}: ignore={ignored!r} lies in none of its fields {stage.fields}")
            for read in stage.reads:
                if read not in list(stages)[:i]:
                    raise ValueError(f"stage {name!r} reads {read!r}, which is not a stage declared before it "
                                     f"({', '.join(list(stages)[:i]) or 'none'})")

    def settings(self, name: str, **extra: Any) -> Settings:
        """What stage ``name``'s results depend on: its fields' values, ``extra`` (a per-run share, e.g. one
        method of several), and the settings of every stage it reads (under ``<stage>``), recursively."""
        if name not in self.stages:
            raise KeyError(f"no stage named {name!r}; the stages are {', '.join(self.stages)}")
        stage = self.stages[name]
        paths = dict(_key_path(f) for f in stage.fields)
        values = {key: _plain(_field(self.config, path, name)) for key, path in paths.items()}
        for ignored in stage.ignore:
            key = max((k for k, p in paths.items() if ignored.startswith(p + ".")), key=lambda k: len(paths[k]))
            inner = values[key]
            *parents, last = ignored[len(paths[key]) + 1:].split(".")
            for part in parents:
                inner = inner[part]
            inner.pop(last)
        out = Settings({**values, **extra, **{f"<{read}>": self.settings(read) for read in stage.reads}})
        out.RESUMABLE = stage.resumable
        return out


def _key_path(field: str) -> tuple[str, str]:
    """``"optim=sft_optim"`` -> ("optim", "sft_optim"); ``"seeds.pairs"`` -> ("seeds.pairs", "seeds.pairs")."""
    key, _, path = field.partition("=")
    return key, path or key


def _plain(value: Any) -> Any:
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


def _field(config: Any, path: str, stage: str) -> Any:
    value = config
    for part in path.split("."):
        if not dataclasses.is_dataclass(value) or part not in {f.name for f in dataclasses.fields(value)}:
            raise ValueError(f"stage {stage!r}: {path!r} is not a field of {type(config).__name__}")
        value = getattr(value, part)
    return value


class StageResults:
    """``<workdir>/results.json`` of a multi-stage experiment: one entry per stage or method, written as soon
    as it is measured, so a rerun (or a resume after a crash) reads it back instead of measuring it twice."""

    def __init__(self, workdir: str | Path):
        self.path = Path(workdir, "results.json")
        try:
            self.data = json.loads(self.path.read_text()) if self.path.exists() else {}
        except ValueError as err:  # written by rename, so only an outside hand damages it
            raise ValueError(f"{self.path} is not valid JSON ({err}): restore it, or delete it to measure every "
                             "stage's results again (trained stages are read back from their checkpoints)") from None

    def put(self, name: str, row: dict, settings: Any = None) -> None:
        self.data[name] = row if settings is None else {**row, "settings": fingerprint(settings)}
        write_atomic(self.path, dumps(self.data, indent=2))  # a crash mid-write keeps the previous file whole
        print(f"{name}: {row}")

    def get(self, name: str, fn, settings: Any = None) -> dict:
        """The stored entry, or ``fn()`` measured now with its ``seconds``. With ``settings`` (a config, or a
        dict of them: what the entry depends on), the entry keeps their :func:`fingerprint` and one stored
        with other settings is measured again."""
        if not self.has(name, settings):
            if name in self.data:
                print(f"{self.path}: {name} was measured with other settings; measuring it again")
            t0 = time.perf_counter()
            row = {**fn(), "seconds": round(time.perf_counter() - t0, 1)}
            self.put(name, row, settings)
        return self.data[name]

    def has(self, name: str, settings: Any = None) -> bool:
        """Whether the entry is stored (with these ``settings``, when given)."""
        stored = self.data.get(name)
        return stored is not None and stored.get("settings") == (None if settings is None else fingerprint(settings))


class Interrupted(Exception):
    """A stage's training run stopped on a signal (its checkpoint saved): the experiment ends with this
    summary (status ``interrupted``, the stage named) and a rerun resumes the stage."""

    def __init__(self, stage: str, result):
        super().__init__(stage)
        self.summary = {**result.summary(), "status": "interrupted", "stage": stage}


def train_stage(model, objective, source, *, train_cfg, optim_cfg, workdir: str | Path, config: Any,
                stage: str | None = None, **train_kw) -> tuple[Any, Any]:
    """The one way a stage of a multi-stage run trains: ``train.loop.train`` (resumed from ``workdir``, or a
    finished run read back), and a run stopped by a signal raises :class:`Interrupted` naming ``stage``
    (default: the workdir's name), so the experiment ends with its summary and a rerun resumes the stage.
    Returns (the trained model, the loop's ``RunResult``)."""
    model, result = train(model, objective, source, train_cfg=train_cfg, optim_cfg=optim_cfg, workdir=workdir,
                          config=config, **train_kw)
    if result.interrupted:
        raise Interrupted(stage or Path(workdir).name, result)
    return model, result


def run_resumable(workdir: str | Path, stages: Any) -> dict:
    """``stages()`` (a multi-stage experiment's body, returning its summary), or, when a stage raises
    :class:`Interrupted`, that stage's summary written to ``<workdir>/summary.json``: the launcher exits with
    128 + the signal and a rerun resumes the stage."""
    try:
        return stages()
    except Interrupted as stop:
        print(f"stage {stop.summary['stage']} interrupted; its checkpoint is saved: rerun to resume")
        return write_summary(workdir, stop.summary)
