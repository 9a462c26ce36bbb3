"""The controlled-sentiment experiment's critic-free RL: GRPO, RLOO and REINFORCE++ (``train.group_rl``) from the
SFT policy on the oracle's reward, ``group.samples`` completions of each of ``group.prompts_per_rollout``
training prefixes a rollout, with a k3 KL to SFT in the loss (``group.kl_coef``). Each method draws as many
completions as PPO on the oracle (``group_rollouts`` x the rollout's rows) and is judged every
``group_eval_every`` rollouts: its points trace a curve on the frontier (rows ``<name>_rollout<r>``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from nlp_jax.models.gpt2 import without_dropout
from nlp_jax.train.config import TrainConfig
from nlp_jax.train.group_rl import train_group_rl
from nlp_jax.train.metrics import read_metrics
from nlp_jax.train.stages import StageResults

from .stages import Setup, export_policy

LABELS = {"grpo": "GRPO", "dr_grpo": "Dr. GRPO", "rloo": "RLOO", "reinforce_pp": "REINFORCE++"}


def run_critic_free(s: Setup, results: StageResults, prompts: np.ndarray, mask: np.ndarray) -> None:
    """Every configured critic-free method on the oracle, its curve's points and its last policy judged."""
    cfg = s.cfg
    for method in cfg.group_methods:
        name = f"{method}_b{cfg.group.kl_coef:g}"
        settings = s.graph.settings("critic_free", method=method)
        label = {"method": f"{LABELS[method]} (oracle)", "param": cfg.group.kl_coef}

        def measure(method=method, name=name, settings=settings, label=label):
            group = dataclasses.replace(cfg.group, method=method, max_new_tokens=cfg.max_new_tokens)
            workdir = Path(cfg.workdir, name)
            policy = train_group_rl(without_dropout(s.sft), s.sft, lambda t, m, rows: s.judges["oracle"](t, m),
                                    prompts, mask, cfg=group, rollouts=cfg.group_rollouts, optim_cfg=cfg.group_optim,
                                    workdir=workdir, config=settings, eos_id=s.tok.sep_id, pad_id=s.tok.pad_id,
                                    train_cfg=TrainConfig(steps=0, seed=cfg.seeds.group,
                                                          progress=cfg.sft_train.progress),
                                    stage=name, eval_fn=s.evaluate, eval_every=cfg.group_eval_every)
            for row in read_metrics(workdir / "metrics.jsonl"):  # the curve: every judged rollout but the last
                r = row["step"] // group.steps_per_rollout
                if "kl_sem" in row and r < cfg.group_rollouts:
                    results.put(f"{name}_rollout{r}", {**label, **{k: v for k, v in row.items() if k != "step"}},
                                settings.plus(rollout=r))
            export_policy(policy, s.tok, workdir / "export")
            return {**label, **s.evaluate(policy)}

        results.get(name, measure, s.judged(settings))
