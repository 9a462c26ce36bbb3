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

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
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
    """The loss became NaN or infinite; no checkpoint is written after the last finite step."""

    def __init__(self, step: int, loss: float, kept: int | None, bad_ids: int = 0):
        kept_text = f"the last good checkpoint (step {kept}) is kept" if kept else "no checkpoint was saved before it"
        advice = (f"The batch held {bad_ids} token ids outside the model's vocabulary: fix the data or the "
                  "tokenizer." if bad_ids else "Lower optim.lr or raise optim.warmup_steps and resume.")
        super().__init__(f"loss is {loss} at step {step} (metrics.jsonl numbering: the step-th optimizer step); "
                         f"stopping: {kept_text}. {advice}")
        self.step, self.loss = step, loss


def _split(models: dict[str, nnx.Module] | None) -> tuple[dict, dict]:
    models = models or {}
    pairs = {name: nnx.split(m) for name, m in models.items()}
    return {n: g for n, (g, _) in pairs.items()}, {n: s for n, (_, s) in pairs.items()}


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
        self.tx, self.schedule = make_optimizer(optim_cfg, total_steps)
        graphdef, state = nnx.split((model, nnx.Optimizer(model, self.tx, wrt=wrt)))
        self.graphdef, self.treedef = graphdef, jax.tree.structure(state)
        self.frozen_defs, self.frozen_states = _split(frozen)
        leaves = jax.tree.leaves(state)
        if mesh is None:
            self.leaves = [jnp.copy(x) for x in leaves]  # own buffers: donation is safe
            self._step = jax.jit(self._train_step, donate_argnums=(0, 1))
        else:
            self.leaf_shardings = sharding.state_shardings(leaves, mesh)
            self.leaves = sharding.put(leaves, self.leaf_shardings)
            self.frozen_states = jax.device_put(self.frozen_states, sharding.tree_shardings(self.frozen_states, mesh))
            rep = sharding.replicated(mesh)  # a prefix: every leaf of the objective state and the metrics
            self._step = jax.jit(self._train_step, donate_argnums=(0, 1), out_shardings=(self.leaf_shardings, rep, rep))
        self.objective_state = self._initial_state()
        self.base_key = jax.random.key(seed)
        self.step_count = 0

    def _initial_state(self):
        """The objective's initial state in buffers of its own (it is donated: no two leaves may share one)."""
        state = jax.tree.map(jnp.copy, self.objective.init_state())
        return state if self.mesh is None else jax.device_put(state, sharding.replicated(self.mesh))

    # ---- the jitted step --------------------------------------------------------------------------------

    def _train_step(self, leaves, obj_state, frozen_states, batch, key):
        model, opt = nnx.merge(self.graphdef, jax.tree.unflatten(self.treedef, leaves))
        frozen = {n: nnx.merge(self.frozen_defs[n], s) for n, s in frozen_states.items()}
        lr = self.schedule(opt.step[...].astype(jnp.int32))  # uint32 would wrap in schedules that subtract

        def loss(m):
            value, aux, new_state = self.objective.loss(m, batch, key, obj_state, frozen)
            return value, (aux, new_state)

        grad_fn = nnx.value_and_grad(loss, argnums=nnx.DiffState(0, self.wrt), has_aux=True)
        (value, (aux, new_state)), grads = grad_fn(model)
        opt.update(model, grads)
        metrics = {"loss": value, "grad_norm": optax.tree.norm(grads), "lr": lr, **aux}
        return jax.tree.leaves(nnx.state((model, opt))), new_state, metrics

    def step(self, batch: dict) -> dict:
        """One optimizer step on ``batch`` (its dropout key ``fold_in(seed, step)``); returns the metrics as
        device arrays (not synchronised). A batch with ``reset_state: True`` restarts the objective state."""
        if batch.pop("reset_state", False):
            self.objective_state = self._initial_state()
        key = jax.random.fold_in(self.base_key, self.step_count)
        if self.mesh is not None:
            batch = sharding.shard_batch(batch, self.mesh)
        self.leaves, self.objective_state, metrics = self._step(self.leaves, self.objective_state,
                                                                self.frozen_states, batch, key)
        self.step_count += 1
        return metrics

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
