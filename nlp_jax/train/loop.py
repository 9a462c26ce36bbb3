"""One training loop for every objective: a short driver over :class:`nlp_jax.train.trainer.Trainer`.

The objective is ``loss_fn(model, batch, key) -> (loss, aux)`` or an :class:`Objective` (with its own
state and frozen models); ``source(step) -> batch`` supplies data (so the data position of a run is its
step; a source with a ``bind(trainer)`` method is bound to the trainer first, so it can read the model
being trained and write the objective state, as PPO's rollouts do); ``eval_fn(model) -> {name: value}``
evaluates. The driver adds the run directory: metrics, exact resume, checkpoints, signals and divergence
handling. The host reads the metrics every ``log_every`` steps (and before every evaluation and
checkpoint), not every step, and prepares the next batch while the device runs the current one; a NaN
still stops the run naming the step where it first appeared, before anything is saved after it.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from nlp_jax.objectives import Objective
from nlp_jax.train.checkpoint import Checkpointer
from nlp_jax.train.config import OptimConfig, TrainConfig, to_dict
from nlp_jax.train.distributed import is_main, sync
from nlp_jax.train.metrics import MetricsLog, plot_losses
from nlp_jax.train.records import (
    LEARNING,
    check_resume,
    config_changes,
    listed_changes,
    move_aside,
    run_lock,
    write_config,
)
from nlp_jax.train.sharding import make_mesh
from nlp_jax.train.trainer import BadBatch, Trainer, TrainingDiverged

__all__ = ["BadBatch", "Objective", "RunResult", "Trainer", "TrainingDiverged", "train"]


@dataclass
class RunResult:
    status: str  # 'finished' or 'interrupted'
    step: int  # steps completed
    losses: dict[int, float] = field(default_factory=dict)  # train loss of every step run in this call
    # every evaluation of this call, after the stored evaluation of the step it resumed at (if any)
    evals: list[dict] = field(default_factory=list)
    best: float | None = None  # best eval metric so far (None before any evaluation)
    seconds: float = 0.0  # wall time of the loop in this call
    tokens_per_second: float = 0.0  # steady state: the compiling first step, evaluations and saves excluded
    startup_seconds: float = 0.0  # from the loop's start to its first logged step: compilation and that window
    signal: int | None = None  # the signal that interrupted the run

    @property
    def interrupted(self) -> bool:
        return self.status == "interrupted"

    def summary(self) -> dict:
        """The fields every training experiment's summary.json starts with."""
        out = {"status": self.status, "steps": self.step, "train_seconds": round(self.seconds, 1),
               "tokens_per_second": round(self.tokens_per_second), "startup_seconds": round(self.startup_seconds, 1)}
        return out if self.signal is None else {**out, "signal": self.signal}


@contextlib.contextmanager
def _stop_on_signals():
    """SIGINT/SIGTERM set a flag instead of killing the process; the loop checkpoints and returns. A second
    signal stops at once (KeyboardInterrupt), the last checkpoint written being the one kept."""
    flag = {"stop": False, "signal": None}

    def handler(signum, frame):
        if flag["stop"]:
            raise KeyboardInterrupt(f"second signal {signum}: stopping at once")
        flag["stop"], flag["signal"] = True, signum

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class _Pending:
    """Metrics of steps run but not yet read back: read in one transfer, checked for divergence (a NaN, or
    a loss more than ``rise`` times max(|start|, 1) above the first step's), logged."""

    def __init__(self, rise: float, start: float | None):
        self.steps: list[int] = []
        self.metrics: list[dict] = []
        self.rise, self.start = rise, start

    def add(self, step: int, metrics: dict) -> None:
        self.steps.append(step)
        self.metrics.append(metrics)

    def flush(self, result: RunResult, last_saved: int | None) -> list[dict]:
        host = jax.device_get(self.metrics)
        for step, m in zip(self.steps, host):
            loss = float(m["loss"])
            if not math.isfinite(loss):  # step + 1: as metrics.jsonl counts
                raise TrainingDiverged(step + 1, loss, last_saved, bad_ids=int(m.get("bad_ids", 0)))
            if self.start is None:
                self.start = loss
            elif self.rise and loss > self.start + self.rise * max(abs(self.start), 1.0):
                raise TrainingDiverged(step + 1, loss, last_saved, bad_ids=int(m.get("bad_ids", 0)), start=self.start)
            result.losses[step] = loss
        self.steps, self.metrics = [], []
        return host


def _check_batch(batch: dict | None, step: int) -> None:
    """Refuse a host batch holding NaN or infinity (``BadBatch``), before the device trains on it. Arrays
    already on the device (a rollout's) are not read back: that would stall the step ahead."""
    for key, value in (batch or {}).items():
        if isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind == "f" and not np.isfinite(value).all():
            raise BadBatch(step, key, int(np.size(value) - np.isfinite(value).sum()), np.size(value))


def _improved(value: float, best: float | None, mode: str) -> bool:
    return best is None or (value < best if mode == "min" else value > best)


def train(model: nnx.Module, objective: Objective | Callable, source: Callable[[int], dict], *,
          train_cfg: TrainConfig, optim_cfg: OptimConfig, workdir: str | Path,
          eval_fn: Callable[[nnx.Module], dict] | None = None, best_metric: str = "val_loss",
          best_mode: str = "min", config: Any = None, frozen: dict[str, nnx.Module] | None = None,
          wrt: Any = nnx.Param) -> tuple[nnx.Module, RunResult]:
    """Train a copy of ``model``; returns the trained model and a :class:`RunResult`.

    ``best_mode`` 'min' (losses, errors) or 'max' (accuracy) says which way ``best_metric`` improves. The
    run directory is locked for the duration (``records.run_lock``).
    """
    if best_mode not in ("min", "max"):
        raise ValueError(f"best_mode must be 'min' or 'max', got {best_mode!r}")
    with run_lock(workdir):
        return _train(model, objective, source, train_cfg, optim_cfg, Path(workdir), eval_fn, best_metric,
                      best_mode, config, frozen, wrt)


def load_trained(model: nnx.Module, objective: Objective | Callable, optim_cfg: OptimConfig, workdir: str | Path, *,
                 best: bool = True) -> tuple[nnx.Module, dict]:
    """(the model of the run in ``workdir`` at its best checkpoint, or its latest with ``best=False``, and that
    checkpoint's metadata), loaded onto the structure of ``model`` (built with the run's config) and of the
    optimizer ``optim_cfg`` makes."""
    ckpt = Checkpointer(Path(workdir) / "checkpoints")
    try:
        trainer = Trainer(model, objective, optim_cfg, 1)
        meta = trainer.restore(ckpt, best=best)
        return trainer.model, meta
    finally:
        ckpt.close()


def load_averaged(model: nnx.Module, objective: Objective | Callable, optim_cfg: OptimConfig,
                  workdir: str | Path, *, last: int) -> tuple[nnx.Module, dict]:
    """(the model of the run in ``workdir`` with every parameter the mean over its ``last`` newest checkpoints,
    and ``{'steps': those steps}``), as :func:`load_trained` loads one. Vaswani et al. (2017) average the last
    5 checkpoints of a run (points of one trajectory, 10 minutes apart) for their base models. The run must
    keep that many (``train.keep_last >= last``)."""
    ckpt = Checkpointer(Path(workdir) / "checkpoints")
    try:
        steps = ckpt.last_steps()[-last:]
        if last < 1 or len(steps) < last:
            raise ValueError(f"averaging the last {last} checkpoints needs {last} in {ckpt.directory / 'last'}, which "
                             f"holds {len(steps)} ({steps}); train with train.keep_last >= {last}")
        trainer, total = Trainer(model, objective, optim_cfg, 1), None
        for step in steps:
            trainer.restore(ckpt, step=step)
            params = nnx.state(trainer.model, nnx.Param)
            total = params if total is None else jax.tree.map(lambda a, b: a + b, total, params)
        averaged = trainer.model
        nnx.update(averaged, jax.tree.map(lambda x: x / len(steps), total))
        return averaged, {"steps": steps}
    finally:
        ckpt.close()


def _train(model, objective, source, train_cfg, optim_cfg, workdir, eval_fn, best_metric, best_mode, config,
           frozen, wrt):
    trainer = Trainer(model, objective, optim_cfg, train_cfg.steps, wrt=wrt, frozen=frozen, seed=train_cfg.seed,
                      mesh=make_mesh(train_cfg.mesh))
    main = is_main()  # of a multi-process run, the first process alone writes logs, plots and the config
    ckpt = _fresh_or_stored(workdir, train_cfg, config, main)
    stored = {}
    if ckpt.latest_step() is not None:
        start_loss = trainer.restore(ckpt).get("start_loss")
        best, best_record, last_eval = _stored_evaluations(ckpt)
        # the evaluation of the step resumed at, if any: a finished run's summary reports it
        evals = [last_eval] if last_eval is not None and last_eval.get("step") == trainer.step_count else []
        stored = {"best": best, "best_record": best_record, "evals": evals, "start_loss": start_loss}
    if hasattr(source, "bind"):  # a source that reads the model being trained (PPO's rollouts)
        source.bind(trainer)
    start = trainer.step_count
    if config is not None and main:
        write_config(workdir, config)
    if start >= train_cfg.steps and main:
        print(f"{workdir} already holds a finished run ({start} of {train_cfg.steps} steps); "
              "remove it or pass --set train.resume=false to train again")
    run = _Run(trainer, ckpt, train_cfg, workdir, eval_fn, best_metric, best_mode, config, start, main, **stored)
    batch = source(start) if start < train_cfg.steps else None
    with _stop_on_signals() as flag:
        for step in range(start, train_cfg.steps):
            _check_batch(batch, step)
            run.pending.add(step, trainer.step(batch))
            done = step + 1
            batch = source(done) if done < train_cfg.steps else None  # host work overlaps the device's
            # Read the flag once: a signal handled while a read below waits for the device (steps run ahead
            # asynchronously) is acted on after the next step, saved then, never skipped.
            stop = flag["stop"]
            run.after_step(done, stop)
            if stop:
                run.result.status, run.result.signal = "interrupted", flag["signal"]
                break
    return trainer.model, run.close()


def _fresh_or_stored(workdir: Path, train_cfg: TrainConfig, config: Any, main: bool) -> Checkpointer:
    """The run directory's checkpoints to resume from, after the resume checks; empty when the run starts
    afresh (``train.resume=false``, or a finished run asked for with other learning settings), the previous
    run's files moved aside first (never deleted)."""
    ckpt = Checkpointer(workdir / "checkpoints", train_cfg.keep_last)
    why = None if train_cfg.resume else "train.resume=false"
    if why is None and (latest := ckpt.latest_step()) is not None:
        stored = (ckpt.latest_meta() or {}).get("config")
        current = to_dict(config) if config is not None else None
        if check_resume(workdir, stored, current, latest, getattr(config, "RESUMABLE", ()),
                        finished=latest >= train_cfg.steps):
            why = f"the finished run's learning settings changed ({_learning_changes(stored, current)})"
    if why is not None:
        ckpt.close()
        if main and (aside := move_aside(workdir)) is not None:
            print(f"{why}: the previous run in {workdir} was moved to {aside}; training afresh")
    sync("run directory ready")
    return ckpt if why is None else Checkpointer(workdir / "checkpoints", train_cfg.keep_last)


def _learning_changes(stored: dict, current: dict) -> str:
    return listed_changes({k: v for k, v in config_changes(stored, current).items() if k.startswith(LEARNING)})


def _stored_evaluations(ckpt: Checkpointer) -> tuple[float | None, dict | None, dict | None]:
    """(the best metric so far, read from the metadata of the ``best/`` checkpoint itself, so the value and
    the weights kept for it always agree; the record of that evaluation and the newest one, from
    ``evaluations.json``). Never from ``last/``: a step is saved there before it is evaluated, with the best
    before it."""
    meta, stored = ckpt.best_meta(), ckpt.read_evaluations()
    if meta is None:
        return None, None, stored.get("last")
    best_record = stored.get("best") if (stored.get("best") or {}).get("step") == meta["step"] else None
    return meta.get("best"), best_record, stored.get("last")


def _every(n: int, done: int) -> bool:
    return bool(n) and done % n == 0


class _Speed:
    """Steady-state tokens/s: from the first read after the compiling first step, without the time spent
    saving and evaluating."""

    def __init__(self):
        self.t0, self.steady, self.tokens, self.paused = time.perf_counter(), None, 0.0, 0.0

    def read(self, metrics: list[dict], result: RunResult) -> None:
        if self.steady is None:
            self.steady, result.startup_seconds = time.perf_counter(), time.perf_counter() - self.t0
            return  # the first read holds the compiling step: not timed
        self.tokens += sum(float(m.get("tokens", 0)) for m in metrics)

    def rate(self) -> float:
        elapsed = time.perf_counter() - self.steady - self.paused if self.steady is not None else 0.0
        return self.tokens / elapsed if elapsed > 0 else 0.0

    @contextlib.contextmanager
    def pause(self):
        t = time.perf_counter()
        try:
            yield
        finally:
            if self.steady is not None:
                self.paused += time.perf_counter() - t


class _Run:
    """One call of the loop: the periodic actions after each step (read the metrics back, log, save,
    evaluate, keep the best) and what they share."""

    def __init__(self, trainer, ckpt, cfg, workdir, eval_fn, best_metric, best_mode, config, start, main, *,
                 best=None, best_record=None, evals=(), start_loss=None):
        self.trainer, self.ckpt, self.cfg, self.workdir, self.eval_fn = trainer, ckpt, cfg, workdir, eval_fn
        self.best_metric, self.best_mode, self.config, self.main = best_metric, best_mode, config, main
        self.result = RunResult(status="finished", step=start, best=best, evals=list(evals))
        self.log = MetricsLog(workdir / "metrics.jsonl", resume_step=start if start else None,
                              tensorboard=cfg.tensorboard, enabled=main)
        self.bar = _progress(cfg, start) if main else None
        self.pending, self.last_saved, self.speed = _Pending(cfg.max_loss_rise, start_loss), (start or None), _Speed()
        self.window = []
        self.best_record = best_record  # the evaluation that set result.best

    def after_step(self, done: int, stop: bool) -> None:
        last = done == self.cfg.steps
        logging = last or _every(self.cfg.log_every, done)
        evaluating = self.eval_fn is not None and (last or _every(self.cfg.eval_every, done))
        saving = last or stop or _every(self.cfg.ckpt_every, done)
        if logging or evaluating or saving:  # (a NaN raises here, before anything is saved)
            self.read(done, logging)
        if self.bar:
            self.bar.update(1)
        with self.speed.pause():
            if saving or evaluating:  # save before evaluating: an error there loses no training
                self.save(done)
            if evaluating:
                self.evaluate(done)

    def read(self, done: int, logging: bool) -> None:
        flushed = self.pending.flush(self.result, self.last_saved)
        self.window += [float(m["loss"]) for m in flushed]
        self.speed.read(flushed, self.result)
        if logging:
            host = {k: float(v) for k, v in flushed[-1].items() if k != "tokens"}
            rate = self.speed.rate()
            self.log.write({"step": done, **host, "loss": sum(self.window) / len(self.window), "tokens_per_s": rate})
            self.window = []
            if self.bar:
                self.bar.set_postfix(loss=f"{host['loss']:.4f}", lr=f"{host['lr']:.2e}", tok_s=f"{rate:,.0f}")
        self.result.step = done

    def meta(self) -> dict:
        return {"data_position": self.trainer.step_count, "best": self.result.best, "start_loss": self.pending.start,
                "config": to_dict(self.config) if self.config is not None else None}

    def save(self, done: int) -> None:
        self.trainer.save(self.ckpt, self.meta())
        self.last_saved = done

    def evaluate(self, done: int) -> None:
        record = {"step": done, **self.trainer.evaluate(self.eval_fn)}
        self.result.evals.append(record)
        self.log.write(record)
        if self.best_metric in record and _improved(record[self.best_metric], self.result.best, self.best_mode):
            self.result.best = record[self.best_metric]
            self.trainer.save(self.ckpt, self.meta(), best=True)
            self.best_record = record
        if self.main:  # after the best checkpoint: a kill between the two leaves the checkpoint's own value
            self.ckpt.write_evaluations({"last": record, "best": self.best_record})
        if self.bar:
            shown = ", ".join(f"{k} {_shown(v)}" for k, v in record.items() if k != "step")
            self.bar.write(f"step {done}: {shown}")

    def close(self) -> RunResult:
        if self.bar:
            self.bar.close()
        self.ckpt.close()
        self.log.close()
        self.result.seconds = time.perf_counter() - self.speed.t0
        self.result.tokens_per_second = self.speed.rate()
        if self.main and (self.workdir / "metrics.jsonl").stat().st_size:
            try:
                plot_losses(self.workdir / "metrics.jsonl", self.workdir / "loss.png", title=self.workdir.name)
            except ImportError as err:  # e.g. a GPU machine's Python without matplotlib: the JSON lines remain
                print(f"no loss plot: {err}")
        return self.result


def _shown(value) -> str:
    """An evaluation value as the progress bar writes it: numbers to 4 decimals, anything else as it is."""
    return f"{value:.4f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def _progress(cfg: TrainConfig, start: int):
    if not cfg.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=cfg.steps, initial=start, desc="train", dynamic_ncols=True, mininterval=1.0)
