"""Orbax checkpoints of the whole training state (model, optimizer, the objective's state) plus JSON
metadata (step, data position, best metric, config). Two managers: ``last/`` keeps the most recent N,
``best/`` the best one; ``evaluations.json`` beside them the newest evaluation and the best one (written
whole after each evaluation).

Each save records a checksum of every saved array in its metadata; restore verifies it and, when the
newest checkpoint is damaged (a truncated or missing chunk, missing metadata, an empty step folder, flipped
bytes), says which one and falls back to the newest intact one. The checksum (:func:`checksum`) is reduced
on the devices that hold the arrays, so it is the same for any sharding and any number of processes, and
no process ever gathers a whole sharded array to compute it."""

from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import io
import json
import logging
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from nlp_jax.data.atomic import write_atomic
from nlp_jax.train.records import dumps, json_safe


def _words(x: jax.Array) -> jax.Array:
    """The bits of ``x`` as a flat uint32 vector (each element widened, or split when 8 bytes wide)."""
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if x.dtype == jnp.bool_:
        x = x.astype(jnp.uint8)
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[x.dtype.itemsize]
    return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32).ravel()


def _mix(i: jax.Array) -> jax.Array:
    h = i * jnp.uint32(0x9E3779B1) + jnp.uint32(0x7F4A7C15)
    h = (h ^ (h >> 15)) * jnp.uint32(0x2C1B3C6D)
    return h ^ (h >> 12)


@jax.jit
def _fingerprint(x: jax.Array) -> jax.Array:
    """Two position-weighted sums mod 2**32 of one array: changing any one element always changes the first
    (it moves by a nonzero amount times an odd weight), and each sum is the same however it is split. On one
    device, one small program per shape and dtype (a model's layers and optimizer moments repeat a few):
    compiling a whole state's at once took seconds per model."""
    w = _words(x)
    h = _mix(jax.lax.iota(jnp.uint32, w.size))
    return jnp.stack([jnp.sum((w ^ h) * (h | 1), dtype=jnp.uint32),
                      jnp.sum((w + _mix(h)) * (_mix(h ^ jnp.uint32(0x5BD1E995)) | 1), dtype=jnp.uint32)])


_all_fingerprints = jax.jit(lambda leaves: [_fingerprint(x) for x in leaves])


def checksum(*trees) -> str:
    """sha256 over the dtypes, shapes and fingerprints of every array of ``trees`` (in tree order),
    prefixed ``fp64:``; the same value for any layout of the arrays on any devices and processes."""
    leaves = [jnp.asarray(x) if isinstance(x, (np.ndarray, np.generic, int, float, bool)) else x
              for x in jax.tree.leaves(trees)]
    digest = hashlib.sha256()
    spread = jax.process_count() > 1 or any(len(x.sharding.device_set) > 1 for x in leaves)
    # On one device, one small program per array shape. Arrays spread over devices: one program for all (many
    # small programs in flight, each waiting at its collective for its devices' threads, starved the CPU's
    # threads until XLA's 40 s rendezvous timeout killed the process; across processes they hung)
    fingerprints = _all_fingerprints(leaves) if spread else [_fingerprint(x) for x in leaves]
    for leaf, fp in zip(leaves, jax.device_get(fingerprints)):
        digest.update(f"{leaf.dtype}{tuple(leaf.shape)}".encode())
        digest.update(np.asarray(fp, np.uint32).tobytes())
    return "fp64:" + digest.hexdigest()


def _verifies(stored: str | None, *trees) -> bool:
    return bool(stored) and stored == checksum(*trees)


def _no_space(err: BaseException) -> bool:
    """Whether ``err`` or anything in its cause chain is 'No space left on device'."""
    seen = 0
    while err is not None and seen < 20:
        if getattr(err, "errno", None) == errno.ENOSPC or "No space left on device" in str(err):
            return True
        err, seen = err.__cause__ or err.__context__, seen + 1
    return False


@contextlib.contextmanager
def _held_logs(names: tuple[str, ...] = ("absl", "asyncio")):
    """Hold what these loggers (orbax's and its writers' tasks') log, and what is printed to stderr (the
    writers' threads print tracebacks there), inside the block; yield a dict whose ``drop`` the block sets
    to discard them (a full disk: one message says it all), else they are emitted at the end."""
    held: dict = {"records": [], "drop": False}
    handler = logging.Handler()
    handler.emit = held["records"].append
    loggers = [logging.getLogger(name) for name in names]
    before = [(logger.handlers, logger.propagate) for logger in loggers]
    for logger in loggers:
        logger.handlers, logger.propagate = [handler], False
    stderr, sys.stderr = sys.stderr, io.StringIO()
    try:
        yield held
    finally:
        printed, sys.stderr = sys.stderr.getvalue(), stderr
        for logger, (handlers, propagate) in zip(loggers, before):
            logger.handlers, logger.propagate = handlers, propagate
        if not held["drop"]:
            sys.stderr.write(printed)
            for record in held["records"]:
                logging.getLogger(record.name).handle(record)


def _manager(path: Path, keep: int) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False)
    return ocp.CheckpointManager(path.absolute(), options=options)


class Checkpointer:
    def __init__(self, directory: str | Path, keep_last: int = 2):
        self.directory = Path(directory)
        self.last = _manager(self.directory / "last", max(keep_last, 1))
        self.best = _manager(self.directory / "best", 1)

    def save(self, state: nnx.State, meta: dict, *, objective_state=None, best: bool = False) -> None:
        """Save ``state``, ``meta`` and the ``objective_state`` (a pytree of arrays, if any) at
        ``meta['step']``; ``best=True`` writes the best slot instead."""
        manager = self.best if best else self.last
        pure = nnx.to_pure_dict(state)
        meta = {**meta, "checksum": checksum(pure, objective_state)}
        items = {"state": ocp.args.StandardSave(pure), "meta": ocp.args.JsonSave(json_safe(meta))}
        if objective_state is not None:
            items["objective"] = ocp.args.StandardSave({"state": objective_state})  # orbax wants a tree
        args = ocp.args.Composite(**items)
        if meta["step"] in manager.all_steps():  # a rerun reaching a step it saved before (after a crash)
            manager.delete(meta["step"])
        with _held_logs() as held:
            try:
                manager.save(meta["step"], args=args, force=True)
                manager.wait_until_finished()
            except Exception as err:
                gc.collect()  # the failed writes' asyncio tasks report "exception never retrieved" when collected
                if _no_space(err):  # one clear message instead of hundreds of lines of asyncio / tensorstore logs
                    held["drop"] = True
                    raise OSError(errno.ENOSPC, f"no space left on device while saving checkpoint step "
                                  f"{meta['step']} to {self.directory}; the earlier checkpoints are intact. Free "
                                  "disk space and rerun to resume") from None
                raise

    def latest_step(self) -> int | None:
        return self.last.latest_step()

    def latest_meta(self) -> dict | None:
        """The metadata of the newest readable ``last/`` checkpoint (to compare configs before restoring)."""
        for step in sorted(self.last.all_steps(), reverse=True):
            try:
                return self.last.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
            except Exception:  # a damaged step: restore() reports it
                continue
        return None

    def best_meta(self) -> dict | None:
        """The metadata of the ``best/`` checkpoint (its ``best`` is its own evaluation), None without one."""
        step = self.best.latest_step()
        if step is None:
            return None
        try:
            return self.best.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        except Exception as err:  # damaged: the run goes on as if it had none, and the next evaluation writes one
            print(f"checkpoint {self.directory / 'best' / str(step)} is damaged ({type(err).__name__}); the next "
                  "evaluation replaces it", file=sys.stderr)
            return None

    def read_evaluations(self) -> dict:
        """``evaluations.json``: ``{'last': record, 'best': record}`` ({} before the first evaluation)."""
        path = self.directory / "evaluations.json"
        try:
            return json.loads(path.read_text()) if path.exists() else {}
        except ValueError:  # written by rename, so only an outside hand damages it; the checkpoints hold the rest
            print(f"{path} is not valid JSON; its records are dropped", file=sys.stderr)
            return {}

    def write_evaluations(self, records: dict) -> None:
        write_atomic(self.directory / "evaluations.json", dumps(records, indent=2))

    def last_steps(self) -> list[int]:
        """The steps held in ``last/``, oldest first."""
        return sorted(self.last.all_steps())

    def restore(self, abstract_state: nnx.State, *, objective_state=None, best: bool = False,
                step: int | None = None):
        """Restore onto the structure of ``abstract_state`` (e.g. from ``nnx.eval_shape``) and of the
        ``objective_state`` template (None if the objective has none); returns ``(state, meta,
        objective_state)`` of the newest intact checkpoint (module docstring), or of ``step`` exactly."""
        manager = self.best if best else self.last
        where = self.directory / ("best" if best else "last")
        steps = sorted(manager.all_steps(), reverse=True)
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {where}")
        if step is not None:
            if step not in steps:
                raise FileNotFoundError(f"no checkpoint of step {step} in {where} (it holds {sorted(steps)})")
            steps = [step]
        for step in steps:
            try:
                return self._restore_step(manager, step, abstract_state, objective_state)
            except Exception as err:  # orbax/tensorstore raise many kinds; each means this step is unusable
                reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
                print(f"checkpoint {where / str(step)} is damaged ({reason}); trying an older one", file=sys.stderr)
        raise RuntimeError(f"no intact checkpoint in {where} (tried steps {steps}); delete {self.directory} or "
                           "pass --set train.resume=false to start over")

    def _restore_step(self, manager, step, abstract_state, objective_state):
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, nnx.to_pure_dict(abstract_state))
        items = {"state": ocp.args.StandardRestore(target), "meta": ocp.args.JsonRestore()}
        if objective_state is not None:
            target_obj = jax.tree.map(ocp.utils.to_shape_dtype_struct, objective_state)
            items["objective"] = ocp.args.StandardRestore({"state": target_obj})
        restored = manager.restore(step, args=ocp.args.Composite(**items))
        meta = restored["meta"]
        obj = None if objective_state is None else jax.tree.unflatten(
            jax.tree.structure(objective_state), jax.tree.leaves(restored["objective"]["state"]))
        if meta is None or not _verifies(meta.get("checksum"), restored["state"], obj):
            raise ValueError("its arrays do not match the checksum saved with them")
        state = jax.tree.map(lambda x: x, abstract_state)  # a copy whose leaves we replace
        nnx.replace_by_pure_dict(state, restored["state"])
        return state, meta, obj

    def close(self) -> None:
        self.last.close()
        self.best.close()
