"""Controlled sentiment generation (Rafailov et al. 2023, section 6.1) on SST-2, at this CPU's scale.

Launch:  python -m nlp_jax.run experiments/rlhf_sentiment     (or: make rlhf-sentiment; :smoke for tests)
Variants (the DPO sweep, iterative and more online DPO runs): ``studies/rlhf_sentiment``.

Result (``default``, 2026-12-06, a 2-core AMD EPYC with AVX-512, with the oracle retrained that day: dev accuracy
0.888, as before): online DPO on soft labels reaches an oracle reward of **0.908 +- 0.006 at a KL of 4.74 +- 0.08
nats** (the target: >= 0.9 at <= 5 nats); SFT 0.530, best-of-64 0.982 at 3.17 nats; PPO on a reward model 0.927
at 19.57 nats; one-round DPO 0.756 at 6.19 (beta 0.1); KTO 0.752 at 6.34, IPO 0.755 at 6.77, cDPO 0.737 at 5.16,
ORPO 0.607 at 0.90, SimPO 0.855 at 29.27; on the oracle with 2,560 sampled completions each, GRPO 0.821 at 9.39,
REINFORCE++ 0.687 at 3.51, RLOO 0.644 at 1.72, PPO 0.659 at 3.71. Each method's reward at 2 / 5 / 10 nats (read
from its curve, ``report.rewards_at``), the whole table and the frontier: ``docs/areas/rlhf.md`` and
``docs/results.md``; the log of attempts: ``studies/rlhf_sentiment/README.md``. (The stages ran across sessions
with other work on the machine, resumed from their stored results: their times, about 6,600 s in all, are not a
clean measurement; the 2026-12-05 run of the methods before ORPO took 3,416 s alone.)

Stages (declared once in ``stages.graph``: each with the config fields its results depend on and the stages
it reads), each kept in ``<workdir>`` so a rerun (or a crash) resumes where it stopped; changing one
method's settings retrains that method alone, and a stored result measured with other settings is measured
again:

1. **SFT**: a GPT (4 layers, 192 wide, 4 heads, context 48) on SST-2's 67,349 training phrases, as one
   stream of ``[CLS] phrase [SEP]`` read in random blocks (no padding wasted), with a WordPiece vocabulary
   of 4,096 trained on them: SST-2 is lower-cased and tokenised, phrases are short (about 13 pieces), and
   this size trains in minutes here, leaving the time to sampling and the preference methods.
2. **Judges**: the oracle reward is p(positive) of the SST-2 classifier fine-tuned from MiniLM
   (``experiments/bert_sst2.py``, its export); a second judge, TF-IDF + logistic regression trained on the
   same training phrases, scores every policy too, to expose reward hacking of the first. Both report
   their dev accuracy.
3. **Best-of-N** from SFT, N = 1, 4, 16, 64, on the held-out prompts: prefixes of 2-8 pieces of SST-2's dev
   sentences after [CLS] (the first N of 64 samples per prompt; KL is the analytic log N - (N - 1) / N).
4. **Pairs**: 4 samples per training prefix from SFT, all 6 pairs of each, the oracle's higher score chosen.
5. **DPO** at each beta, **IPO** and **cDPO**, from SFT with SFT as the reference (log-probs cached);
   iterative DPO (``DPOMethod.rounds``, ``methods.py``) continues for further rounds on
   pairs of its own samples (a method that ``continues`` a finished one trains on from its last policy); a
   method may keep only pairs of distinct oracle scores (``min_gap``), learn soft labels from them
   (``soft_labels``), or draw more samples a prefix and keep only its best against its worst (``extremes``);
   online DPO (``DPOMethod.online_steps``, ``nlp_jax.train.online_dpo``) draws every step's pairs from the
   policy at that step, judged every ``online_eval_every`` steps (rows ``<name>_step<k>``). The default
   run trains one: beta 0.35 on soft labels (tau 0.02) of each step's best against worst of 8 samples.
   Without a reference or without pairs, on the same pairs: **ORPO** and **SimPO** (``loss_type``), and
   **KTO** (each pair's completions alone, the chosen desirable and the rejected not:
   ``data.preferences.unpaired_from_pairs``).
6. **PPO**: a reward model (the SFT backbone + a scalar head, Bradley-Terry on 90% of the pairs, its
   held-out pair accuracy reported; scores normalised over the SFT samples), PPO on it at each KL
   coefficient, and PPO on the oracle itself; rollouts from the training prefixes. Preference training
   runs without dropout (PPO's ratio is exactly 1 before its first update only then).
7. **Critic-free RL** on the oracle (``critic_free.py``): GRPO, RLOO and REINFORCE++ from SFT with a k3 KL
   to it, each drawing as many completions as PPO on the oracle (40 rollouts of 16 prefixes x 4 samples),
   judged every 10 rollouts (rows ``<name>_rollout<r>``).

Every policy is judged on the same held-out prompts, ``eval_samples`` samples each: mean oracle reward,
mean second-judge reward (each with its standard error) and KL(pi || pi_SFT) per sequence from its samples
(``nlp_jax.eval.rewards``); a row stored under other judge settings is judged again, its training read
back (an online run's points keep the judgement made during its training). Results: ``results.json``, the
table ``results.md`` and the frontier ``frontier.png`` (``report.py``).
Each policy is exported to ``<workdir>/<name>/export``: ``nlp-jax generate <export> prompts.txt``.
"""

from __future__ import annotations

import time
from pathlib import Path

from nlp_jax.data.preferences import prompt_prefixes
from nlp_jax.data.sst2 import read_sst2
from nlp_jax.data.wordpiece import WordPieceTokenizer
from nlp_jax.train.records import write_summary
from nlp_jax.train.stages import StageResults, run_resumable

from .config import CONFIGS, Config, get_config
from .critic_free import run_critic_free
from .report import report
from .stages import Setup, best_of_n, graph, make_judges, preference_pairs, run_methods, run_ppo, train_sft

__all__ = ["CONFIGS", "Config", "get_config", "run"]


def run(cfg: Config) -> dict:
    return run_resumable(cfg.workdir, lambda: run_stages(cfg))


def run_stages(cfg: Config) -> dict:
    t0 = time.perf_counter()
    results, stages = StageResults(cfg.workdir), graph(cfg)
    train_set, dev_set = read_sst2("train"), read_sst2("dev")
    if cfg.max_train:
        train_set = (train_set[0][:cfg.max_train], train_set[1][:cfg.max_train])
    tok = WordPieceTokenizer.trained_once(Path(cfg.workdir, "tokenizer"), train_set[0], cfg.vocab_size,
                                         max_length=cfg.model.block_size)
    t1 = time.perf_counter()
    sft = train_sft(cfg, stages.settings("sft"), tok, train_set[0], dev_set[0])
    if "sft_train" not in results.data:  # (a resumed SFT records its last segment only)
        results.put("sft_train", {"seconds": round(time.perf_counter() - t1, 1)})
    judges = make_judges(cfg, tok, results, train_set, dev_set)
    held = prompt_prefixes(tok.pieces(dev_set[0]), bos_id=tok.cls_id, pad_id=tok.pad_id, seed=cfg.seeds.held_prefixes)
    s = Setup(cfg, stages, tok, sft, held[0][:cfg.eval_prompts], held[1][:cfg.eval_prompts], judges)
    print(f"{len(s.prompts)} held-out prompts")
    results.get("sft", lambda: {"method": "SFT", "param": 0, **s.evaluate(sft)}, s.judged(stages.settings("sft")))
    if not all(results.has(f"bon_{n}", stages.settings("best_of_n")) for n in cfg.best_of):
        t1 = time.perf_counter()
        for name, row in best_of_n(s).items():  # one draw serves every N: the stage's time is on each row
            results.put(name, {**row, "seconds": round(time.perf_counter() - t1, 1)}, stages.settings("best_of_n"))
    # (all the phrases: 26 rounds' worth; the prefixes of a slice of the phrases are the first ones of the whole)
    train_prefixes = prompt_prefixes(tok.pieces(train_set[0]), bos_id=tok.cls_id, pad_id=tok.pad_id,
                                     seed=cfg.seeds.train_prefixes, min_rest=3)
    t1 = time.perf_counter()
    pairs = preference_pairs(s, train_prefixes[0][:cfg.train_prompts], train_prefixes[1][:cfg.train_prompts])
    if not results.has("pairs", stages.settings("pairs")):  # (pairs read back from pairs.npz are not timed again)
        results.put("pairs", {"count": len(pairs["chosen"]), "seconds": round(time.perf_counter() - t1, 1)},
                    stages.settings("pairs"))
    run_methods(s, results, pairs, train_prefixes)
    pool = train_prefixes[2] < 20 * cfg.train_prompts  # PPO's prompts: those of the first 20 x train_prompts phrases
    run_ppo(s, results, pairs, train_prefixes[0][pool], train_prefixes[1][pool])
    run_critic_free(s, results, train_prefixes[0][pool], train_prefixes[1][pool])
    report(cfg, results.data)
    return write_summary(cfg.workdir, {"status": "finished", "wall_seconds": round(time.perf_counter() - t0, 1),
                                       **{k: v for k, v in results.data.items() if isinstance(v, dict)}}, echo=False)
