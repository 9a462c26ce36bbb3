"""What every run directory holds, written one way: ``config.json`` (the resolved config),
``summary.json`` (the results), the checks a resume makes against the stored config, the lock that keeps a
second process out, and the Markdown tables experiments and benchmarks print. A multi-stage run's stages
and their results: :mod:`nlp_jax.train.stages`."""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
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
# (model shape, seed, data, batch) would make the stored weights a different run's. An experiment's config
# adds its own such fields as a class attribute ``RESUMABLE`` (e.g. ``("epochs",)``).
RESUMABLE = ("optim.", "train.steps", "train.log_every", "train.eval_every", "train.ckpt_every",
             "train.keep_last", "train.progress", "train.tensorboard", "train.resume", "train.mesh", "workdir")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def config_changes(old: dict, new: dict) -> dict[str, tuple]:
    """``{'a.b': (old value, new value)}`` for every field that differs between two config dicts."""
    a, b = _flat(old), _flat(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def check_resume(workdir: Path, stored: dict | None, current: dict | None, step: int,
                 resumable: tuple[str, ...] = ()) -> None:
    """Refuse to resume with changed fields that the stored weights were not trained with (naming them);
    record the allowed changes (``RESUMABLE`` and the config's own ``resumable`` fields) as a new segment
    in ``config_segments.jsonl``."""
    if stored is None or current is None:
        return
    changes = config_changes(json_safe(stored), json_safe(current))
    refused = {k: v for k, v in changes.items() if not k.startswith(RESUMABLE + tuple(resumable))}
    if refused:
        listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in refused.items())
        fresh = ("pass --set train.resume=false (the old run is moved aside, not deleted)"
                 if "resume" in current.get("train", {}) else f"move {workdir} aside to train it again")
        raise ValueError(f"{workdir} holds a run trained with other settings ({listed}). Resuming would mix "
                         f"runs: restore those values, choose another workdir, or {fresh}.")
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
