"""Orbax checkpoints of the whole training state (model, optimizer, the objective's state) plus JSON
metadata (step, data position, best metric, config). Two managers: ``last/`` keeps the most recent N,
``best/`` the best one."""

from __future__ import annotations

from pathlib import Path

import jax
import orbax.checkpoint as ocp
from flax import nnx


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
        items = {"state": ocp.args.StandardSave(nnx.to_pure_dict(state)), "meta": ocp.args.JsonSave(meta)}
        if objective_state is not None:
            items["objective"] = ocp.args.StandardSave({"state": objective_state})  # orbax wants a tree
        args = ocp.args.Composite(**items)
        manager.save(meta["step"], args=args, force=True)
        manager.wait_until_finished()

    def latest_step(self) -> int | None:
        return self.last.latest_step()

    def restore(self, abstract_state: nnx.State, *, objective_state=None, best: bool = False):
        """Restore onto the structure of ``abstract_state`` (e.g. from ``nnx.eval_shape``) and of the
        ``objective_state`` template (None if the objective has none); returns ``(state, meta,
        objective_state)``."""
        manager = self.best if best else self.last
        step = manager.latest_step()
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory / ('best' if best else 'last')}")
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, nnx.to_pure_dict(abstract_state))
        items = {"state": ocp.args.StandardRestore(target), "meta": ocp.args.JsonRestore()}
        if objective_state is not None:
            target_obj = jax.tree.map(ocp.utils.to_shape_dtype_struct, objective_state)
            items["objective"] = ocp.args.StandardRestore({"state": target_obj})
        restored = manager.restore(step, args=ocp.args.Composite(**items))
        state = jax.tree.map(lambda x: x, abstract_state)  # a copy whose leaves we replace
        nnx.replace_by_pure_dict(state, restored["state"])
        if objective_state is None:
            return state, restored["meta"], None
        return state, restored["meta"], jax.tree.unflatten(jax.tree.structure(objective_state),
                                                            jax.tree.leaves(restored["objective"]["state"]))

    def close(self) -> None:
        self.last.close()
        self.best.close()
