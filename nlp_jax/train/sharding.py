"""Device meshes, and how the training state and the batches are laid out on them.

A mesh has two axes (``train.mesh``, :class:`nlp_jax.train.config.MeshConfig`):

- ``data``: data parallelism. Every group holds the whole model and sees its own rows of the batch.
- ``fsdp``: fully sharded data parallelism. Parameters, optimizer moments and frozen models are split
  over these devices (each array along its largest dimension that the axis divides), and the batch rows
  are split over them too. XLA gathers a parameter where a step needs it whole.

The batch is sharded over both axes: ``data * fsdp`` devices, each with ``rows / (data * fsdp)`` rows.
Scalars (the step counter, the objective's state, the metrics) are replicated. With one device (the
default 1 x 1 mesh) nothing here is used and the step runs on the default device as before.

The same code runs on one process or many (``jax.distributed``): batches are built with
``jax.make_array_from_callback``, so each process places only the rows of its own devices.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from nlp_jax.train.config import MeshConfig

AXES = ("data", "fsdp")


def make_mesh(cfg: MeshConfig, devices: Sequence[jax.Device] | None = None) -> Mesh | None:
    """The (data, fsdp) mesh over all devices of every process; None for the 1 x 1 mesh (the default device,
    however many there are).

    ``data=-1`` takes the devices ``fsdp`` leaves: ``jax.device_count() // fsdp``.
    """
    if cfg.data == cfg.fsdp == 1:
        return None
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices)
    data = cfg.data if cfg.data != -1 else n // cfg.fsdp if n % cfg.fsdp == 0 else -1
    if data == -1:
        raise ValueError(f"train.mesh.fsdp={cfg.fsdp} does not divide the {n} devices JAX sees "
                         f"({devices[0].platform}); choose an fsdp that divides {n}")
    if data * cfg.fsdp != n:
        raise ValueError(f"train.mesh: data={data} x fsdp={cfg.fsdp} = {data * cfg.fsdp} devices, but JAX sees {n} "
                         f"({devices[0].platform}); set data x fsdp = {n} (e.g. --set train.mesh.data={n} for data "
                         f"parallelism, or train.mesh.data=-1 with the fsdp you want)")
    if n == 1:
        return None
    return Mesh(np.array(devices).reshape(data, cfg.fsdp), AXES)


def param_spec(shape: tuple[int, ...], fsdp: int) -> P:
    """The FSDP layout of one array: its largest dimension that ``fsdp`` divides, split over 'fsdp'
    (the first of equal ones); replicated when ``fsdp`` is 1 or divides none of its dimensions."""
    dims = [d for d, size in enumerate(shape) if fsdp > 1 and size % fsdp == 0]
    if not dims:
        return P()
    axis = max(dims, key=lambda d: (shape[d], -d))
    return P(*[("fsdp" if d == axis else None) for d in range(len(shape))])


def state_shardings(leaves: Sequence[Any], mesh: Mesh) -> list[NamedSharding]:
    """One NamedSharding per array of a model / optimizer state (:func:`param_spec` on the mesh's fsdp
    axis). A ValueError when fsdp > 1 but divides no dimension of any array: nothing would be sharded."""
    fsdp = mesh.shape["fsdp"]
    specs = [param_spec(tuple(np.shape(x)), fsdp) for x in leaves]
    if fsdp > 1 and leaves and all(s == P() for s in specs):
        shapes = sorted({tuple(np.shape(x)) for x in leaves}, key=lambda s: -int(np.prod(s)))[:5]
        raise ValueError(f"train.mesh.fsdp={fsdp} divides no dimension of any parameter (largest shapes "
                         f"{shapes}); choose an fsdp that divides the model's widths (a power of two usually does)")
    return [NamedSharding(mesh, s) for s in specs]


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def put(leaves: Sequence[Any], shardings: Sequence[NamedSharding]) -> list[jax.Array]:
    """Copies of ``leaves`` laid out as ``shardings`` (never aliasing them: the step donates its inputs).
    Every process must pass the same values (they are: parameters are initialised from the same seed)."""
    return [jax.device_put(x, s, may_alias=False) for x, s in zip(leaves, shardings)]


def shard_batch(batch: dict, mesh: Mesh) -> dict:
    """A host batch as global arrays, rows split over ``data * fsdp`` devices; 0-d values replicated. Each
    process computes the same global batch and places only its own devices' rows."""
    n = mesh.shape["data"] * mesh.shape["fsdp"]

    def place(name, x):
        x = np.asarray(x)
        if x.ndim == 0:
            sharding = replicated(mesh)
        elif x.shape[0] % n:
            raise ValueError(f"batch[{name!r}] has {x.shape[0]} rows, which do not split over the mesh's {n} "
                             f"devices (data={mesh.shape['data']} x fsdp={mesh.shape['fsdp']}); make the rows a "
                             f"multiple of {n} (a batch size, or a token-budget source's rows_multiple)")
        else:
            sharding = NamedSharding(mesh, P(AXES))
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return {name: place(name, x) for name, x in batch.items()}


def tree_shardings(tree: Any, mesh: Mesh) -> Any:
    """:func:`state_shardings` over the leaves of any pytree (frozen models' states), as that tree."""
    leaves, treedef = jax.tree.flatten(tree)
    return jax.tree.unflatten(treedef, state_shardings(leaves, mesh) if leaves else [])
