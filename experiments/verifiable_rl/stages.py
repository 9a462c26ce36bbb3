"""The verifiable-reward experiment's stages: the problems, the SFT policy, its held-out evaluation, and each RL
method from it (GRPO, Dr. GRPO, RLOO, REINFORCE++, PPO, online DPO) with the same budget of sampled
completions, evaluated on the held-out problems along the way."""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from nlp_jax.data import arithmetic
from nlp_jax.data.corpus import ShuffledBatches
from nlp_jax.eval.rewards import evaluate
from nlp_jax.models.gpt2 import GPT2, without_dropout
from nlp_jax.models.reward import PolicyWithValue
from nlp_jax.objectives import dpo_objective, lm_loss, rollout
from nlp_jax.train.config import TrainConfig
from nlp_jax.train.group_rl import train_group_rl
from nlp_jax.train.metrics import read_metrics
from nlp_jax.train.online_dpo import OnlinePairs
from nlp_jax.train.ppo import train_ppo
from nlp_jax.train.stages import Stage, StageResults, Stages, train_stage

from .config import CRITIC_FREE, Config

LABELS = {"grpo": "GRPO", "dr_grpo": "Dr. GRPO", "rloo": "RLOO", "reinforce_pp": "REINFORCE++", "ppo": "PPO",
          "online_dpo": "online DPO"}


def graph(cfg: Config) -> Stages:
    """The run's stages: the config fields each one's results depend on and the stages it reads."""
    problems = ("digits", "demonstrations", "rl_prompts", "held_out", "seeds.split")
    rl = ("completions", "eval_every", "seeds.rollouts")
    return Stages(
        cfg,
        sft=Stage(fields=(*problems, "model", "optim=sft_optim", "train=sft_train", "sft_batch"),
                  ignore=("sft_train.progress",)),
        judge=Stage(fields=(*problems, "seeds.judge")),
        critic_free=Stage(fields=("group", "optim=rl_optim", *rl), reads=("sft", "judge")),  # + the method
        ppo=Stage(fields=("ppo", "optim=ppo_optim", "seeds.value_head", *rl), reads=("sft", "judge")),
        online_dpo=Stage(fields=("dpo_beta", "dpo_prompts", "dpo_samples", "optim=dpo_optim", *rl),
                         reads=("sft", "judge")),
    )


@dataclasses.dataclass
class Setup:
    """What every stage shares: the config, the stages, the problems as prompts, the SFT policy (also the
    reference of every KL)."""
    cfg: Config
    graph: Stages
    demonstrations: np.ndarray  # (N, 2) operand pairs
    rl_prompts: np.ndarray  # (P, 2 d + 2) token ids
    held_prompts: np.ndarray
    sft: GPT2 | None = None

    @classmethod
    def of(cls, cfg: Config) -> Setup:
        train, held = arithmetic.split(cfg.digits, cfg.demonstrations + cfg.rl_prompts, cfg.held_out,
                                       cfg.seeds.split)
        encode = lambda pairs: arithmetic.encode_prompts(pairs, cfg.digits)  # noqa: E731
        return cls(cfg, graph(cfg), train[:cfg.demonstrations], encode(train[cfg.demonstrations:]), encode(held))

    def demonstration_prompts(self) -> np.ndarray:
        return arithmetic.encode_prompts(self.demonstrations, self.cfg.digits)

    def reward(self, tokens: np.ndarray, mask: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """The verifier: 1 for exactly the sum's digits and the end token, else 0 (``rows`` unused: the
        problem is read from the prompt's tokens)."""
        return arithmetic.exact_match(tokens, mask, self.cfg.digits)

    def sample_kw(self) -> dict:
        return dict(max_new_tokens=self.cfg.digits + 2, eos_id=arithmetic.EOS, pad_id=arithmetic.PAD)

    def exact_match(self, policy: nnx.Module, prompts: np.ndarray) -> np.ndarray:
        """(P,) whether ``policy``'s greedy completion of each prompt is right."""
        drawn = rollout(policy, prompts, np.ones(prompts.shape, bool), key=jax.random.key(0), temperature=0.0,
                        **self.sample_kw())
        return self.reward(drawn["tokens"], drawn["mask"])

    def evaluate(self, policy: nnx.Module) -> dict:
        """On the held-out problems: greedy ``exact_match`` with its binomial standard error, and one sampled
        completion each (temperature 1): its exact match and ``kl`` (k1, nats per completion) from the SFT
        policy, each with its standard error."""
        right = self.exact_match(policy, self.held_prompts)
        p = float(right.mean())
        sampled = evaluate(policy, self.sft, self.held_prompts, np.ones(self.held_prompts.shape, bool),
                           {"exact_match": self.reward}, key=jax.random.key(self.cfg.seeds.judge), samples=1,
                           batch_size=min(500, len(self.held_prompts)), **self.sample_kw())
        return {"exact_match": p, "exact_match_sem": math.sqrt(p * (1 - p) / len(right)),
                "sampled_exact_match": sampled["reward/exact_match"],
                "sampled_exact_match_sem": sampled["reward_sem/exact_match"], "kl": sampled["kl"],
                "kl_sem": sampled["kl_sem"]}


def train_sft(s: Setup) -> GPT2:
    """The SFT policy: next-token cross-entropy on the demonstrations' answers (the prompt given)."""
    cfg = s.cfg
    source = ShuffledBatches(arithmetic.sft_arrays(s.demonstrations, cfg.digits), cfg.sft_batch,
                             seed=cfg.sft_train.seed)
    model, _ = train_stage(GPT2(cfg.model, rngs=nnx.Rngs(cfg.sft_train.seed)), lm_loss, source,
                           train_cfg=cfg.sft_train, optim_cfg=cfg.sft_optim, workdir=Path(cfg.workdir, "sft"),
                           config=s.graph.settings("sft"), stage="sft")
    return model


class Clock:
    """A method's ``eval_fn``: the held-out evaluation with ``train_seconds``, the wall time of its training so
    far (compilation and sampling in, the evaluations out). A resumed run's clock goes on from the last point
    its earlier segment logged (the steps after that point, trained again, are counted once)."""

    def __init__(self, s: Setup, workdir: Path):
        metrics = workdir / "metrics.jsonl"
        logged = [r for r in read_metrics(metrics) if "train_seconds" in r] if metrics.exists() else []
        self.s, self.seconds, self.t = s, logged[-1]["train_seconds"] if logged else 0.0, time.perf_counter()

    def __call__(self, policy: nnx.Module) -> dict:
        self.seconds += time.perf_counter() - self.t
        row = {**self.s.evaluate(policy), "train_seconds": round(self.seconds, 2)}
        self.t = time.perf_counter()
        return row


def train_method(s: Setup, name: str) -> list[dict]:
    """Method ``name`` from the SFT policy on ``cfg.completions`` sampled completions of the RL prompts,
    rewarded by the verifier; its curve: a held-out evaluation every ``cfg.eval_every`` completions."""
    cfg = s.cfg
    workdir = Path(cfg.workdir, name)
    per = cfg.completions_per_update()[name]
    updates, every = cfg.completions // per, cfg.eval_every // per
    clock = Clock(s, workdir)
    prompts, prompt_mask = s.rl_prompts, np.ones(s.rl_prompts.shape, bool)
    kw = dict(workdir=workdir, eos_id=arithmetic.EOS, pad_id=arithmetic.PAD, stage=name, eval_fn=clock,
              eval_every=every, rollouts=updates,
              train_cfg=TrainConfig(steps=0, seed=cfg.seeds.rollouts, progress=cfg.sft_train.progress))
    if name in CRITIC_FREE:
        group = dataclasses.replace(cfg.group, method=name)
        train_group_rl(without_dropout(s.sft), s.sft, s.reward, prompts, prompt_mask, cfg=group, optim_cfg=cfg.rl_optim,
                       config=s.graph.settings("critic_free", method=name), **kw)
        steps = group.steps_per_rollout
    elif name == "ppo":
        train_ppo(PolicyWithValue(without_dropout(s.sft), rngs=nnx.Rngs(cfg.seeds.value_head)), s.sft,
                  s.reward, prompts, prompt_mask, cfg=cfg.ppo, optim_cfg=cfg.ppo_optim,
                  config=s.graph.settings("ppo"), **kw)
        steps = cfg.ppo.steps_per_rollout
    else:
        source = OnlinePairs(prompts, prompt_mask, reference=s.sft, score_fn=s.reward, batch_size=cfg.dpo_prompts,
                             samples=cfg.dpo_samples, seed=cfg.seeds.rollouts, **s.sample_kw())
        train_cfg = dataclasses.replace(kw["train_cfg"], steps=updates, log_every=every, eval_every=every,
                                        ckpt_every=10 * every)
        train_stage(without_dropout(s.sft), dpo_objective(beta=cfg.dpo_beta), source, train_cfg=train_cfg,
                    optim_cfg=cfg.dpo_optim, workdir=workdir, config=s.graph.settings("online_dpo"), eval_fn=clock,
                    stage=name)
        steps = 1
    rows = {r["step"]: r for r in read_metrics(workdir / "metrics.jsonl") if "exact_match" in r}
    return [{"completions": step // steps * per, **{k: v for k, v in row.items() if k != "step"}}
            for step, row in sorted(rows.items())]


def run_methods(s: Setup, results: StageResults) -> None:
    """Each configured method, stored in ``results`` under its name with its curve and its last point."""
    start = {"completions": 0, "train_seconds": 0.0, **{k: v for k, v in results.data["sft"].items()
                                                         if k in ("exact_match", "exact_match_sem", "kl", "kl_sem",
                                                                  "sampled_exact_match", "sampled_exact_match_sem")}}
    for name in s.cfg.methods:
        stage = "critic_free" if name in CRITIC_FREE else name
        settings = s.graph.settings(stage, method=name)

        def measure(name=name):
            curve = [start, *train_method(s, name)]
            return {"method": LABELS[name], **curve[-1], "curve": curve}

        results.get(name, measure, settings)
