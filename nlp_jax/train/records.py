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

from nlp_jax.data.atomic import write_atomic
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
             "train.keep_last", "train.progress", "train.tensorboard", "train.resume", "train.mesh",
             "train.max_loss_rise", "workdir")
# Of those, the fields that shape the trained weights: a finished run asked for with other values of these is
# a different run, trained again (its weights reported under the new values would be a falsified result).
LEARNING = ("optim.", "train.steps")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def config_changes(old: dict, new: dict) -> dict[str, tuple]:
    """``{'a.b': (old value, new value)}`` for every field that differs between two config dicts."""
    a, b = _flat(old), _flat(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def listed_changes(changes: dict[str, tuple]) -> str:
    """``config_changes``' result as text: ``a.b: old -> new; ...``."""
    return "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items())


def check_resume(workdir: Path, stored: dict | None, current: dict | None, step: int,
                 resumable: tuple[str, ...] = (), *, finished: bool = False) -> bool:
    """Refuse to resume with changed fields that the stored weights were not trained with (naming them);
    record the allowed changes (``RESUMABLE`` and the config's own ``resumable`` fields) as a new segment
    in ``config_segments.jsonl``. Returns True when the stored run is ``finished`` (nothing left to train)
    and a ``LEARNING`` field changed: the run must be trained again, not resumed."""
    if stored is None or current is None:
        return False
    changes = config_changes(json_safe(stored), json_safe(current))
    refused = {k: v for k, v in changes.items() if not k.startswith(RESUMABLE + tuple(resumable))}
    if refused:
        listed = listed_changes(refused)
        fresh = ("pass --set train.resume=false (the old run is moved aside, not deleted)"
                 if "resume" in current.get("train", {}) else f"move {workdir} aside to train it again")
        raise ValueError(f"{workdir} holds a run trained with other settings ({listed}). Resuming would mix "
                         f"runs: restore those values, choose another workdir, or {fresh}.")
    if finished and any(k.startswith(LEARNING) for k in changes):
        return True
    if changes:
        with open(workdir / "config_segments.jsonl", "a") as f:
            f.write(dumps({"from_step": step, "changes": {k: b for k, (_, b) in changes.items()}}) + "\n")
    return False


TRAINING_OUTPUTS = ("checkpoints", "metrics.jsonl", "summary.json", "config.json", "config_segments.jsonl", "loss.png",
                    "sample.txt", "tensorboard", "export")
OWNER = "run.json"  # which experiment a run directory belongs to (``claim``)


def move_aside(workdir: Path, names: tuple[str, ...] | None = TRAINING_OUTPUTS) -> Path | None:
    """Move a previous run's files (``names``; None: everything but earlier ``previous-<n>/`` folders, the
    lock and the owner record) into ``<workdir>/previous-<n>/`` instead of overwriting them."""
    if names is None:
        names = tuple(p.name for p in sorted(workdir.iterdir()) if not p.name.startswith(("previous-", ".lock"))
                      and p.name != OWNER) if workdir.is_dir() else ()
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
    return write_atomic(Path(workdir, "config.json"), dumps(to_dict(config), indent=2))


def write_summary(workdir: str | Path, summary: dict, *, echo: bool = True) -> dict:
    """``<workdir>/summary.json`` (and the same JSON on the terminal unless ``echo=False``), from the first
    process only; returns summary."""
    if not is_main():
        return summary
    text = dumps(summary, indent=2)
    write_atomic(Path(workdir, "summary.json"), text)
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
    of a multi-process run holds its own (``.lock.<process>``). Within one process it is reentrant: the
    launcher holds it for the whole run and the training loop inside takes it again."""
    path = Path(workdir, ".lock" if jax.process_count() == 1 else f".lock.{jax.process_index()}").absolute()
    if path in _HELD:
        yield
        return
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
        _HELD.add(path)
        try:
            yield
        finally:
            _HELD.discard(path)
            f.truncate(0)
            fcntl.flock(f, fcntl.LOCK_UN)


_HELD: set[Path] = set()  # the lock files this process holds


def claim(workdir: str | Path, owner: str) -> None:
    """Record that ``workdir`` holds runs of the experiment ``owner`` (``<workdir>/run.json``), or refuse, before
    any work, a directory that another experiment's run owns: its tokenizer, checkpoints and summary would be
    read or overwritten as this one's."""
    path = Path(workdir, OWNER)
    try:
        stored = json.loads(path.read_text())["experiment"] if path.exists() else None
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{path} is damaged (it should name the experiment that owns {workdir}): restore it, or "
                         "delete it if you know the directory holds this experiment's run") from None
    if stored is not None and stored != owner:
        raise ValueError(f"{workdir} holds a run of {stored}, not of {owner}: choose another workdir "
                         f"(--set workdir=...) or move {workdir} aside")
    if stored is None:
        write_atomic(path, dumps({"experiment": owner}, indent=2))
