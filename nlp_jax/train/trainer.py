"""The Trainer: the jitted train step over the split NNX state, the objective's own state, frozen models,
and the save / restore of all of it. ``train.loop.train`` is a short driver over it; an outer loop (RL
iterations, curricula) can call :meth:`Trainer.step` and :meth:`Trainer.evaluate` repeatedly.

An :class:`Objective` is ``loss(model, batch, key, state, frozen) -> (loss, aux, new_state)``: ``state`` is
the objective's own pytree (a recurrent carry for truncated BPTT, a KL coefficient for PPO; None when it
has none), carried from step to step on the device and checkpointed; ``frozen`` holds the models the
objective reads but does not train (a reference policy, a reward model), passed to the jitted step as
explicit, non-donated arguments. ``aux['tokens']`` (if present) counts the step's tokens for tokens/s.

Given a ``mesh`` (``train.sharding.make_mesh``), the state, the frozen models and every batch are laid out
on it (data parallel, FSDP or both, ``train.sharding``) and the step is compiled for that layout; the
arithmetic, and so the result, is the one-device step's.
"""

from __future__ import annotations

import dataclasses
import os
import weakref
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh

from nlp_jax.objectives.base import Objective
from nlp_jax.train import sharding
from nlp_jax.train.checkpoint import Checkpointer
from nlp_jax.train.config import OptimConfig
from nlp_jax.train.optim import make_optimizer

Array = jax.Array


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite, or rose far above its start (``start`` given); no checkpoint is
    written after the last good step. The message tells a data fault (token ids outside the vocabulary) from
    an optimisation one; non-finite values in a batch are refused before the step (``BadBatch``)."""

    def __init__(self, step: int, loss: float, kept: int | None, bad_ids: int = 0, start: float | None = None):
        kept_text = f"the last good checkpoint (step {kept}) is kept" if kept else "no checkpoint was saved before it"
        if bad_ids:
            advice = (f"The batch held {bad_ids} token ids outside the model's vocabulary: a data fault; fix the data "
                      "or the tokenizer.")
        else:
            advice = ("The data was finite and in range: an optimisation fault. Lower optim.lr or raise "
                      "optim.warmup_steps and resume.")
        what = f"loss is {loss}" if start is None else f"loss {loss:.4g} is far above its start ({start:.4g})"
        super().__init__(f"{what} at step {step} (metrics.jsonl numbering: the step-th optimizer step); "
                         f"stopping: {kept_text}. {advice}")
        self.step, self.loss = step, loss


class BadBatch(ValueError):
    """A batch holds NaN or infinite values: a data fault (or a fault of whatever made the data: a judge, a
    reward model), found before the model trains on it; a lower learning rate cannot help."""

    def __init__(self, step: int, key: str, count: int, size: int):
        super().__init__(f"the batch of step {step + 1} holds {count} of {size} non-finite values in {key!r}: a data "
                         "fault (or one of whatever made the data, e.g. a judge or reward model returning NaN), not an "
                         "optimisation one; nothing was trained on it. Fix the data or its maker and rerun to resume")


def device_memory() -> int | None:
    """Bytes one device can hold: the accelerator's limit, or the host's physical memory on CPU (None when
    neither is known)."""
    stats = jax.local_devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(compiled, what: str) -> None:
    """Refuse ``compiled`` (a ``jax.stages.Compiled``) when its arguments, outputs and temporaries, as XLA
    plans them, exceed :func:`device_memory`, naming both sizes and what to lower."""
    analysis, limit = compiled.memory_analysis(), device_memory()
    if analysis is None or limit is None:
        return
    need = (analysis.temp_size_in_bytes + analysis.argument_size_in_bytes + analysis.output_size_in_bytes
            - analysis.alias_size_in_bytes)
    if need > limit:
        raise MemoryError(f"{what} needs {need / 2**30:,.1f} GiB ({analysis.temp_size_in_bytes / 2**30:,.1f} GiB of "
                          f"it temporaries, as XLA compiled it) and the device holds {limit / 2**30:,.1f} GiB: lower "
                          "the batch size or the sequence length (block_size), or use a smaller model")


def _split(models: dict[str, nnx.Module] | None) -> tuple[dict, dict]:
    models = models or {}
    pairs = {name: nnx.split(m) for name, m in models.items()}
    return {n: g for n, (g, _) in pairs.items()}, {n: s for n, (_, s) in pairs.items()}


@dataclasses.dataclass(frozen=True)
class _Program:
    """What the train step's program depends on besides its inputs' shapes: equal for two trainers of the
    same model shape, objective and optimizer settings, which then share one jitted step (traced, lowered and
    compiled once per input shape, not once per trainer: a resumed run, the rounds of a multi-stage run)."""
    graphdef: Any
    treedef: Any
    frozen_defs: tuple
    objective: weakref.ref  # to the Objective: the shared steps are kept while an equal objective lives
    optim_cfg: OptimConfig
    total_steps: int
    wrt: Any

    def __call__(self, leaves, obj_state, frozen_states, batch, key):
        model, opt = nnx.merge(self.graphdef, jax.tree.unflatten(self.treedef, leaves))
        frozen = {n: nnx.merge(d, frozen_states[n]) for n, d in self.frozen_defs}
        _, schedule = make_optimizer(self.optim_cfg, self.total_steps)
        lr = schedule(opt.step[...].astype(jnp.int32))  # uint32 would wrap in schedules that subtract
        objective = self.objective()

        def loss(m):
            value, aux, new_state = objective.loss(m, batch, key, obj_state, frozen)
            return value, (aux, new_state)

        grad_fn = nnx.value_and_grad(loss, argnums=nnx.DiffState(0, self.wrt), has_aux=True)
        (value, (aux, new_state)), grads = grad_fn(model)
        opt.update(model, grads)
        metrics = {"loss": value, "grad_norm": optax.tree.norm(grads), "lr": lr, **aux}
        return jax.tree.leaves(nnx.state((model, opt))), new_state, metrics


# objective -> {program: (its jitted step, {the parameters' and frozen models' shapes: executables})}, for
# trainers on one device; an entry goes with its objective (an Objective.of(f) lives as long as f, an objective
# factory's result as long as the process: their compiled steps stay, as a module-level jax.jit's do)
_SHARED_STEPS: weakref.WeakKeyDictionary[Objective, dict[_Program, tuple[Callable, dict]]] = weakref.WeakKeyDictionary()


def _shapes(tree) -> tuple:
    return tuple((np.shape(x), getattr(x, "dtype", type(x))) for x in jax.tree.leaves(tree))


def _shared_step(objective: Objective, program: _Program, fixed) -> tuple[Callable, dict]:
    """The jitted step of ``program`` and its executables for the fixed inputs ``fixed`` (the parameters and
    frozen models), the ones an earlier trainer of an equal objective made if there is one (an objective whose
    functions cannot be hashed gets its own)."""
    try:
        steps = _SHARED_STEPS.setdefault(objective, {})
        if program not in steps:
            steps[program] = jax.jit(program, donate_argnums=(0, 1)), {}
        step, compiled = steps[program]
        return step, compiled.setdefault(_shapes(fixed), {})
    except TypeError:
        return jax.jit(program, donate_argnums=(0, 1)), {}


class Trainer:
    """Owns (model, optimizer) as flat device leaves, the objective state and the frozen models.

    The model's arrays are copied at construction, so donating the step's buffers never invalidates the
    caller's model; :attr:`model` rebuilds the trained model. ``wrt`` selects the trained parameters (an
    NNX filter, e.g. ``nnx.Param`` or ``nnx.All(nnx.Param, nnx.PathContains('head'))``).
    """

    def __init__(self, model: nnx.Module, objective: Objective | Callable, optim_cfg: OptimConfig, total_steps: int,
                 *, wrt: Any = nnx.Param, frozen: dict[str, nnx.Module] | None = None, seed: int = 0,
                 mesh: Mesh | None = None):
        # a plain loss_fn(model, batch, key) -> (loss, aux) is a stateless objective
        self.objective = objective if isinstance(objective, Objective) else Objective.of(objective)
        self.wrt, self.mesh = wrt, mesh
        self.tx = make_optimizer(optim_cfg, total_steps)[0]
        graphdef, state = nnx.split((model, nnx.Optimizer(model, self.tx, wrt=wrt)))
        self.graphdef, self.treedef = graphdef, jax.tree.structure(state)
        self.frozen_defs, self.frozen_states = _split(frozen)
        program = _Program(graphdef, self.treedef, tuple(sorted(self.frozen_defs.items())),
                           weakref.ref(self.objective), optim_cfg, total_steps, wrt)
        leaves = jax.tree.leaves(state)
        # the step compiled per shape of its varying inputs, each checked against the memory there is (shared by
        # the trainers of one program and parameter shapes on one device)
        if mesh is None:
            self.leaves = [jnp.copy(x) for x in leaves]  # own buffers: donation is safe
            self._step, self._compiled = _shared_step(self.objective, program, (leaves, self.frozen_states))
        else:
            self.leaf_shardings = sharding.state_shardings(leaves, mesh)
            self.leaves = sharding.put(leaves, self.leaf_shardings)
            self.frozen_states = jax.device_put(self.frozen_states, sharding.tree_shardings(self.frozen_states, mesh))
            rep = sharding.replicated(mesh)  # a prefix: every leaf of the objective state and the metrics
            self._step = jax.jit(program, donate_argnums=(0, 1), out_shardings=(self.leaf_shardings, rep, rep))
            self._compiled = {}
        self.objective_state = self._initial_state()
        self.base_key = jax.random.key(seed)
        self.step_count = 0

    def _initial_state(self):
        """The objective's initial state in buffers of its own (it is donated: no two leaves may share one)."""
        state = jax.tree.map(jnp.copy, self.objective.init_state())
        return state if self.mesh is None else jax.device_put(state, sharding.replicated(self.mesh))

    def step(self, batch: dict) -> dict:
        """One optimizer step on ``batch`` (its dropout key ``fold_in(seed, step)``); returns the metrics as
        device arrays (not synchronised). A batch with ``reset_state: True`` restarts the objective state."""
        if batch.pop("reset_state", False):
            self.objective_state = self._initial_state()
        key = jax.random.fold_in(self.base_key, self.step_count)
        if self.mesh is not None:
            batch = sharding.shard_batch(batch, self.mesh)
        args = (self.leaves, self.objective_state, self.frozen_states, batch, key)
        self.leaves, self.objective_state, metrics = self._compiled_for(args)(*args)
        self.step_count += 1
        return metrics

    def _compiled_for(self, args):
        """The step compiled for these inputs' shapes (as ``jax.jit`` caches it), refused before it runs when
        XLA's own estimate of its memory exceeds what the device has (a block size longer than anything the
        machine can hold ran for 11 minutes, deaf to signals, instead of failing). A multi-process run calls
        the jitted step itself: executables compiled ahead of time do not agree on their collectives' launch
        across processes (the pair deadlocks)."""
        if jax.process_count() > 1:
            return self._step
        varying = (args[1], args[3])  # the objective state and the batch: the parameters and frozen models are fixed
        signature = (jax.tree.structure(varying), _shapes(varying))
        if signature not in self._compiled:
            compiled = self._step.lower(*args).compile()
            check_memory(compiled, "the training step")
            self._compiled[signature] = compiled
        return self._compiled[signature]

    # ---- state ------------------------------------------------------------------------------------------

    @property
    def state(self) -> nnx.State:
        return jax.tree.unflatten(self.treedef, self.leaves)

    @property
    def model(self) -> nnx.Module:
        """The model as trained so far (a new module over the current arrays)."""
        return nnx.merge(self.graphdef, self.state)[0]

    def evaluate(self, eval_fn: Callable[[nnx.Module], dict]) -> dict:
        return eval_fn(self.model)

    def save(self, ckpt: Checkpointer, meta: dict, *, best: bool = False) -> None:
        """Model, optimizer and objective state at ``self.step_count``, plus ``meta``."""
        ckpt.save(self.state, {**meta, "step": self.step_count}, objective_state=self.objective_state, best=best)

    def restore(self, ckpt: Checkpointer, *, best: bool = False, step: int | None = None) -> dict:
        """Load the latest (or the best, or ``step``'s) checkpoint of ``ckpt`` into this trainer; returns its
        metadata."""
        state, meta, obj_state = ckpt.restore(self.state, objective_state=self.objective.init_state(), best=best,
                                              step=step)
        self.leaves = jax.tree.leaves(state)
        if self.mesh is not None:  # onto this trainer's layout, whatever mesh the checkpoint was saved from
            self.leaves = jax.device_put(self.leaves, self.leaf_shardings)
            obj_state = jax.device_put(obj_state, sharding.replicated(self.mesh))
        self.objective_state = obj_state
        self.step_count = int(meta["step"])
        return meta
