"""The verifiable-reward experiment's config: the default run (the table of its docstring) and the smoke run the
tests train. Variants (other methods' settings, more seeds, harder problems) are configs of
``studies/verifiable_rl``."""

from __future__ import annotations

import dataclasses

from nlp_jax.data import arithmetic
from nlp_jax.models.gpt2 import GPT2Config
from nlp_jax.objectives import GroupRLConfig, PPOConfig
from nlp_jax.train.config import OptimConfig, TrainConfig
from nlp_jax.validate import at_least, check_fields

CRITIC_FREE = ("grpo", "dr_grpo", "rloo", "reinforce_pp")  # GroupRLConfig.method, trained by train_group_rl
METHODS = (*CRITIC_FREE, "ppo", "online_dpo")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Seeds:
    """Every random choice of the run, one named seed each (the SFT's initialisation and batch order are
    ``sft_train.seed``)."""
    split: int = 0  # which problems are held out, which are demonstrated, which are the RL prompts
    judge: int = 5  # the sampled completions of the held-out evaluation (its KL and sampled exact match)
    rollouts: int = 7  # every method's rollouts and minibatch order
    value_head: int = 6  # PPO's value head


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    digits: int = 3  # operands of this many digits (answers one more, and the end token)
    demonstrations: int = 500  # problems the SFT policy is trained on, to convergence: partial ability
    rl_prompts: int = 20_000  # further problems the RL methods draw their prompts from
    held_out: int = 1000  # problems never trained on: greedy exact match on them is the result
    model: GPT2Config = GPT2Config(vocab_size=arithmetic.VOCAB, block_size=16, n_layer=2, n_head=4, n_embd=128,
                                   dropout=0.0)
    sft_optim: OptimConfig = OptimConfig(lr=1e-3, min_lr=1e-4, warmup_steps=50, weight_decay=0.1)
    sft_train: TrainConfig = TrainConfig(steps=1000, log_every=100, eval_every=0, ckpt_every=500, seed=1)
    sft_batch: int = 128
    completions: int = 153_600  # the budget: sampled completions per method
    eval_every: int = 10_240  # completions between two held-out evaluations of a method
    methods: tuple[str, ...] = ("grpo", "rloo", "reinforce_pp", "ppo", "online_dpo")
    group: GroupRLConfig = GroupRLConfig(prompts_per_rollout=64, samples=8, minibatches=2, epochs=2,
                                         max_new_tokens=5)  # each critic-free method's, its method replaced
    rl_optim: OptimConfig = OptimConfig(lr=2e-4, warmup_steps=0, schedule="constant", weight_decay=0.0)
    ppo: PPOConfig = PPOConfig(rollout_size=512, minibatches=4, epochs=1, max_new_tokens=5, kl_coef=0.01)
    ppo_optim: OptimConfig = OptimConfig(lr=2e-4, warmup_steps=0, schedule="constant", weight_decay=0.0)
    dpo_beta: float = 0.1  # online DPO: each step's best against worst of dpo_samples per prompt
    dpo_prompts: int = 64  # online DPO's prompts per step
    dpo_samples: int = 8
    dpo_optim: OptimConfig = OptimConfig(lr=2e-4, warmup_steps=0, schedule="constant", weight_decay=0.0)
    seeds: Seeds = Seeds()
    workdir: str = "runs/verifiable_rl"

    def __post_init__(self):
        check_fields(self, digits=at_least(1), demonstrations=at_least(1), rl_prompts=at_least(1),
                     held_out=at_least(1), sft_batch=at_least(1), completions=at_least(1), eval_every=at_least(1),
                     dpo_beta=((lambda v: v > 0), "> 0"), dpo_prompts=at_least(1), dpo_samples=at_least(2))
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"methods {unknown} unknown; choose from {', '.join(METHODS)}")
        answer, length = self.digits + 2, arithmetic.prompt_length(self.digits)
        for name, n in (("group.max_new_tokens", self.group.max_new_tokens),
                        ("ppo.max_new_tokens", self.ppo.max_new_tokens)):
            if n < answer:
                raise ValueError(f"{name}={n} leaves no room for the answer's {answer} tokens (digits={self.digits})")
        longest = length + max(self.group.max_new_tokens, self.ppo.max_new_tokens)
        if self.model.block_size < longest or self.model.vocab_size < arithmetic.VOCAB:
            raise ValueError(f"model needs block_size >= {longest} and vocab_size >= {arithmetic.VOCAB}, got "
                             f"{self.model.block_size} and {self.model.vocab_size}")
        for name, per in self.completions_per_update().items():
            if self.eval_every % per or self.completions % self.eval_every:
                raise ValueError(f"eval_every={self.eval_every} must be a multiple of {name}'s {per} completions a "
                                 f"rollout, and completions={self.completions} a multiple of eval_every")

    def completions_per_update(self) -> dict[str, int]:
        """Sampled completions per rollout (per step for online DPO) of each configured method."""
        per = {"ppo": self.ppo.rollout_size, "online_dpo": self.dpo_prompts * self.dpo_samples}
        return {m: per.get(m, self.group.rollout_rows) for m in self.methods}


def smoke() -> Config:
    """Each kind of trainer at toy size, for the tests (the other critic-free methods train as GRPO does)."""
    quick = TrainConfig(steps=3, log_every=1, eval_every=0, ckpt_every=0, progress=False, seed=1)
    return Config(digits=2, demonstrations=16, rl_prompts=32, held_out=16, sft_train=quick, sft_batch=8,
                  model=GPT2Config.tiny(vocab_size=arithmetic.VOCAB, block_size=12),
                  completions=32, eval_every=16, methods=("grpo", "ppo", "online_dpo"),
                  group=GroupRLConfig(prompts_per_rollout=4, samples=4, minibatches=2, epochs=1, max_new_tokens=4),
                  ppo=PPOConfig(rollout_size=16, minibatches=2, epochs=1, max_new_tokens=4),
                  dpo_prompts=4, dpo_samples=4, workdir="runs/verifiable_rl_smoke")


CONFIGS = {"default": Config, "smoke": smoke}


def get_config(arg: str | None = None) -> Config:
    name = arg or "default"
    if name not in CONFIGS:
        raise ValueError(f"unknown config {arg!r}; choose {', '.join(CONFIGS)} (variants: studies/verifiable_rl)")
    return CONFIGS[name]()
