"""What every run directory holds, written one way: ``config.json`` (the resolved config) and
``summary.json`` (the results), and the Markdown tables experiments and benchmarks print."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import jax

from nlp_jax.train.config import to_dict
from nlp_jax.train.distributed import is_main


def json_safe(value: Any) -> Any:
    """``value`` with every NaN / infinity replaced by None, so the JSON written is valid for strict readers
    (``json.dumps`` would write the non-standard ``NaN`` / ``Infinity``)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def dumps(value: Any, **kw) -> str:
    """Strict JSON of ``value`` (non-finite numbers as null)."""
    return json.dumps(json_safe(value), allow_nan=False, **kw)


# Fields a resumed run may change (what a divergence message advises, longer runs, logging); anything else
# (model shape, seed, data, batch) would make the stored weights a different run's.
RESUMABLE = ("optim.", "train.steps", "train.log_every", "train.eval_every", "train.ckpt_every",
             "train.keep_last", "train.progress", "train.tensorboard", "train.resume", "train.mesh", "workdir",
             "epochs", "sample_tokens")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def config_changes(old: dict, new: dict) -> dict[str, tuple]:
    """``{'a.b': (old value, new value)}`` for every field that differs between two config dicts."""
    a, b = _flat(old), _flat(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def check_resume(workdir: Path, stored: dict | None, current: dict | None, step: int) -> None:
    """Refuse to resume with changed fields that the stored weights were not trained with (naming them);
    record the allowed changes as a new segment in ``config_segments.jsonl``."""
    if stored is None or current is None:
        return
    changes = config_changes(json_safe(stored), json_safe(current))
    refused = {k: v for k, v in changes.items() if not k.startswith(RESUMABLE)}
    if refused:
        listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in refused.items())
        raise ValueError(f"{workdir} holds a run trained with other settings ({listed}). Resuming would mix "
                         f"runs: restore those values, choose another workdir, or pass --set train.resume=false "
                         f"(the old run is moved aside, not deleted).")
    if changes:
        with open(workdir / "config_segments.jsonl", "a") as f:
            f.write(dumps({"from_step": step, "changes": {k: b for k, (_, b) in changes.items()}}) + "\n")


def move_aside(workdir: Path, names=("checkpoints", "metrics.jsonl", "summary.json", "config.json",
                                     "config_segments.jsonl", "loss.png", "sample.txt", "tensorboard",
                                     "export")) -> Path | None:
    """Move a previous run's files into ``<workdir>/previous-<n>/`` (instead of overwriting them)."""
    present = [workdir / n for n in names if (workdir / n).exists()]
    if not present:
        return None
    n = 1
    while (workdir / f"previous-{n}").exists():
        n += 1
    target = workdir / f"previous-{n}"
    target.mkdir()
    for p in present:
        p.rename(target / p.name)
    return target


def write_config(workdir: str | Path, config: Any) -> Path:
    """``<workdir>/config.json``: the resolved config dataclass as JSON."""
    path = Path(workdir, "config.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(to_dict(config), indent=2))
    return path


def write_summary(workdir: str | Path, summary: dict, *, echo: bool = True) -> dict:
    """``<workdir>/summary.json`` (and the same JSON on the terminal unless ``echo=False``), from the first
    process only; returns summary."""
    if not is_main():
        return summary
    text = dumps(summary, indent=2)
    path = Path(workdir, "summary.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if echo:
        print(text)
    return summary


def fingerprint(config: Any) -> str:
    """A short hash of a config (a dataclass or a dict of them), equal exactly when the configs are."""
    return hashlib.sha256(dumps(to_dict(config), sort_keys=True).encode()).hexdigest()[:16]


class StageResults:
    """``<workdir>/results.json`` of a multi-stage experiment: one entry per stage or method, written as soon
    as it is measured, so a rerun (or a resume after a crash) reads it back instead of measuring it twice."""

    def __init__(self, workdir: str | Path):
        self.path = Path(workdir, "results.json")
        self.data = json.loads(self.path.read_text()) if self.path.exists() else {}

    def put(self, name: str, row: dict, settings: Any = None) -> None:
        self.data[name] = row if settings is None else {**row, "settings": fingerprint(settings)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(dumps(self.data, indent=2))
        os.replace(tmp, self.path)  # a crash mid-write keeps the previous file whole
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


def run_resumable(workdir: str | Path, stages: Any) -> dict:
    """``stages()`` (a multi-stage experiment's body, returning its summary), or, when a stage raises
    :class:`Interrupted`, that stage's summary written to ``<workdir>/summary.json``: the launcher exits with
    128 + the signal and a rerun resumes the stage."""
    try:
        return stages()
    except Interrupted as stop:
        print(f"stage {stop.summary['stage']} interrupted; its checkpoint is saved: rerun to resume")
        return write_summary(workdir, stop.summary)


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A Markdown table with columns padded to their widest cell."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(str(x).ljust(w) for x, w in zip(row, widths)) + " |" for row in rows]
    return "\n".join(lines)


@contextlib.contextmanager
def run_lock(workdir: str | Path):
    """Hold ``<workdir>/.lock`` for the duration: a second process on the same run directory is refused
    with the holder's pid, instead of resuming from the first one's checkpoints and interleaving its log.
    The lock is the operating system's (``flock``), so a crashed holder never leaves it stuck. Each process
    of a multi-process run holds its own (``.lock.<process>``)."""
    path = Path(workdir, ".lock" if jax.process_count() == 1 else f".lock.{jax.process_index()}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise RuntimeError(f"{workdir} is in use by another run (pid {holder}); wait for it to finish, stop it, "
                               "or choose another workdir (--set workdir=...)") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            f.truncate(0)
            fcntl.flock(f, fcntl.LOCK_UN)
