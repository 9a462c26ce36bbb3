"""The controlled-sentiment experiment's config: the default run (the methods of its headline table) and the
smoke run the tests train. Variants (more DPO recipes, sweeps) are configs of ``studies/rlhf_sentiment``."""

from __future__ import annotations

import dataclasses

from nlp_jax.models.gpt2 import GPT2Config
from nlp_jax.objectives import GroupRLConfig, PPOConfig
from nlp_jax.train.config import OptimConfig, TrainConfig
from nlp_jax.validate import at_least, check_fields

from .methods import DPOMethod, check_continuations, find_method

GROUP_METHODS = ("grpo", "dr_grpo", "rloo", "reinforce_pp")  # GroupRLConfig.method

# Online DPO on soft labels: each step's best against worst sample of each prefix, labelled
# sigma((s_w - s_l) / tau) instead of 1, so a near-tied pair (two samples the oracle scores alike) pulls the two
# log-ratios together instead of apart. Its optimum is pi_ref exp(s / (beta tau)): beta and tau trade KL for
# reward alike. Beta 0.35 at tau 0.02 reaches the 0.9-at-5-nats target within the run's 90 minutes.
DPO_ONLINE_TARGET = DPOMethod(name="dpo_b0.35_online_bw8_soft0.02", beta=0.35, soft_labels=0.02, lr=3e-4,
                              online_steps=800, samples=8, extremes=True)
DPO_METHODS = (DPOMethod(name="dpo_b0.05", beta=0.05), DPOMethod(name="dpo_b0.1", beta=0.1),
               DPOMethod(name="dpo_b0.5", beta=0.5), DPOMethod(name="dpo_b1", beta=1.0),
               DPOMethod(name="ipo_b0.1", beta=0.1, loss_type="ipo"),
               DPOMethod(name="cdpo_b0.1", beta=0.1, loss_type="cdpo", label_smoothing=0.1), DPO_ONLINE_TARGET,
               # without a reference (ORPO: lambda 0.1; SimPO: beta 2, target margin 1) or without pairs (KTO)
               DPOMethod(name="orpo_l0.1", beta=0.1, loss_type="orpo"),
               DPOMethod(name="simpo_b2_g1", beta=2.0, loss_type="simpo", gamma=1.0),
               DPOMethod(name="kto_b0.1", beta=0.1, loss_type="kto"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Seeds:
    """Every random choice of the run, one named seed each (the SFT's batch order is ``sft_train.seed``)."""
    held_prefixes: int = 1  # which held-out dev sentences' prefixes are judged, and their lengths
    train_prefixes: int = 2  # the training prefixes of the pairs, the rounds and PPO
    judge: int = 5  # the samples every policy is judged on
    best_of_n: int = 7  # best-of-N's samples
    pairs: int = 11  # the SFT samples of the shared pairs; round r of a method draws with pairs + r
    dpo: int = 3  # DPO's batch order; round r uses dpo + r
    rm_init: int = 4  # the reward model's head
    rm_split: int = 0  # which pairs the reward model holds out
    rm: int = 5  # the reward model's batch order
    ppo_init: int = 6  # PPO's value head
    ppo: int = 7  # PPO's rollouts and minibatches
    group: int = 8  # the critic-free methods' rollouts and minibatches


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    vocab_size: int = 4096
    model: GPT2Config = GPT2Config(vocab_size=4096, block_size=48, n_layer=4, n_head=4, n_embd=192, dropout=0.1)
    sft_optim: OptimConfig = OptimConfig(lr=2e-3, min_lr=2e-4, warmup_steps=100, beta2=0.99, weight_decay=0.1)
    sft_train: TrainConfig = TrainConfig(steps=1200, log_every=50, eval_every=400, ckpt_every=400)
    batch_size: int = 64  # SFT blocks per step
    oracle_dir: str = "runs/bert_sst2/export"  # the fine-tuned SST-2 classifier (make bert-sst2)
    eval_prompts: int = 500  # held-out prefixes (of SST-2 dev sentences)
    eval_samples: int = 4  # samples of each policy per held-out prefix (4: the oracle reward's s.e. near 0.006)
    train_prompts: int = 1500  # prefixes whose 4 samples make the preference pairs
    samples_per_prompt: int = 4
    max_new_tokens: int = 24
    best_of: tuple[int, ...] = (1, 4, 16, 64)
    methods: tuple[DPOMethod, ...] = DPO_METHODS
    dpo_optim: OptimConfig = OptimConfig(lr=2e-4, min_lr=2e-5, warmup_steps=20, weight_decay=0.0)
    dpo_epochs: int = 1
    dpo_batch: int = 32  # pairs per step (DPO and the reward model; online DPO: prefixes per step)
    online_eval_every: int = 50  # steps between the judged points of an online DPO curve
    rm_optim: OptimConfig = OptimConfig(lr=3e-4, min_lr=3e-5, warmup_steps=20, weight_decay=0.0)
    ppo: PPOConfig = PPOConfig(rollout_size=64, minibatches=4, epochs=4, max_new_tokens=24)
    ppo_rollouts: int = 40  # rollouts per PPO run (each epochs x minibatches steps)
    ppo_optim: OptimConfig = OptimConfig(lr=1e-4, warmup_steps=0, schedule="constant", weight_decay=0.0)
    ppo_kl_coefs: tuple[float, ...] = (0.02, 0.05, 0.2)  # PPO on the reward model, one run each
    ppo_oracle_kl_coef: float = 0.05  # PPO on the oracle itself
    # critic-free RL on the oracle (train.group_rl), each as many sampled completions as PPO's
    # (ppo_rollouts x ppo.rollout_size), judged every group_eval_every rollouts
    group_methods: tuple[str, ...] = ("grpo", "rloo", "reinforce_pp")
    group: GroupRLConfig = GroupRLConfig(prompts_per_rollout=16, samples=4, minibatches=2, epochs=2, kl_coef=0.05)
    group_rollouts: int = 40
    group_eval_every: int = 10
    group_optim: OptimConfig = OptimConfig(lr=1e-4, warmup_steps=0, schedule="constant", weight_decay=0.0)
    max_train: int = 0  # 0: all training phrases (smoke: fewer)
    seeds: Seeds = Seeds()
    workdir: str = "runs/rlhf_sentiment"

    def __post_init__(self):
        check_fields(self, vocab_size=at_least(8), batch_size=at_least(1), eval_prompts=at_least(1),
                     eval_samples=at_least(1), train_prompts=at_least(1), samples_per_prompt=at_least(2),
                     max_new_tokens=at_least(1),
                     dpo_epochs=at_least(1), dpo_batch=at_least(1), online_eval_every=at_least(1),
                     max_train=at_least(0), ppo_rollouts=at_least(1), group_rollouts=at_least(1),
                     group_eval_every=at_least(1))
        unknown = [m for m in self.group_methods if m not in GROUP_METHODS]
        if unknown:
            raise ValueError(f"group_methods {unknown} unknown; choose from {', '.join(GROUP_METHODS)}")
        check_continuations(self.methods)

    def method(self, name: str) -> DPOMethod:
        return find_method(self.methods, name)


def smoke() -> Config:
    """Every kind of stage at toy size (an iterative method, continuations, soft labels, best-vs-worst pairs,
    online DPO), for the tests."""
    quick = TrainConfig(steps=2, log_every=1, eval_every=0, ckpt_every=0, progress=False)
    return Config(vocab_size=300, model=GPT2Config.tiny(vocab_size=300, block_size=40), sft_train=quick,
                  batch_size=4, eval_prompts=8, eval_samples=2, train_prompts=4, max_new_tokens=6, best_of=(1, 2),
                  methods=(DPO_METHODS[0], DPOMethod(name="dpo_iter2", beta=0.05, rounds=2),
                           DPOMethod(name="dpo_iter3", beta=0.05, rounds=3, continues="dpo_iter2"),
                           DPOMethod(name="dpo_gap_soft", beta=0.05, min_gap=1e-7, soft_labels=0.1),
                           DPOMethod(name="dpo_bw3_iter2", beta=0.05, rounds=2, samples=3, extremes=True),
                           DPOMethod(name="dpo_bw3_after_iter3", beta=0.05, rounds=4, samples=3, extremes=True,
                                     continues="dpo_iter3"),
                           DPOMethod(name="dpo_online", beta=0.05, online_steps=5, samples=3),
                           DPOMethod(name="kto", beta=0.1, loss_type="kto")),
                  group_methods=("grpo",), group_rollouts=2, group_eval_every=1,
                  group=GroupRLConfig(prompts_per_rollout=2, samples=2, minibatches=1, epochs=1, kl_coef=0.05),
                  dpo_batch=4, online_eval_every=2,
                  max_train=400, workdir="runs/rlhf_sentiment_smoke",
                  ppo=PPOConfig(rollout_size=4, minibatches=2, epochs=1, max_new_tokens=6), ppo_rollouts=2,
                  ppo_kl_coefs=(0.05,))


CONFIGS = {"default": Config, "smoke": smoke}


def get_config(arg: str | None = None) -> Config:
    name = arg or "default"
    if name not in CONFIGS:
        raise ValueError(f"unknown config {arg!r}; choose {', '.join(CONFIGS)} (variants: studies/rlhf_sentiment)")
    return CONFIGS[name]()
