"""One training loop for every objective.

The objective is ``loss_fn(model, batch, key) -> (loss, aux)``; ``source(step) -> batch`` supplies data
(so the data position of a run is its step); ``eval_fn(model) -> {name: value}`` evaluates. The loop owns
the jitted train step, metrics, checkpoints, exact resume, signals and divergence handling.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from nlp_jax.train.checkpoint import Checkpointer
from nlp_jax.train.config import OptimConfig, TrainConfig, to_dict
from nlp_jax.train.metrics import MetricsLog, plot_losses
from nlp_jax.train.optim import make_optimizer

LossFn = Callable[[nnx.Module, dict, jax.Array], tuple[jax.Array, dict]]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left untouched."""

    def __init__(self, step: int, loss: float):
        super().__init__(f"loss is {loss} at step {step}; stopping. The last good checkpoint is kept; "
                         "lower optim.lr or raise optim.warmup_steps and resume.")
        self.step, self.loss = step, loss


def make_train_step(graphdef: nnx.GraphDef, treedef, loss_fn: LossFn, schedule: optax.Schedule):
    """A jitted ``(leaves, batch, key) -> (leaves, metrics, carry)`` over the flat leaves of the split
    (model, optimizer) state (``treedef = jax.tree.structure(state)``). Passing plain arrays rather than
    NNX Variables keeps the per-step host work to the C++ pytree fast path; the leaves are donated.
    ``carry`` is ``aux['carry']`` of the loss (None for objectives without recurrent state)."""

    def train_step(leaves, batch, key):
        model, opt = nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))
        lr = schedule(opt.step[...].astype(jnp.int32))  # uint32 would wrap in schedules that subtract
        (loss, aux), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, batch, key)
        opt.update(model, grads)
        carry = aux.pop("carry", None)  # recurrent state handed to the next step (truncated BPTT)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "lr": lr, **aux}
        return jax.tree.leaves(nnx.state((model, opt))), metrics, carry

    return jax.jit(train_step, donate_argnums=0)


def init_train_state(model: nnx.Module, optim_cfg: OptimConfig, total_steps: int):
    """Split (model, optimizer) into ``(graphdef, state, schedule)``: the state that checkpoints hold."""
    tx, schedule = make_optimizer(optim_cfg, total_steps)
    graphdef, state = nnx.split((model, nnx.Optimizer(model, tx, wrt=nnx.Param)))
    return graphdef, state, schedule


@dataclass
class RunResult:
    status: str  # 'finished' or 'interrupted'
    step: int  # steps completed
    losses: dict[int, float] = field(default_factory=dict)  # train loss of every step run in this call
    evals: list[dict] = field(default_factory=list)  # every evaluation of this call
    best: float = math.inf  # best eval metric so far
    seconds: float = 0.0  # wall time of the loop in this call
    tokens_per_second: float = 0.0  # steady state (first step, which compiles, excluded)


@contextlib.contextmanager
def _stop_on_signals():
    """SIGINT/SIGTERM set a flag instead of killing the process; the loop checkpoints and returns."""
    flag = {"stop": False}

    def handler(signum, frame):
        flag["stop"] = True

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def train(model: nnx.Module, loss_fn: LossFn, source: Callable[[int], dict], *, train_cfg: TrainConfig,
          optim_cfg: OptimConfig, workdir: str | Path, eval_fn: Callable[[nnx.Module], dict] | None = None,
          best_metric: str = "val_loss", config: Any = None,
          init_carry: Callable[[], Any] | None = None) -> tuple[nnx.Module, RunResult]:
    """Train ``model`` in place of its parameters; returns the trained model and a :class:`RunResult`.

    Recurrent objectives (truncated BPTT) pass ``init_carry() -> pytree``: the loop hands
    ``batch['carry']`` to the loss, keeps the ``aux['carry']`` it returns for the next step, resets it
    where the source's batch says ``reset_carry: True``, and checkpoints it with the state.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    graphdef, state, schedule = init_train_state(model, optim_cfg, train_cfg.steps)
    carry = init_carry() if init_carry is not None else None
    ckpt = Checkpointer(workdir / "checkpoints", train_cfg.keep_last)
    start, best = 0, math.inf
    if train_cfg.resume and ckpt.latest_step() is not None:
        if init_carry is not None:
            state, meta, carry = ckpt.restore(state, carry=init_carry())
        else:
            state, meta = ckpt.restore(state)
        start, best = meta["data_position"], meta["best"]
    log = MetricsLog(workdir / "metrics.jsonl", resume_step=start if start else None)
    if config is not None:
        (workdir / "config.json").write_text(json.dumps(to_dict(config), indent=2))
    treedef = jax.tree.structure(state)
    step_fn = make_train_step(graphdef, treedef, loss_fn, schedule)
    leaves = jax.tree.leaves(state)
    del state  # from here on the run's state is `leaves`; current_state() rebuilds the NNX State

    def current_state():
        return jax.tree.unflatten(treedef, leaves)
    base_key = jax.random.key(train_cfg.seed)
    result = RunResult(status="finished", step=start, best=best)

    def meta(step):
        return {"step": step, "data_position": step, "best": result.best,
                "config": to_dict(config) if config is not None else None}

    def evaluate(step):
        model_now = nnx.merge(graphdef, current_state())[0]
        record = {"step": step, **eval_fn(model_now)}
        result.evals.append(record)
        log.write(record)
        if record.get(best_metric, math.inf) < result.best:
            result.best = record[best_metric]
            ckpt.save(current_state(), meta(step), carry=carry, best=True)
        return record

    if start >= train_cfg.steps:
        print(f"{workdir} already holds a finished run ({start} of {train_cfg.steps} steps); "
              "remove it or pass --set train.resume=false to train again")
    bar = _progress(train_cfg, start)
    t0, t_steady, tokens, window = time.perf_counter(), None, 0, []
    with _stop_on_signals() as flag:
        for step in range(start, train_cfg.steps):
            batch = source(step)
            if init_carry is not None:
                batch = {**batch, "carry": init_carry() if batch.pop("reset_carry", False) else carry}
            leaves, metrics, carry = step_fn(leaves, batch, jax.random.fold_in(base_key, step))
            loss = float(metrics["loss"])
            if not math.isfinite(loss):
                log.write({"step": step + 1, "loss": loss})
                ckpt.close()
                raise TrainingDiverged(step, loss)
            if t_steady is None:
                t_steady = time.perf_counter()  # the first step compiles; time the rest
            else:
                tokens += _count_tokens(batch)
            done = step + 1
            result.losses[step], result.step = loss, done
            window.append(loss)
            if done % train_cfg.log_every == 0 or done == train_cfg.steps:
                elapsed = time.perf_counter() - t_steady
                rate = tokens / elapsed if elapsed > 0 else 0.0
                log.write({"step": done, "loss": sum(window) / len(window), "lr": float(metrics["lr"]),
                           "grad_norm": float(metrics["grad_norm"]), "tokens_per_s": rate,
                           **{k: float(v) for k, v in metrics.items() if k not in ("loss", "lr", "grad_norm")}})
                window = []
                if bar:
                    bar.set_postfix(loss=f"{loss:.4f}", lr=f"{float(metrics['lr']):.2e}", tok_s=f"{rate:,.0f}")
            if bar:
                bar.update(1)
            last = done == train_cfg.steps
            if eval_fn is not None and (last or (train_cfg.eval_every and done % train_cfg.eval_every == 0)):
                rec = evaluate(done)
                if bar:
                    bar.write(f"step {done}: " + ", ".join(f"{k} {v:.4f}" for k, v in rec.items() if k != "step"))
            if last or flag["stop"] or (train_cfg.ckpt_every and done % train_cfg.ckpt_every == 0):
                ckpt.save(current_state(), meta(done), carry=carry)
            if flag["stop"]:
                result.status = "interrupted"
                break
    if bar:
        bar.close()
    ckpt.close()
    result.seconds = time.perf_counter() - t0
    if t_steady is not None and time.perf_counter() > t_steady:
        result.tokens_per_second = tokens / (time.perf_counter() - t_steady)
    if (workdir / "metrics.jsonl").stat().st_size:
        plot_losses(workdir / "metrics.jsonl", workdir / "loss.png", title=workdir.name)
    nnx.update(model, nnx.state(nnx.merge(graphdef, current_state())[0]))
    return model, result


def _count_tokens(batch: dict) -> int:
    """Tokens in a batch: the size of its 'inputs' (language models) or 'tokens' (classifiers)."""
    x = batch.get("inputs", batch.get("tokens"))
    return int(x.size) if x is not None else 0


def _progress(cfg: TrainConfig, start: int):
    if not cfg.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=cfg.steps, initial=start, desc="train", dynamic_ncols=True, mininterval=1.0)
