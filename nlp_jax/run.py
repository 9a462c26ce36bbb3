"""Launch an experiment or a study: ``python -m nlp_jax.run experiments/<name>[.py][:arg] [--set key.path=value ...]``
(or ``studies/<name>/study.py:<config>``).

The experiment file defines ``get_config(arg) -> config`` and ``run(config) -> dict``, and, where the data
fixes some fields (vocabulary size, steps from epochs), ``resolve_config(config) -> config``; ``--set``
overrides are type-checked against the config dataclasses, and ``--print-config`` shows the config as the
run would resolve it. ``--coordinator HOST:PORT --num-processes N --process-id I`` (or ``--distributed`` on
a cluster JAX detects: SLURM, Open MPI, Cloud TPU) joins a multi-process run (``nlp_jax.train.distributed``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import signal
import sys
from pathlib import Path

from nlp_jax.train import distributed
from nlp_jax.train.config import apply_overrides, to_json
from nlp_jax.train.records import claim, move_aside, run_lock


def load_experiment(spec: str):
    """``path[:arg]`` -> (module, arg). ``path`` is an experiment's file (``experiments/<name>.py``), an
    experiment package's folder (``experiments/<name>``) or a study's file (``studies/<name>/study.py``). A
    path inside the current directory's packages is imported by its dotted name
    (``experiments.rlhf_sentiment``), so a study imports the experiments it varies by theirs; anything else
    (your own experiment, elsewhere) is loaded from its location."""
    path, _, arg = spec.partition(":")
    target = Path(path)
    init = target / "__init__.py"
    if not (target.is_file() and target.suffix == ".py") and not init.is_file():
        raise FileNotFoundError(f"experiment not found: {target} (give an experiment's .py file, a package folder "
                                "with an __init__.py, or a study's study.py)")
    module = _import_by_name(target) or _import_by_location(target)
    for name in ("get_config", "run"):
        if not hasattr(module, name):
            raise AttributeError(f"{target} must define {name}()")
    return module, arg or None


def _import_by_name(target: Path):
    """The module at ``target`` imported by its dotted name relative to the current directory, when every
    folder on the way is a package and the current directory is on ``sys.path`` (``python -m``, pytest)."""
    root = Path.cwd().resolve()
    try:
        parts = target.resolve().relative_to(root).with_suffix("").parts
    except ValueError:
        return None
    if len(parts) < 2 or not all((root.joinpath(*parts[:i]) / "__init__.py").is_file() for i in range(1, len(parts))):
        return None
    try:
        return importlib.import_module(".".join(parts))
    except ModuleNotFoundError as err:
        if err.name != parts[0]:  # the experiment itself imports something missing
            raise
        return None  # the current directory is not on sys.path (a script in another folder)


def _import_by_location(target: Path):
    package = target.is_dir()
    file = target / "__init__.py" if package else target
    name = f"experiment_{target.stem if not package else target.name}"
    module_spec = importlib.util.spec_from_file_location(
        name, file, submodule_search_locations=[str(target)] if package else None)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_spec.name] = module  # dataclasses resolve annotations through sys.modules
    module_spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", help="experiments/<name>[.py][:config] or studies/<name>/study.py:<config>, "
                                           "e.g. experiments/gpt_shakespeare_char.py:cpu")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set optim.lr=3e-4 (repeatable)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--rerun", action="store_true", help="run again even if the workdir holds this run finished")
    group = parser.add_argument_group("several processes (hosts); also from NLP_JAX_COORDINATOR, ...")
    group.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address, the same for every process")
    group.add_argument("--num-processes", type=int, metavar="N", help="processes in the run")
    group.add_argument("--process-id", type=int, metavar="I", help="this process's id, 0 .. N-1")
    group.add_argument("--distributed", action="store_true", help="let JAX detect the cluster (SLURM, MPI, TPU)")
    args = parser.parse_args(argv)
    try:  # before anything touches a device
        distributed.initialize(coordinator=args.coordinator, num_processes=args.num_processes,
                               process_id=args.process_id, detect=args.distributed)
    except ValueError as err:
        parser.error(str(err))
    module, arg = load_experiment(args.experiment)
    try:
        config = apply_overrides(module.get_config(arg), args.overrides)
    except (KeyError, ValueError) as err:
        parser.error(str(err))
    try:
        return launch(module, config, rerun=args.rerun, print_config=args.print_config)
    except EmptyWorkdir as err:
        parser.error(str(err))


class EmptyWorkdir(ValueError):
    """A config whose ``workdir`` is empty: every run needs its directory."""


def launch(module, config, *, rerun: bool = False, print_config: bool = False) -> dict:
    """Run ``module.run(config)`` in its run directory, as every experiment, study and ``nlp-jax`` training
    command is run: a finished run of the same config is read back (``rerun`` runs it again), a second
    process on the directory is refused, and ``train.resume=false`` moves what the directory held aside."""
    resolved = module.resolve_config(config) if hasattr(module, "resolve_config") else config
    if print_config:
        print(to_json(resolved))
        return {}
    workdir = getattr(resolved, "workdir", None)
    if workdir is not None and not str(workdir).strip():
        raise EmptyWorkdir("workdir is empty: name the run directory (--set workdir=runs/<name>), or leave it out")
    stored = None if rerun else finished_summary(resolved)
    if stored is not None:
        print(f"{resolved.workdir} holds this run, finished; its stored results (--rerun runs it again):")
        print(json.dumps(stored, indent=2))
        return stored
    if workdir is None:
        return module.run(config)
    with run_lock(workdir):  # a second process on this run directory is refused here, before any work
        if distributed.is_main():
            claim(workdir, owner_name(resolved))
            train_cfg = getattr(resolved, "train", None)
            if train_cfg is not None and not train_cfg.resume and (aside := move_aside(Path(workdir), None)):
                print(f"train.resume=false: everything in {workdir} (checkpoints, tokenizer, results) was moved "
                      f"to {aside}")
        distributed.sync("run directory claimed")
        return module.run(config)


def owner_name(config) -> str:
    """The name a run directory records as its owner: the config's class, by the experiment that defines it
    (``gpt_shakespeare_char.Config``, ``rlhf_sentiment.config.Config``), the same whether the experiment was
    imported by name or by location, and the same for a study that varies the experiment's config (a study
    of the controlled-sentiment run shares its run directory on purpose)."""
    module = type(config).__module__.removeprefix("experiments.").removeprefix("experiment_")
    return f"{module}.{type(config).__qualname__}"


def finished_summary(config) -> dict | None:
    """The stored summary of a finished run of exactly this config in its workdir, else None."""
    workdir = Path(getattr(config, "workdir", ""))
    train_cfg = getattr(config, "train", None)
    if not workdir.parts or (train_cfg is not None and not train_cfg.resume):
        return None
    try:
        summary = json.loads((workdir / "summary.json").read_text())
        same = json.loads((workdir / "config.json").read_text()) == json.loads(to_json(config))
    except (OSError, ValueError):
        return None
    return summary if same and summary.get("status", "finished") == "finished" else None


def exit_status(argv: list[str]) -> int:
    """:func:`main`'s exit status: 0, or 128 + the signal for an interrupted run (a scheduler must tell it from
    a finished one)."""
    return status_of(main(argv))


def status_of(summary: dict) -> int:
    """A run's exit status from its summary: 128 + the signal when it was interrupted, else 0."""
    return 128 + summary.get("signal", signal.SIGINT) if summary.get("status") == "interrupted" else 0


if __name__ == "__main__":
    sys.exit(exit_status(sys.argv[1:]))
