"""The verifiable-reward study: variants of the experiment's RL methods on its problems and SFT policy.

    make study S=verifiable_rl C=dr_grpo   # Dr. GRPO beside the default methods, in the experiment's workdir
    make study S=verifiable_rl C=dapo      # GRPO with DAPO's clip-higher (0.28) and global token-mean loss
    make study S=verifiable_rl C=gspo      # GRPO with GSPO's sequence-level ratio
    make study S=verifiable_rl C=seed8     # every default method again on other rollouts (seed 8)
    make study S=verifiable_rl C=wide      # the critic-free methods on 256 prompts x 2 samples a rollout

``dr_grpo`` reads the default run's SFT policy and stored methods back (``make verifiable-rl`` first); the
others change the critic-free settings or the rollouts' seed, so they keep their own workdir (their SFT is the
same run, trained again in about a minute). The results and the log of attempts are in this folder's
README.md.
"""

from __future__ import annotations

import dataclasses

from experiments.verifiable_rl import Config, run  # noqa: F401  (run: the launcher's entry point)


def _default() -> Config:
    return Config()


def dr_grpo() -> Config:
    return dataclasses.replace(_default(), methods=(*_default().methods, "dr_grpo"))


def dapo() -> Config:
    cfg = _default()
    return dataclasses.replace(cfg, methods=("grpo",), workdir="runs/verifiable_rl_dapo",
                               group=dataclasses.replace(cfg.group, clip_high=0.28, aggregation="token_mean"))


def gspo() -> Config:
    cfg = _default()
    return dataclasses.replace(cfg, methods=("grpo",), workdir="runs/verifiable_rl_gspo",
                               group=dataclasses.replace(cfg.group, ratio="sequence"))


def seed8() -> Config:
    cfg = _default()
    return dataclasses.replace(cfg, workdir="runs/verifiable_rl_seed8",
                               seeds=dataclasses.replace(cfg.seeds, rollouts=8))


def wide() -> Config:
    """As many completions a rollout, on 4x the prompts: fewer groups of uniform reward (zero advantage)."""
    cfg = _default()
    return dataclasses.replace(cfg, methods=("grpo", "rloo", "reinforce_pp"), workdir="runs/verifiable_rl_wide",
                               group=dataclasses.replace(cfg.group, prompts_per_rollout=256, samples=2))


CONFIGS = {"dr_grpo": dr_grpo, "dapo": dapo, "gspo": gspo, "seed8": seed8, "wide": wide}


def get_config(arg: str | None = None) -> Config:
    if arg not in CONFIGS:
        raise ValueError(f"unknown config {arg!r}; choose {', '.join(CONFIGS)}")
    return CONFIGS[arg]()
