"""Orbax checkpoints of the whole training state (model, optimizer) plus JSON metadata (step, data
position, best metric, config). Two managers: ``last/`` keeps the most recent N, ``best/`` the best one."""

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

    def save(self, state: nnx.State, meta: dict, *, best: bool = False) -> None:
        """Save ``state`` and ``meta`` at ``meta['step']``; ``best=True`` writes the best slot instead."""
        manager = self.best if best else self.last
        args = ocp.args.Composite(state=ocp.args.StandardSave(nnx.to_pure_dict(state)),
                                  meta=ocp.args.JsonSave(meta))
        manager.save(meta["step"], args=args, force=True)
        manager.wait_until_finished()

    def latest_step(self) -> int | None:
        return self.last.latest_step()

    def restore(self, abstract_state: nnx.State, *, best: bool = False) -> tuple[nnx.State, dict]:
        """Restore onto the structure of ``abstract_state`` (e.g. from ``nnx.eval_shape``)."""
        manager = self.best if best else self.last
        step = manager.latest_step()
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory / ('best' if best else 'last')}")
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, nnx.to_pure_dict(abstract_state))
        restored = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
        state = jax.tree.map(lambda x: x, abstract_state)  # a copy whose leaves we replace
        nnx.replace_by_pure_dict(state, restored["state"])
        return state, restored["meta"]

    def close(self) -> None:
        self.last.close()
        self.best.close()
