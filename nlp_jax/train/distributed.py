"""Several processes (hosts) as one JAX runtime: ``jax.distributed.initialize`` from flags or environment.

Every process runs the same command. The coordinator (process 0's host and a free port), the number of
processes and this process's id come from, in order:

1. ``python -m nlp_jax.run ... --coordinator HOST:PORT --num-processes N --process-id I``;
2. ``NLP_JAX_COORDINATOR``, ``NLP_JAX_NUM_PROCESSES``, ``NLP_JAX_PROCESS_ID``;
3. a cluster JAX detects by itself (SLURM with more than one task, Open MPI, Cloud TPU): ``--distributed``
   or ``NLP_JAX_DISTRIBUTED=1`` asks for that detection.

With none of them the run is one process, as before. After initialisation ``jax.devices()`` lists every
process's devices, a ``train.mesh`` spans them all, and the loop logs, plots and writes summaries from
process 0 only (:func:`is_main`); checkpoints are written by all, each its own shards.
"""

from __future__ import annotations

import os

import jax

ENV = {"coordinator": "NLP_JAX_COORDINATOR", "num_processes": "NLP_JAX_NUM_PROCESSES",
       "process_id": "NLP_JAX_PROCESS_ID"}


def settings(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
             detect: bool = False) -> dict | None:
    """The arguments for ``jax.distributed.initialize`` (flags over environment), ``{}`` for cluster
    detection, or None for a single process; a ValueError for an incomplete or inconsistent set."""
    given = {"coordinator": coordinator, "num_processes": num_processes, "process_id": process_id}
    for name, var in ENV.items():
        if given[name] is None and os.environ.get(var):
            given[name] = os.environ[var] if name == "coordinator" else _integer(var, os.environ[var])
    if all(v is None for v in given.values()):
        return {} if detect or os.environ.get("NLP_JAX_DISTRIBUTED") == "1" else None
    missing = [f"--{k.replace('_', '-')} (or {ENV[k]})" for k, v in given.items() if v is None]
    if missing:
        raise ValueError(f"a multi-process run needs the coordinator, the process count and this process's id; "
                         f"missing: {', '.join(missing)}")
    n, i = given["num_processes"], given["process_id"]
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"process id must be in [0, {n}) and the process count >= 1; got process id {i} of {n}")
    if ":" not in given["coordinator"]:
        raise ValueError(f"coordinator must be HOST:PORT (process 0's host), got {given['coordinator']!r}")
    return {"coordinator_address": given["coordinator"], "num_processes": n, "process_id": i}


def _integer(var: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{var} must be an integer, got {text!r}") from None


def initialize(**kw) -> bool:
    """``jax.distributed.initialize`` with :func:`settings` (``kw`` its arguments), before any computation;
    returns whether this is a multi-process run. On CPU, cross-process collectives go through gloo."""
    args = settings(**kw)
    if args is None:
        return False
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**args)
    return jax.process_count() > 1


def is_main() -> bool:
    """Whether this process writes the run's logs, plots and summaries (process 0)."""
    return jax.process_index() == 0


def sync(name: str) -> None:
    """Wait until every process reaches this point (nothing to wait for in a single-process run)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
