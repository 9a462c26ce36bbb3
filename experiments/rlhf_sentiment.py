"""Controlled sentiment generation (Rafailov et al. 2023, section 6.1) on SST-2, at this CPU's scale.

Launch:  python -m nlp_jax.run experiments/rlhf_sentiment.py     (or: make rlhf-sentiment; :smoke for tests;
         :iterative adds iterative DPO, make rlhf-sentiment-iterative; :sweep also the one-round sweep;
         :online adds three more online DPO runs on soft labels, make rlhf-sentiment-online)

Measured results (every method's oracle reward, second-judge reward and KL, with wall times): README.md,
"Results".

Stages, each kept in ``<workdir>`` so a rerun (or a crash) resumes where it stopped. Each stage records
only the settings it depends on (``*_settings`` in ``_rlhf_stages.py``, which holds stages 4-6), so
changing one method's settings retrains that method alone, and a stored result measured with other
settings is measured again:

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
   iterative DPO (``DPOMethod.rounds``, ``nlp_jax.train.dpo_methods``) continues for further rounds on
   pairs of its own samples (a method that ``continues`` a finished one trains on from its last policy); a
   method may keep only pairs of distinct oracle scores (``min_gap``), learn soft labels from them
   (``soft_labels``), or draw more samples a prefix and keep only its best against its worst (``extremes``);
   online DPO (``DPOMethod.online_steps``, ``nlp_jax.train.online_dpo``) draws every step's pairs from the
   policy at that step, judged every ``online_eval_every`` steps (rows ``<name>_step<k>``). The default
   run trains one: beta 0.35 on soft labels (tau 0.02) of each step's best against worst of 8 samples.
6. **PPO**: a reward model (the SFT backbone + a scalar head, Bradley-Terry on 90% of the pairs, its
   held-out pair accuracy reported; scores normalised over the SFT samples), PPO on it at each KL
   coefficient, and PPO on the oracle itself; rollouts from the training prefixes. Preference training
   runs without dropout (PPO's ratio is exactly 1 before its first update only then).

Every policy is judged on the same held-out prompts, ``eval_samples`` samples each: mean oracle reward,
mean second-judge reward (each with its standard error) and KL(pi || pi_SFT) per sequence from its samples
(``nlp_jax.eval.rewards``); a row stored under other judge settings is judged again, its training read
back (an online run's points keep the judgement made during its training). Results: ``results.json``, the
table ``results.md`` and the frontier ``frontier.png``; measured numbers are in README.md, "Results".
Each policy is exported to ``<workdir>/<name>/export``: ``python -m nlp_jax.generate <export> prompts.txt``.
"""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path

import jax
import numpy as np

from nlp_jax.data.corpus import delimited_stream
from nlp_jax.data.preferences import prompt_prefixes
from nlp_jax.data.sst2 import read_sst2
from nlp_jax.data.wordpiece import WordPieceTokenizer
from nlp_jax.eval.perplexity import perplexity
from nlp_jax.eval.rewards import best_of_n_kl, draw, evaluate, frontier_table, plot_frontier
from nlp_jax.models.gpt2 import GPT2, GPT2Config
from nlp_jax.models.logistic import fit_logistic_regression, predict_proba
from nlp_jax.models.tfidf import Tfidf, TfidfConfig
from nlp_jax.sentences import SentenceClassifier
from nlp_jax.train.config import OptimConfig, TrainConfig
from nlp_jax.train.dpo_methods import LOSS_NAMES, DPOMethod, check_continuations, curve_label, find_method
from nlp_jax.train.lm import train_on_stream
from nlp_jax.train.ppo import PPOConfig
from nlp_jax.train.records import StageResults, run_resumable, write_summary
from nlp_jax.validate import at_least, check_fields

# this experiment's preference stages (a file beside it; nlp_jax.run puts this folder on sys.path)
from _rlhf_stages import (dpo_settings, export_policy, judged_settings, online_policy, pairs_settings,
                          preference_pairs, run_ppo, sft_settings, train_dpo)


# Online DPO on soft labels: each step's best against worst sample of each prefix, labelled
# sigma((s_w - s_l) / tau) instead of 1, so a near-tied pair (two samples the oracle scores alike) pulls the two
# log-ratios together instead of apart. Its optimum is pi_ref exp(s / (beta tau)): beta and tau trade KL for
# reward alike. Beta 0.35 at tau 0.02 is in the default run (the 0.9-at-5-nats target within its 90 minutes);
# config ``online`` adds the others
DPO_ONLINE_TARGET = DPOMethod(name="dpo_b0.35_online_bw8_soft0.02", beta=0.35, soft_labels=0.02, lr=3e-4,
                              online_steps=800, samples=8, extremes=True)
DPO_METHODS = (DPOMethod(name="dpo_b0.05", beta=0.05), DPOMethod(name="dpo_b0.1", beta=0.1),
               DPOMethod(name="dpo_b0.5", beta=0.5), DPOMethod(name="dpo_b1", beta=1.0),
               DPOMethod(name="ipo_b0.1", beta=0.1, loss_type="ipo"),
               DPOMethod(name="cdpo_b0.1", beta=0.1, loss_type="cdpo", label_smoothing=0.1), DPO_ONLINE_TARGET)
DPO_ONLINE_SOFT = (DPOMethod(name="dpo_b0.5_online_bw4_soft0.1", beta=0.5, soft_labels=0.1, lr=1.5e-4,
                             online_steps=1000, samples=4, extremes=True),
                   DPOMethod(name="dpo_b0.5_online_bw8_soft0.05", beta=0.5, soft_labels=0.05, lr=2e-4,
                             online_steps=1000, samples=8, extremes=True),
                   DPOMethod(name="dpo_b0.5_online_bw8_soft0.02", beta=0.5, soft_labels=0.02, lr=3e-4,
                             online_steps=800, samples=8, extremes=True))


# More DPO points (config ``sweep``: only these are trained when the default run is there): on the same
# pairs, a lower learning rate, more epochs, both, and more epochs at beta 0.5; then iterative DPO
# (config ``iterative``: only it), whose later rounds train on pairs drawn from the policy of the round
# before; every round's policy is judged (rows ``<name>_round<r>``), so each beta traces a curve
DPO_SWEEP = (DPOMethod(name="dpo_b0.1_lr5e-5", beta=0.1, lr=5e-5),
             DPOMethod(name="dpo_b0.1_lr1e-4_e2", beta=0.1, lr=1e-4, epochs=2),
             DPOMethod(name="dpo_b0.1_e3", beta=0.1, epochs=3),
             DPOMethod(name="dpo_b0.5_e3", beta=0.5, epochs=3))
DPO_ITERATIVE = (DPOMethod(name="dpo_b0.5_iter4", beta=0.5, rounds=4),
                 DPOMethod(name="dpo_b1_iter4", beta=1.0, rounds=4),
                 DPOMethod(name="dpo_b0.5_gap0.3_iter6", beta=0.5, rounds=6, min_gap=0.3),
                 DPOMethod(name="dpo_b1_soft0.1", beta=1.0, soft_labels=0.1),
                 DPOMethod(name="dpo_b0.5_lr5e-5_iter16", beta=0.5, lr=5e-5, rounds=16),
                 DPOMethod(name="dpo_b0.5_lr5e-5_iter26", beta=0.5, lr=5e-5, rounds=26,
                           continues="dpo_b0.5_lr5e-5_iter16"),
                 DPOMethod(name="dpo_b0.5_bw8_iter12", beta=0.5, rounds=12, samples=8, extremes=True),
                 DPOMethod(name="dpo_b0.5_bw8_lr1e-4_iter30", beta=0.5, lr=1e-4, rounds=30, samples=8,
                           extremes=True, continues="dpo_b0.5_lr5e-5_iter26"),
                 DPOMethod(name="dpo_b0.5_bw8_lr1e-4_iter12", beta=0.5, lr=1e-4, rounds=12, samples=8, extremes=True),
                 DPOMethod(name="dpo_b0.5_online_bw4_lr1e-4", beta=0.5, lr=1e-4, online_steps=600, samples=4),
                 DPOMethod(name="dpo_b0.5_online_bw4_lr1e-4_s1200", beta=0.5, lr=1e-4, online_steps=1200,
                           samples=4))


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
    max_train: int = 0  # 0: all training phrases (smoke: fewer)
    workdir: str = "runs/rlhf_sentiment"

    def __post_init__(self):
        check_fields(self, vocab_size=at_least(8), batch_size=at_least(1), eval_prompts=at_least(1),
                     eval_samples=at_least(1), train_prompts=at_least(1), samples_per_prompt=at_least(2),
                     max_new_tokens=at_least(1),
                     dpo_epochs=at_least(1), dpo_batch=at_least(1), online_eval_every=at_least(1),
                     max_train=at_least(0), ppo_rollouts=at_least(1))
        check_continuations(self.methods)

    def method(self, name: str) -> DPOMethod:
        return find_method(self.methods, name)


def get_config(arg: str | None = None) -> Config:
    if arg in (None, "", "default", "cpu"):
        return Config()
    if arg in ("sweep", "iterative"):
        return Config(methods=DPO_METHODS + (DPO_SWEEP if arg == "sweep" else ()) + DPO_ITERATIVE)
    if arg == "online":
        return Config(methods=DPO_METHODS + DPO_ONLINE_SOFT)
    if arg == "smoke":
        quick = TrainConfig(steps=2, log_every=1, eval_every=0, ckpt_every=0, progress=False)
        return Config(vocab_size=300, model=GPT2Config.tiny(vocab_size=300, block_size=40), sft_train=quick,
                      batch_size=4, eval_prompts=8, eval_samples=2, train_prompts=4, max_new_tokens=6, best_of=(1, 2),
                      methods=(DPO_METHODS[0], DPOMethod(name="dpo_iter2", beta=0.05, rounds=2),
                               DPOMethod(name="dpo_iter3", beta=0.05, rounds=3, continues="dpo_iter2"),
                               DPOMethod(name="dpo_gap_soft", beta=0.05, min_gap=1e-7, soft_labels=0.1),
                               DPOMethod(name="dpo_bw3_iter2", beta=0.05, rounds=2, samples=3, extremes=True),
                               DPOMethod(name="dpo_bw3_after_iter3", beta=0.05, rounds=4, samples=3, extremes=True,
                                         continues="dpo_iter3"),
                               DPOMethod(name="dpo_online", beta=0.05, online_steps=5, samples=3)),
                      dpo_batch=4, online_eval_every=2,
                      max_train=400, workdir="runs/rlhf_sentiment_smoke",
                      ppo=PPOConfig(rollout_size=4, minibatches=2, epochs=1, max_new_tokens=6), ppo_rollouts=2,
                      ppo_kl_coefs=(0.05,))
    raise ValueError(f"unknown config {arg!r}; choose cpu, sweep, iterative, online or smoke")


@dataclasses.dataclass
class Setup:
    """What every stage shares: the tokenizer, the SFT policy (also the reference), the held-out prompts
    and the judges ((tokens, mask) -> p(positive))."""
    cfg: Config
    tok: WordPieceTokenizer
    sft: GPT2
    prompts: np.ndarray
    prompt_mask: np.ndarray
    judges: dict

    def sample_kw(self) -> dict:
        return dict(max_new_tokens=self.cfg.max_new_tokens, eos_id=self.tok.sep_id, pad_id=self.tok.pad_id)

    def evaluate(self, policy) -> dict:
        return evaluate(policy, self.sft, self.prompts, self.prompt_mask, self.judges, key=jax.random.key(5),
                        samples=self.cfg.eval_samples, **self.sample_kw())


def train_sft(cfg: Config, tok: WordPieceTokenizer, train_texts: list[str], dev_texts: list[str]) -> GPT2:
    model_cfg = dataclasses.replace(cfg.model, vocab_size=tok.vocab_size)
    train_ids = delimited_stream(tok.pieces(train_texts), tok.cls_id, tok.sep_id, cfg.sft_train.seed)
    dev_ids = delimited_stream(tok.pieces(dev_texts), tok.cls_id, tok.sep_id, 0)
    print(f"SFT on {len(train_ids):,} tokens of {len(train_texts):,} phrases, vocabulary {tok.vocab_size}")
    model = train_on_stream(model_cfg, train_ids, batch_size=cfg.batch_size, train_cfg=cfg.sft_train,
                            optim_cfg=cfg.sft_optim, workdir=Path(cfg.workdir, "sft"), config=sft_settings(cfg),
                            eval_fn=lambda m: {"val_loss": perplexity(m, dev_ids, context=model_cfg.block_size,
                                                                      batch_size=128)["loss"]})
    export_policy(model, tok, Path(cfg.workdir, "sft", "export"))
    return model


def make_judges(cfg: Config, tok: WordPieceTokenizer, results: StageResults, train_set, dev_set) -> dict:
    """{'oracle', 'tfidf_lr'}: (tokens, mask) -> p(positive), each with its dev accuracy in results."""
    if not Path(cfg.oracle_dir, "config.json").exists():
        raise FileNotFoundError(f"oracle_dir={cfg.oracle_dir!r} holds no classifier: run `make bert-sst2` (its "
                                "minilm config exports runs/bert_sst2/export) or point oracle_dir at one")
    oracle = SentenceClassifier(cfg.oracle_dir)
    positive = oracle.labels.index("positive") if "positive" in oracle.labels else 1
    tfidf = Tfidf(TfidfConfig(mode="sklearn"))
    lr = fit_logistic_regression(tfidf.fit_transform(train_set[0]), train_set[1], l2=1e-5)
    on_texts = {"oracle": lambda texts: oracle(texts)[:, positive],
                "tfidf_lr": lambda texts: predict_proba(lr, tfidf.transform(texts))[:, 1]}
    for name, judge in on_texts.items():
        results.get(f"judge/{name}", lambda judge=judge: {
            "dev_accuracy": float(((judge(dev_set[0]) > 0.5) == dev_set[1]).mean())})

    def on_tokens(judge):
        return lambda tokens, mask: np.asarray(judge([tok.decode(t[m]) for t, m in zip(tokens, mask)]))

    return {name: on_tokens(judge) for name, judge in on_texts.items()}


def best_of_n(s: Setup) -> dict:
    """Best-of-N by the oracle for each N, from the first N of max(N) samples per held-out prompt."""
    n_max = max(s.cfg.best_of)
    drawn = draw(s.sft, s.prompts, s.prompt_mask, n=n_max, key=jax.random.key(7), **s.sample_kw())
    scores = {k: judge(drawn["tokens"], drawn["mask"]).reshape(-1, n_max) for k, judge in s.judges.items()}
    out = {}
    for n in s.cfg.best_of:
        pick = np.argmax(scores["oracle"][:, :n], axis=1)[:, None]
        out[f"bon_{n}"] = {"method": "best-of-N", "param": n, "kl": best_of_n_kl(n),
                           **{f"reward/{k}": float(np.take_along_axis(v[:, :n], pick, 1).mean())
                              for k, v in scores.items()}}
    return out


def run(cfg: Config) -> dict:
    return run_resumable(cfg.workdir, lambda: run_stages(cfg))


def run_stages(cfg: Config) -> dict:
    t0 = time.perf_counter()
    results = StageResults(cfg.workdir)
    train_set, dev_set = read_sst2("train"), read_sst2("dev")
    if cfg.max_train:
        train_set = (train_set[0][:cfg.max_train], train_set[1][:cfg.max_train])
    tok = WordPieceTokenizer.trained_once(Path(cfg.workdir, "tokenizer"), train_set[0], cfg.vocab_size,
                                         max_length=cfg.model.block_size)
    t1 = time.perf_counter()
    sft = train_sft(cfg, tok, train_set[0], dev_set[0])
    if "sft_train" not in results.data:  # (a resumed SFT records its last segment only)
        results.put("sft_train", {"seconds": round(time.perf_counter() - t1, 1)})
    judges = make_judges(cfg, tok, results, train_set, dev_set)
    held = prompt_prefixes(tok.pieces(dev_set[0]), bos_id=tok.cls_id, pad_id=tok.pad_id, seed=1)
    s = Setup(cfg, tok, sft, held[0][:cfg.eval_prompts], held[1][:cfg.eval_prompts], judges)
    print(f"{len(s.prompts)} held-out prompts")
    results.get("sft", lambda: {"method": "SFT", "param": 0, **s.evaluate(sft)},
                judged_settings(cfg, sft_settings(cfg)))
    if any(f"bon_{n}" not in results.data for n in cfg.best_of):
        t1 = time.perf_counter()
        for name, row in best_of_n(s).items():  # one draw serves every N: the stage's time is on each row
            results.put(name, {**row, "seconds": round(time.perf_counter() - t1, 1)})
    # (all the phrases: 26 rounds' worth; the prefixes of a slice of the phrases are the first ones of the
    # whole, so the earlier runs' slice of the first 40 x train_prompts phrases gave the same pairs)
    train_prefixes = prompt_prefixes(tok.pieces(train_set[0]), bos_id=tok.cls_id, pad_id=tok.pad_id, seed=2,
                                     min_rest=3)
    t1 = time.perf_counter()
    pairs = preference_pairs(s, train_prefixes[0][:cfg.train_prompts], train_prefixes[1][:cfg.train_prompts])
    if not results.has("pairs", pairs_settings(cfg)):  # (pairs read back from pairs.npz are not timed again)
        results.put("pairs", {"count": len(pairs["chosen"]), "seconds": round(time.perf_counter() - t1, 1)},
                    pairs_settings(cfg))

    def labelled(m: DPOMethod, row: dict) -> dict:  # a judgement as a row of the method's curve
        return {"method": curve_label(cfg.methods, m), "param": m.beta, **row}

    for m in cfg.methods:
        def judge_round(r, policy, m=m):  # an iterative method's earlier rounds: the points of its curve
            results.get(f"{m.name}_round{r}", lambda: labelled(m, s.evaluate(policy)),
                        judged_settings(cfg, {**dpo_settings(cfg, m), "round": r}))

        def judge_step(step, row, m=m):  # an online method's points, judged during its training
            results.put(f"{m.name}_step{step}", labelled(m, row), {**dpo_settings(cfg, m), "step": step})
        if m.online_steps:
            results.get(m.name, lambda m=m, on_eval=judge_step: labelled(
                m, online_policy(s, m, train_prefixes[:2], on_eval)), judged_settings(cfg, dpo_settings(cfg, m)))
            continue
        results.get(m.name, lambda m=m, on_round=judge_round: labelled(
            m, s.evaluate(train_dpo(s, m, pairs, train_prefixes, on_round))),
            judged_settings(cfg, dpo_settings(cfg, m)))
    pool = train_prefixes[2] < 20 * cfg.train_prompts  # PPO's prompts: those of the first 20 x train_prompts phrases
    run_ppo(s, results, pairs, train_prefixes[0][pool], train_prefixes[1][pool])
    report(cfg, results.data)
    return write_summary(cfg.workdir, {"status": "finished", "wall_seconds": round(time.perf_counter() - t0, 1),
                                       **{k: v for k, v in results.data.items() if isinstance(v, dict)}}, echo=False)


def report(cfg: Config, data: dict) -> None:
    """``results.md`` (the table) and ``frontier.png`` (oracle reward against KL, one curve per method; a
    configured method's rows, its rounds' too, labelled as ``curve_label`` names it now)."""
    labels = {m.name: curve_label(cfg.methods, m) for m in cfg.methods}

    def label(name: str, row: dict) -> str:
        method = labels.get(re.sub(r"_(round|step)\d+$", "", name), row["method"])
        return LOSS_NAMES.get(method, method)

    rows = {k: {**v, "method": label(k, v)} for k, v in data.items() if isinstance(v, dict) and "kl" in v}
    Path(cfg.workdir, "results.md").write_text(frontier_table(rows))
    plot_frontier(rows, Path(cfg.workdir, "frontier.png"), title="SST-2 controlled sentiment: reward vs KL")
