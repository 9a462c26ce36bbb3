"""The one signature every objective is trained through: an :class:`Objective`'s loss is
``loss(model, batch, key, state, frozen) -> (loss, aux, new_state)``. ``state`` is the objective's own pytree
(a recurrent carry for truncated BPTT, PPO's rollout and KL coefficient; None when it has none), carried from
step to step on the device and checkpointed; ``frozen`` holds the models the objective reads but does not
train (a reference policy, a reward model). ``aux`` is a flat dict of scalars (``aux['tokens']`` counts the
step's tokens for tokens/s). A stateless ``loss_fn(model, batch, key) -> (loss, aux)`` becomes one with
:meth:`Objective.of` (the Trainer does this for a plain function)."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any

import jax
from flax import nnx

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Objective:
    loss: Callable[..., tuple[Array, dict, Any]]  # (model, batch, key, state, frozen) -> (loss, aux, state)
    init_state: Callable[[], Any] = lambda: None  # the state at the start (and where a batch says reset_state)

    @classmethod
    def of(cls, loss_fn: Callable[[nnx.Module, dict, Array], tuple[Array, dict]]) -> Objective:
        """A stateless objective from ``loss_fn(model, batch, key) -> (loss, aux)``: one object per function,
        so the trainers of one function share their compiled step (``train.trainer``)."""
        try:
            return _lifted(cls, loss_fn)
        except TypeError:  # an unhashable callable: an objective of its own
            return cls(loss=_Stateless(loss_fn))


@functools.cache
def _lifted(cls, loss_fn):
    return cls(loss=_Stateless(loss_fn))


def one_per_setting(factory: Callable[..., Objective]) -> Callable[..., Objective]:
    """``factory`` made to return one Objective per setting (its arguments, defaults filled in: ``beta=0.1``
    and ``beta=0.1, loss_type='sigmoid'`` are one setting), so trainers of equal settings share one compiled
    step (``train.trainer``): the rounds of an iterative method, a stage resumed in the same process.
    Arguments that cannot be hashed get an objective of their own."""
    signature = inspect.signature(factory)
    made: dict[tuple, Objective] = {}

    @functools.wraps(factory)
    def shared(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        setting = tuple(bound.arguments.items())
        try:
            hash(setting)
        except TypeError:
            return factory(*args, **kwargs)
        if setting not in made:
            made[setting] = factory(*args, **kwargs)
        return made[setting]

    return shared


@dataclasses.dataclass(frozen=True)
class _Stateless:
    """``loss_fn(model, batch, key)`` as an objective's loss: the state passes through, ``frozen`` is unread."""
    loss_fn: Callable[[nnx.Module, dict, Array], tuple[Array, dict]]

    def __call__(self, model, batch, key, state, frozen):
        return (*self.loss_fn(model, batch, key), state)
