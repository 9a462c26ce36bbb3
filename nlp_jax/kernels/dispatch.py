"""The one dispatch for every op with a fast path: which implementation computes it, on which platform.

Vocabulary (``implementation=``), the same for every op; each op accepts the subset it has:

- ``'auto'`` (or None): the fastest path that applies, chosen for the platform the computation is
  *lowered* for (``jax.lax.platform_dependent``), not the process's default backend: an exported or
  cross-compiled function gets the path of its target, and the reference on any other platform.
- ``'reference'``: the equation in ``nlp_jax.ops``, plain JAX, any platform. Every fast path is tested
  against it.
- ``'xla'``: ``jax.nn``'s XLA implementation (attention only), any platform.
- ``'cudnn'``: ``jax.nn``'s cuDNN implementation (attention on NVIDIA GPUs).
- ``'cpu'``: this package's C++ kernel (``kernels/csrc``), on CPU only.
- ``'blockwise'``: attention by blocks with an online softmax (``kernels.blockwise``), memory linear in the
  sequence length, pure JAX on any platform.

An explicit choice is never replaced: if it cannot apply (a kernel that cannot be built, an input it
does not take, a platform it does not run on) the call fails with a message that says why.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
from jax.extend.core import Primitive
from jax.interpreters import mlir

from nlp_jax.kernels import build

IMPLEMENTATIONS = ("auto", "reference", "xla", "cudnn", "cpu", "blockwise")
_PLATFORM_OF = {"cpu": "cpu", "cudnn": "cuda"}


def check(op: str, implementation: str | None, supported: Sequence[str]) -> str:
    """``implementation`` normalised ('auto' for None); a ValueError naming the valid ones otherwise."""
    impl = "auto" if implementation is None else implementation
    if impl not in supported:
        known = f"{op} has no {impl!r} path" if impl in IMPLEMENTATIONS else f"unknown implementation {impl!r}"
        raise ValueError(f"{op}: implementation must be one of {tuple(supported)} (or None = 'auto'); {known}")
    return impl


def has_platform(platform: str) -> bool:
    """Whether this process has devices of ``platform`` ('cpu', 'cuda', 'rocm', 'tpu')."""
    try:
        return bool(jax.devices(platform))
    except RuntimeError:
        return False


# A primitive whose lowering raises: the branch an explicit 'cpu' / 'cudnn' choice takes on any other
# platform, so the mistake is reported when the computation is lowered for that platform.
_unsupported_p = Primitive("nlp_jax_unsupported_platform")
_unsupported_p.multiple_results = True
_unsupported_p.def_abstract_eval(lambda *, avals, message: list(avals))


def _raise_on_lowering(ctx, *, avals, message):
    raise ValueError(f"{message}; this computation is lowered for {ctx.module_context.platforms}")


mlir.register_lowering(_unsupported_p, _raise_on_lowering)


def _unsupported(op: str, impl: str, fn: Callable, args) -> Callable:
    shapes = jax.eval_shape(fn, *args)
    leaves, tree = jax.tree.flatten(shapes)
    avals = tuple(jax.core.ShapedArray(s.shape, s.dtype) for s in leaves)
    message = f"{op}: implementation={impl!r} runs only on {_PLATFORM_OF[impl]}; use 'auto' or 'reference'"
    return lambda *_: jax.tree.unflatten(tree, _unsupported_p.bind(avals=avals, message=message))


def run(op: str, impl: str, args: tuple, *, reference: Callable, cpu: Callable | None = None,
        cuda: Callable | None = None, cpu_auto: bool | None = None):
    """``fn(*args)`` for the implementation ``impl`` (already ``check``-ed) of ``op``.

    ``cpu`` / ``cuda`` are the fast paths that apply to these inputs (None where none does). 'auto' runs
    each on its platform and the reference elsewhere; 'cpu' / 'cudnn' run their path on their platform and
    fail to lower on any other; 'reference' runs the reference. ``cpu_auto`` says whether 'auto' may take
    the CPU path; the default (None) allows it where the CPU suits the vector kernels
    (``build.vector_kernels``: AVX-512, or AVX2 with FMA), and paths that do not use those vectors pass
    True. An explicit 'cpu' takes the CPU path either way.
    """
    if impl == "reference":
        return reference(*args)
    fast = {"cpu": cpu, "cudnn": cuda}
    if impl in fast:
        if fast[impl] is None:
            raise ValueError(f"{op}: implementation={impl!r} does not apply to these inputs (see its docstring)")
        branches = {_PLATFORM_OF[impl]: fast[impl]}
        return jax.lax.platform_dependent(*args, default=_unsupported(op, impl, fast[impl], args), **branches)
    if impl != "auto":
        raise ValueError(f"{op}: no dispatch rule for implementation={impl!r}")
    cpu_auto = build.vector_kernels() if cpu_auto is None else cpu_auto
    branches = {p: f for p, f in (("cpu", cpu if cpu_auto else None), ("cuda", cuda)) if f is not None}
    if not branches:
        return reference(*args)
    return jax.lax.platform_dependent(*args, default=reference, **branches)

