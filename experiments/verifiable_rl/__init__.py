"""RL on a verifiable reward: a small GPT that half knows multi-digit addition, and what each RL method teaches
it from the answers' correctness alone, at one budget of sampled completions.

Launch:  python -m nlp_jax.run experiments/verifiable_rl     (or: make verifiable-rl; :smoke for tests)
Variants (other settings, Dr. GRPO, more seeds): ``studies/verifiable_rl``.

Result (``default``, 2026-12-06, a 2-core AMD EPYC with AVX-512, 748 s from an empty workdir; a first run, 773 s,
gave the same exact matches): from an SFT policy that solves **29.2% +- 1.4%** of the held-out problems (greedy; its
500 demonstrations 100%), every method gains more than 20 points on 153,600 sampled completions: **RLOO 83.0% +-
1.2%** (the best critic-free method, +53.8 +- 1.9 points), REINFORCE++ 79.6%, GRPO 76.1% (first +20 points, beyond 3
standard errors, after 51,200 completions and 59 s of training), PPO **91.9% +- 0.9%** (+62.7), online DPO 68.5%; KL
from SFT 3.5-4.6 nats per completion. The table and the curves: ``docs/results.md`` and ``docs/areas/rlhf.md``; the
log of choices: ``studies/verifiable_rl/README.md``.

Stages (``stages.graph``; each kept in ``<workdir>``, so a rerun or a crash resumes where it stopped and a
changed setting measures again only what depends on it):

1. **Problems** (``nlp_jax.data.arithmetic``): ``a+b=`` with 3-digit operands written with leading zeros, the
   answer's 4 digits and an end token; 1,000 held-out problems drawn first, never trained on, then the 500
   demonstrations and the 20,000 RL prompts, all distinct.
2. **SFT**: a GPT (2 layers, 128 wide, 4 heads) trained to convergence on the 500 demonstrations (loss on the
   answer only): it fits them and generalises partly.
3. **RL from SFT**, each method with the same 153,600 sampled completions of the RL prompts, rewarded 1 for
   exactly the right answer and end token, else 0 (the verifier reads the problem from the prompt's
   tokens): GRPO, RLOO and REINFORCE++ (``train.group_rl``: 64 prompts x 8 samples a rollout, 2 epochs of
   2 minibatches), PPO (``train.ppo``: a value head on the policy, 512 prompts a rollout, a KL penalty of
   0.01 per token), online DPO (``train.online_dpo``: 64 prompts x 8 samples a step, the best against the
   worst, beta 0.1). Each is evaluated every 10,240 completions.

Every policy is judged on the held-out problems: greedy exact match (its binomial standard error), and one
sampled completion each: its exact match and KL(pi || pi_SFT) per completion (k1, with its standard error).
Results: ``results.json``, the table ``results.md`` and ``curves.png`` (exact match against completions and
against training wall time, whose clock leaves the evaluations out) (``report.py``).
"""

from __future__ import annotations

import time

from nlp_jax.train.records import write_summary
from nlp_jax.train.stages import StageResults, run_resumable

from .config import CONFIGS, Config, get_config
from .report import report
from .stages import Setup, run_methods, train_sft

__all__ = ["CONFIGS", "Config", "get_config", "run"]


def run(cfg: Config) -> dict:
    return run_resumable(cfg.workdir, lambda: run_stages(cfg))


def run_stages(cfg: Config) -> dict:
    t0 = time.perf_counter()
    results, s = StageResults(cfg.workdir), Setup.of(cfg)
    print(f"{len(s.demonstrations)} demonstrations, {len(s.rl_prompts)} RL prompts, {len(s.held_prompts)} "
          f"held-out problems of {cfg.digits}-digit addition")
    t1 = time.perf_counter()
    s.sft = train_sft(s)
    sft_seconds = round(time.perf_counter() - t1, 1)  # (of reading it back, when an earlier run trained it)
    results.get("sft", lambda: {
        "method": "SFT", "demonstrations": cfg.demonstrations, "train_seconds": sft_seconds,
        "demonstrations_exact_match": float(s.exact_match(s.sft, s.demonstration_prompts()).mean()),
        **s.evaluate(s.sft)}, {**s.graph.settings("sft"), "<judge>": s.graph.settings("judge")})
    run_methods(s, results)
    report(cfg.workdir, results.data, title=f"{cfg.digits}-digit addition: RL from SFT on exact match")
    return write_summary(cfg.workdir, {"status": "finished", "wall_seconds": round(time.perf_counter() - t0, 1),
                                       **{k: {f: v for f, v in row.items() if f != "curve"}
                                          for k, row in results.data.items() if isinstance(row, dict)}}, echo=False)
