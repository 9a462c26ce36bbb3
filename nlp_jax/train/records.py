"""What every run directory holds, written one way: ``config.json`` (the resolved config) and
``summary.json`` (the results), and the Markdown tables experiments and benchmarks print."""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
from pathlib import Path
from typing import Any

from nlp_jax.train.config import to_dict


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


def write_config(workdir: str | Path, config: Any) -> Path:
    """``<workdir>/config.json``: the resolved config dataclass as JSON."""
    path = Path(workdir, "config.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(to_dict(config), indent=2))
    return path


def write_summary(workdir: str | Path, summary: dict, *, echo: bool = True) -> dict:
    """``<workdir>/summary.json`` (and the same JSON on the terminal unless ``echo=False``); returns summary."""
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
    The lock is the operating system's (``flock``), so a crashed holder never leaves it stuck."""
    path = Path(workdir, ".lock")
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
