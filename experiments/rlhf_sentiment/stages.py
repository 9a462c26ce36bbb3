"""The controlled-sentiment experiment's stages: the SFT policy, the judges, best-of-N, the preference pairs,
DPO (one round, iterative, continued, online), the reward model and PPO, and the settings each stage's
results depend on. Each function takes the run's :class:`Setup` (``s``: its config, tokenizer, SFT policy,
held-out prompts and judges) or its ``Config`` (``cfg``)."""

from __future__ import annotations

import dataclasses
import functools
import time
import zipfile
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from nlp_jax.data.atomic import atomic_path
from nlp_jax.data.corpus import delimited_stream
from nlp_jax.data.preferences import pairs_from_samples, unpaired_from_pairs
from nlp_jax.data.wordpiece import WordPieceTokenizer
from nlp_jax.eval.perplexity import perplexity
from nlp_jax.eval.rewards import best_of_n_kl, draw, evaluate, pairwise_accuracy, reward_scores
from nlp_jax.eval.sentences import SentenceClassifier
from nlp_jax.models.gpt2 import GPT2, without_dropout
from nlp_jax.models.gpt2_hf import load_hf_gpt2, save_hf_gpt2
from nlp_jax.models.logistic import fit_logistic_regression, predict_proba
from nlp_jax.models.reward import PolicyWithValue, RewardModel
from nlp_jax.models.tfidf import Tfidf, TfidfConfig
from nlp_jax.objectives import dpo_objective, kto_objective, reward_loss
from nlp_jax.train.config import TrainConfig
from nlp_jax.train.lm import train_on_stream
from nlp_jax.train.metrics import read_metrics
from nlp_jax.train.online_dpo import OnlinePairs
from nlp_jax.train.ppo import train_ppo
from nlp_jax.train.preference import PAIRS_TRAIN, reference_logprobs, train_on_pairs
from nlp_jax.train.stages import Stage, StageResults, Stages, fingerprint, train_stage

from .config import Config
from .methods import DPOMethod, curve_label


def export_policy(model: GPT2, tok: WordPieceTokenizer, directory: Path) -> None:
    """A HF GPT-2 export with its tokenizer: ``nlp-jax generate <directory> prompts.txt``."""
    save_hf_gpt2(model, directory, tokenizer=tok, bos_token_id=tok.cls_id, eos_token_id=tok.sep_id,
                 pad_token_id=tok.pad_id)


def graph(cfg: Config) -> Stages:
    """The run's stages: the config fields each one's results depend on and the stages it reads. A result
    stored under other settings is measured again; the stages that read it are too (their settings include it)."""
    rollout = ("max_new_tokens", "seeds.train_prefixes")
    ppo = ("ppo", "optim=ppo_optim", "ppo_rollouts", "seeds.ppo_init", "seeds.ppo", *rollout)
    return Stages(
        cfg,
        sft=Stage(fields=("model", "optim=sft_optim", "train=sft_train", "batch_size", "vocab_size", "max_train"),
                  ignore=("sft_train.progress",)),
        judge=Stage(fields=("oracle_dir", "eval_prompts", "eval_samples", "max_new_tokens", "seeds.held_prefixes",
                            "seeds.judge")),
        # (its own samples of the held-out prompts, scored by both judges: not the judge's samples)
        best_of_n=Stage(fields=("best_of", "seeds.best_of_n", "eval_prompts", "seeds.held_prefixes", "max_new_tokens",
                                "oracle_dir"), reads=("sft",)),
        pairs=Stage(fields=("oracle_dir", "train_prompts", "samples_per_prompt", "seeds.pairs", *rollout),
                    reads=("sft",)),
        # (+ the method, its optimizer and epochs: dpo_settings)
        dpo=Stage(fields=("dpo_batch", "seeds.dpo"), reads=("pairs",), resumable=("epochs",)),
        online_dpo=Stage(fields=("dpo_batch", "online_eval_every", "oracle_dir", "seeds.pairs", *rollout),
                         reads=("sft",)),
        reward_model=Stage(fields=("optim=rm_optim", "epochs=dpo_epochs", "dpo_batch", "seeds.rm_init",
                                   "seeds.rm_split", "seeds.rm"), reads=("pairs",), resumable=("epochs",)),
        ppo_rm=Stage(fields=ppo, reads=("sft", "reward_model"), resumable=("ppo_rollouts",)),  # + the KL coefficient
        ppo_oracle=Stage(fields=(*ppo, "oracle_dir"), reads=("sft",), resumable=("ppo_rollouts",)),
        critic_free=Stage(fields=("group", "optim=group_optim", "group_rollouts", "group_eval_every", "seeds.group",
                                  "oracle_dir", *rollout), reads=("sft",)),  # + the method
    )


def dpo_settings(s: Setup, method: DPOMethod) -> dict:
    """A DPO method's settings: the dpo stage's, the method's, and its learning rate and epochs (its own, or
    the run's), which ``train_on_pairs`` may change on resume."""
    cfg = s.cfg
    optim = cfg.dpo_optim if method.lr is None else dataclasses.replace(cfg.dpo_optim, lr=method.lr,
                                                                         min_lr=method.lr / 10)
    stage = "online_dpo" if method.online_steps else "dpo"
    return s.graph.settings(stage, method=dataclasses.asdict(method), optim=optim,
                            epochs=method.epochs or cfg.dpo_epochs)


@dataclasses.dataclass
class Setup:
    """What every stage shares: the tokenizer, the SFT policy (also the reference), the held-out prompts
    and the judges ((tokens, mask) -> p(positive))."""
    cfg: Config
    graph: Stages
    tok: WordPieceTokenizer
    sft: GPT2
    prompts: np.ndarray
    prompt_mask: np.ndarray
    judges: dict

    def sample_kw(self) -> dict:
        return dict(max_new_tokens=self.cfg.max_new_tokens, eos_id=self.tok.sep_id, pad_id=self.tok.pad_id)

    def evaluate(self, policy) -> dict:
        return evaluate(policy, self.sft, self.prompts, self.prompt_mask, self.judges,
                        key=jax.random.key(self.cfg.seeds.judge), samples=self.cfg.eval_samples, **self.sample_kw())

    def judged(self, settings: dict) -> dict:
        """A judged row's settings: its policy's and the judge's, so a row stored under other judge settings
        is judged again (its training, unchanged, is read back)."""
        return {**settings, "<judge>": self.graph.settings("judge")}


def train_sft(cfg: Config, settings: dict, tok: WordPieceTokenizer, train_texts: list[str],
              dev_texts: list[str]) -> GPT2:
    model_cfg = dataclasses.replace(cfg.model, vocab_size=tok.vocab_size)
    train_ids = delimited_stream(tok.pieces(train_texts), tok.cls_id, tok.sep_id, cfg.sft_train.seed)
    dev_ids = delimited_stream(tok.pieces(dev_texts), tok.cls_id, tok.sep_id, 0)
    print(f"SFT on {len(train_ids):,} tokens of {len(train_texts):,} phrases, vocabulary {tok.vocab_size}")
    model = train_on_stream(model_cfg, train_ids, batch_size=cfg.batch_size, train_cfg=cfg.sft_train,
                            optim_cfg=cfg.sft_optim, workdir=Path(cfg.workdir, "sft"), config=settings,
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
    drawn = draw(s.sft, s.prompts, s.prompt_mask, n=n_max, key=jax.random.key(s.cfg.seeds.best_of_n),
                 **s.sample_kw())
    scores = {k: judge(drawn["tokens"], drawn["mask"]).reshape(-1, n_max) for k, judge in s.judges.items()}
    out = {}
    for n in s.cfg.best_of:
        pick = np.argmax(scores["oracle"][:, :n], axis=1)[:, None]
        out[f"bon_{n}"] = {"method": "best-of-N", "param": n, "kl": best_of_n_kl(n),
                           **{f"reward/{k}": float(np.take_along_axis(v[:, :n], pick, 1).mean())
                              for k, v in scores.items()}}
    return out


def preference_pairs(s: Setup, prompts: np.ndarray, mask: np.ndarray, *, policy=None, path: Path | None = None,
                     settings: dict | None = None, seed: int | None = None, min_gap: float = 0.0,
                     samples: int | None = None, extremes: bool = False) -> dict[str, np.ndarray]:
    """``samples`` (default ``samples_per_prompt``) samples of ``policy`` (default SFT) per training prefix,
    all their pairs (or only each prefix's best against its worst: ``extremes``; and only those whose scores
    differ by more than ``min_gap``) labelled by the oracle (kept in ``path``, default ``<workdir>/pairs.npz``,
    with ``settings``)."""
    path = path or Path(s.cfg.workdir, "pairs.npz")
    settings = fingerprint(settings or s.graph.settings("pairs"))
    if path.exists():
        try:
            with np.load(path) as stored:
                if str(stored["settings"]) == settings:
                    return {k: v for k, v in stored.items() if k != "settings"}
            print(f"{path}: drawn with other settings; drawing the pairs again")
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:  # written by rename: an outside hand
            print(f"{path} is damaged ({type(err).__name__}: {err}); drawing the pairs again")
    n = samples or s.cfg.samples_per_prompt
    drawn = draw(policy or s.sft, prompts, mask, n=n, key=jax.random.key(s.cfg.seeds.pairs if seed is None else seed),
                 **s.sample_kw())
    pairs = pairs_from_samples(drawn, s.judges["oracle"](drawn["tokens"], drawn["mask"]), n, min_gap, extremes)
    if not len(pairs["chosen"]):
        raise ValueError(f"{path}: no two samples of the {len(prompts):,} prefixes have oracle scores more than "
                         f"min_gap={min_gap:g} apart: lower the method's min_gap")
    print(f"{path}: {len(pairs['chosen']):,} pairs from {len(prompts):,} prefixes")
    with atomic_path(path, ".npz") as tmp:  # a crash mid-write leaves the previous file, or none
        np.savez(tmp, settings=settings, **pairs)
    return pairs


def start_policy(cfg: Config, sft: GPT2, method: DPOMethod) -> tuple[int, GPT2]:
    """(rounds already trained, the policy to train on): SFT without dropout at round 0, or for a method that
    ``continues`` another (Config checked it is listed earlier, so its run has finished and is exported) that
    one's exported last policy after its rounds."""
    policy = without_dropout(sft)
    if not method.continues:
        return 0, policy
    nnx.update(policy, nnx.state(load_hf_gpt2(Path(cfg.workdir, method.continues, "export")), nnx.Param))
    return cfg.method(method.continues).rounds, policy


def round_prefixes(prefixes: tuple[np.ndarray, np.ndarray], r: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Round r's (from 0) ``n`` training prefixes and their masks: the r-th slice of ``n``, cyclically, so a
    round past the last slice draws fresh samples of its policy on the prefixes of round r - slices."""
    slices = len(prefixes[0]) // n
    if slices == 0:
        raise ValueError(f"train_prompts={n} is more than the {len(prefixes[0])} training prefixes")
    at = r % slices * n
    return prefixes[0][at:at + n], prefixes[1][at:at + n]


def train_dpo(s: Setup, method: DPOMethod, pairs: dict, prefixes: tuple[np.ndarray, np.ndarray],
              on_round=None) -> GPT2:
    """DPO from SFT on ``pairs``; with ``method.rounds`` > 1, each further round on pairs of the policy so
    far, drawn on the next ``train_prompts`` of ``prefixes`` (:func:`round_prefixes`; round r in
    ``<method>/round<r>``), and ``on_round(r, policy)`` called after each round but the last (r from 1).
    A method that ``continues`` another starts from that one's exported last policy, at the round after its
    last."""
    cfg, settings = s.cfg, dpo_settings(s, method)
    (first, policy), refs_path = start_policy(cfg, s.sft, method), Path(cfg.workdir, "reference_logprobs.npz")
    for r in range(first, method.rounds):
        workdir = Path(cfg.workdir, method.name, *([f"round{r + 1}"] if r else []))
        if r or method.own_pairs:
            pairs = preference_pairs(s, *round_prefixes(prefixes, r, cfg.train_prompts), policy=policy,
                                     path=workdir / "pairs.npz", seed=cfg.seeds.pairs + r,
                                     settings=settings.plus(round=r),
                                     min_gap=method.min_gap, samples=method.samples, extremes=method.extremes)
            refs_path = workdir / "reference_logprobs.npz"
        sides, data = ("chosen", "rejected"), pairs
        if method.loss_type == "kto":  # each completion alone: 2 examples a pair, each its own KL row
            sides, data = ("completion", "kl"), unpaired_from_pairs(pairs, seed=cfg.seeds.dpo + r)
            refs_path = workdir / "reference_logprobs.npz"
        refs = reference_logprobs(s.sft, data, refs_path, sides=sides)
        policy = train_on_pairs(policy, method_objective(method), {**data, **refs}, epochs=settings["epochs"],
                                batch_size=cfg.dpo_batch, optim_cfg=settings["optim"], workdir=workdir,
                                config=settings.plus(round=r), train_cfg=pairs_train(cfg, cfg.seeds.dpo + r),
                                stage=method.name, sides=sides)
        if on_round and r + 1 < method.rounds:
            on_round(r + 1, policy)
    export_policy(policy, s.tok, Path(cfg.workdir, method.name, "export"))
    return policy


def method_objective(method: DPOMethod):
    if method.loss_type == "kto":
        return kto_objective(beta=method.beta)
    return dpo_objective(beta=method.beta, loss_type=method.loss_type, label_smoothing=method.label_smoothing,
                         gamma=method.gamma, soft_labels=method.soft_labels)


def pairs_train(cfg: Config, seed: int) -> TrainConfig:
    """How a stage trains on pairs: ``train.preference``'s defaults, with ``seed`` and the run's progress bar."""
    return dataclasses.replace(PAIRS_TRAIN, seed=seed, progress=cfg.sft_train.progress)


def online_policy(s: Setup, method: DPOMethod, prefixes: tuple[np.ndarray, np.ndarray], on_eval) -> dict:
    """Online DPO from SFT (``train.online_dpo``): each step the best against the worst of ``method.samples``
    (default 2) samples of the policy then, on ``dpo_batch`` training prefixes, labelled by the oracle;
    judged every ``online_eval_every`` steps (``on_eval(step, row)`` for each such point before the last).
    Returns the last policy's judgement, made anew: a finished run read back was judged during training under
    the judge settings of that time."""
    cfg, settings = s.cfg, dpo_settings(s, method)
    workdir = Path(cfg.workdir, method.name)
    source = OnlinePairs(*prefixes, reference=s.sft, score_fn=s.judges["oracle"], batch_size=cfg.dpo_batch,
                         samples=method.samples or 2, seed=cfg.seeds.pairs, **s.sample_kw())
    objective = method_objective(method)
    train_cfg = TrainConfig(steps=method.online_steps, log_every=min(25, method.online_steps),
                            eval_every=cfg.online_eval_every, ckpt_every=100, progress=cfg.sft_train.progress)
    policy, _ = train_stage(without_dropout(s.sft), objective, source, train_cfg=train_cfg,
                            optim_cfg=settings["optim"], workdir=workdir, config=settings, eval_fn=s.evaluate,
                            stage=method.name)
    judged = {row["step"]: {k: v for k, v in row.items() if k != "step"}  # every segment's, a resumed run's too
              for row in read_metrics(workdir / "metrics.jsonl") if "kl" in row}
    for step in sorted(judged):
        if step < method.online_steps:
            on_eval(step, judged[step])
    export_policy(policy, s.tok, workdir / "export")
    return s.evaluate(policy)


def labelled(s: Setup, method: DPOMethod, row: dict) -> dict:
    """A judgement as a row of the method's curve (its label in the table and the plot)."""
    return {"method": curve_label(s.cfg.methods, method), "param": method.beta, **row}


def judge_round(s: Setup, results: StageResults, method: DPOMethod, r: int, policy: GPT2) -> None:
    """An iterative method's round ``r`` (from 1, before its last): a point of its curve."""
    results.get(f"{method.name}_round{r}", lambda: labelled(s, method, s.evaluate(policy)),
                s.judged(dpo_settings(s, method).plus(round=r)))


def judge_step(s: Setup, results: StageResults, method: DPOMethod, step: int, row: dict) -> None:
    """An online method's point at ``step``, judged during its training (kept as judged then)."""
    results.put(f"{method.name}_step{step}", labelled(s, method, row), dpo_settings(s, method).plus(step=step))


def judged_method(s: Setup, results: StageResults, method: DPOMethod, pairs: dict, prefixes: tuple) -> dict:
    """Train one DPO method (one round, iterative or online) and judge its last policy."""
    if method.online_steps:
        return labelled(s, method, online_policy(s, method, prefixes[:2],
                                                 functools.partial(judge_step, s, results, method)))
    policy = train_dpo(s, method, pairs, prefixes, functools.partial(judge_round, s, results, method))
    return labelled(s, method, s.evaluate(policy))


def run_methods(s: Setup, results: StageResults, pairs: dict, prefixes: tuple) -> None:
    """Every configured DPO method, each judged (a stored judgement under the same settings is read back)."""
    for method in s.cfg.methods:
        results.get(method.name, functools.partial(judged_method, s, results, method, pairs, prefixes),
                    s.judged(dpo_settings(s, method)))


def train_reward_model(s: Setup, pairs: dict) -> tuple[callable, dict]:
    """A reward model on the SFT policy's backbone, Bradley-Terry on 90% of the pairs; returns its scorer
    ((tokens, mask) -> reward, normalised to mean 0 and std 1 over the SFT samples, as Ziegler et al. do)
    and its held-out pair accuracy."""
    cfg, n = s.cfg, len(pairs["chosen"])
    split = np.random.default_rng(cfg.seeds.rm_split).permutation(n)
    held, fit = split[:max(1, n // 10)], split[max(1, n // 10):]
    rm = train_on_pairs(RewardModel(without_dropout(s.sft), rngs=nnx.Rngs(cfg.seeds.rm_init)), reward_loss,
                        {k: v[fit] for k, v in pairs.items()}, epochs=cfg.dpo_epochs, batch_size=cfg.dpo_batch,
                        optim_cfg=cfg.rm_optim, workdir=Path(cfg.workdir, "reward_model"),
                        config=s.graph.settings("reward_model"), train_cfg=pairs_train(cfg, cfg.seeds.rm))
    both = {k: np.concatenate([pairs[f"chosen{k}"], pairs[f"rejected{k}"]]) for k in ("", "_mask")}
    r = reward_scores(rm, both[""], both["_mask"])
    mu, sd = float(r.mean()), float(r.std() + 1e-6)
    accuracy = pairwise_accuracy(*(reward_scores(rm, pairs[side][held], pairs[f"{side}_mask"][held])
                                   for side in ("chosen", "rejected")))
    return (lambda tokens, mask: (reward_scores(rm, tokens, mask) - mu) / sd), {"heldout_pair_accuracy": accuracy,
                                                                                 "heldout_pairs": len(held)}


def ppo_policy(s: Setup, name: str, score_fn, kl_coef: float, prompts: np.ndarray, mask: np.ndarray,
               settings: dict):
    cfg = s.cfg
    ppo = dataclasses.replace(cfg.ppo, kl_coef=kl_coef, max_new_tokens=cfg.max_new_tokens)
    model = train_ppo(PolicyWithValue(without_dropout(s.sft), rngs=nnx.Rngs(cfg.seeds.ppo_init)), s.sft, score_fn,
                      prompts, mask, cfg=ppo, rollouts=cfg.ppo_rollouts, optim_cfg=cfg.ppo_optim,
                      workdir=Path(cfg.workdir, name), config=settings, eos_id=s.tok.sep_id, pad_id=s.tok.pad_id,
                      train_cfg=TrainConfig(steps=0, seed=cfg.seeds.ppo, progress=cfg.sft_train.progress))
    export_policy(model.policy, s.tok, Path(cfg.workdir, name, "export"))
    return model


def judged_ppo(s: Setup, method: str, name: str, score_fn, kl_coef: float, prompts: np.ndarray, mask: np.ndarray,
               settings: dict) -> dict:
    policy = ppo_policy(s, name, score_fn, kl_coef, prompts, mask, settings)
    return {"method": method, "param": kl_coef, **s.evaluate(policy)}


def run_ppo(s: Setup, results: StageResults, pairs: dict, prompts: np.ndarray, mask: np.ndarray) -> None:
    """PPO on the reward model at each KL coefficient (training the reward model first when one of them is
    not judged yet), then PPO on the oracle."""
    runs = {f"ppo_rm_b{b:g}": (b, s.graph.settings("ppo_rm", kl_coef=b)) for b in s.cfg.ppo_kl_coefs}
    if not all(results.has(name, s.judged(settings)) for name, (_, settings) in runs.items()):
        t0 = time.perf_counter()
        rm_score, stats = train_reward_model(s, pairs)  # (a finished reward model is read back)
        if not results.has("reward_model", s.graph.settings("reward_model")):
            results.put("reward_model", {**stats, "seconds": round(time.perf_counter() - t0, 1)},
                        s.graph.settings("reward_model"))
        for name, (beta, settings) in runs.items():
            results.get(name, functools.partial(judged_ppo, s, "PPO (reward model)", name, rm_score, beta, prompts,
                                                mask, settings), s.judged(settings))
    beta = s.cfg.ppo_oracle_kl_coef
    name, settings = f"ppo_oracle_b{beta:g}", s.graph.settings("ppo_oracle", kl_coef=beta)
    results.get(name, functools.partial(judged_ppo, s, "PPO (oracle)", name, s.judges["oracle"], beta, prompts, mask,
                                        settings), s.judged(settings))
