"""Shared benchmark helpers: steady-state timing (warm-up, then the median of repeats) and table printing."""

from __future__ import annotations

import platform
import statistics
import time
from datetime import date

from nlp_jax.train.records import markdown_table


def median_time(fn, *, warmup: int = 2, repeats: int = 10, sync=lambda out: out) -> float:
    """Median wall seconds of ``fn()`` after ``warmup`` calls; ``sync`` blocks on the result."""
    for _ in range(warmup):
        sync(fn())
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        sync(fn())
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def interleaved_seconds_per_step(runners: dict, *, rounds: int, steps: int, warmup: int = 3) -> dict[str, float]:
    """Median seconds per step of each ``runner(n_steps)``, timed in interleaved rounds (a, b, a, b, ...)
    so that drift in the machine's speed hits every runner alike."""
    for run in runners.values():
        run(warmup)  # compilation, allocator
    times = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            t0 = time.perf_counter()
            run(steps)
            times[name].append((time.perf_counter() - t0) / steps)
    return {name: statistics.median(ts) for name, ts in times.items()}


def machine() -> str:
    import os

    python = f"{platform.python_implementation()} {platform.python_version()}"
    return f"{platform.machine()} {os.cpu_count()} cores, {python}, {date.today()}"


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    print(f"\n{title}  [{machine()}]")
    print(markdown_table(header, rows))
