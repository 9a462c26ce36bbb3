"""The preference stages of ``rlhf_sentiment.py``: the settings each stage's results depend on, the
preference pairs, DPO (one round, iterative, continued, online) and the reward model + PPO. Each function
takes that experiment's ``Setup`` (``s``: its config, tokenizer, SFT policy, held-out prompts and judges) or
its ``Config`` (``cfg``). ``nlp_jax.run`` puts the experiment's folder on ``sys.path``, as ``python
experiments/rlhf_sentiment.py`` would, so the experiment imports this file as ``_rlhf_stages``; the leading
underscore marks it as no experiment of its own."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING

import jax
import numpy as np
from flax import nnx

from nlp_jax.data.preferences import pairs_from_samples
from nlp_jax.data.wordpiece import WordPieceTokenizer
from nlp_jax.eval.rewards import draw, pairwise_accuracy, reward_scores
from nlp_jax.models.gpt2 import GPT2, without_dropout
from nlp_jax.models.gpt2_hf import load_hf_gpt2, save_hf_gpt2
from nlp_jax.models.reward import PolicyWithValue, RewardModel, reward_loss
from nlp_jax.train.dpo_methods import DPOMethod
from nlp_jax.train.metrics import read_metrics
from nlp_jax.train.online_dpo import OnlinePairs, train_online_dpo
from nlp_jax.train.ppo import train_ppo
from nlp_jax.train.preference import dpo_objective, reference_logprobs, train_on_pairs
from nlp_jax.train.records import StageResults, fingerprint

if TYPE_CHECKING:
    from rlhf_sentiment import Config, Setup


def export_policy(model: GPT2, tok: WordPieceTokenizer, directory: Path) -> None:
    """A HF GPT-2 export with its tokenizer: ``python -m nlp_jax.generate <directory> prompts.txt``."""
    save_hf_gpt2(model, directory, bos_token_id=tok.cls_id, eos_token_id=tok.sep_id, pad_token_id=tok.pad_id)
    tok.save(directory)


def sft_settings(cfg: Config) -> dict:
    """What the SFT policy depends on. Each stage's runs record only their own share of the config (and
    their inputs'), so changing one stage's settings leaves the others resumable and their results kept."""
    return {"model": cfg.model, "optim": cfg.sft_optim, "train": dataclasses.replace(cfg.sft_train, progress=True),
            "batch_size": cfg.batch_size, "vocab_size": cfg.vocab_size, "max_train": cfg.max_train}


def judged_settings(cfg: Config, settings: dict) -> dict:
    """A judged row's settings: its policy's ``settings`` and what the judgement depends on besides the policy,
    so a row stored under other judge settings is judged again (its training, unchanged, is read back)."""
    judge = {"prompts": cfg.eval_prompts, "samples": cfg.eval_samples, "max_new_tokens": cfg.max_new_tokens}
    return {**settings, "judge": judge}


def pairs_settings(cfg: Config) -> dict:
    return {"sft": sft_settings(cfg), "oracle_dir": cfg.oracle_dir, "train_prompts": cfg.train_prompts,
            "samples_per_prompt": cfg.samples_per_prompt, "max_new_tokens": cfg.max_new_tokens}


def dpo_settings(cfg: Config, method: DPOMethod) -> dict:
    optim = cfg.dpo_optim if method.lr is None else dataclasses.replace(cfg.dpo_optim, lr=method.lr,
                                                                         min_lr=method.lr / 10)
    return {"method": method.recorded(), "optim": optim, "epochs": method.epochs or cfg.dpo_epochs,
            "batch": cfg.dpo_batch, "pairs": pairs_settings(cfg)}


def preference_pairs(s: Setup, prompts: np.ndarray, mask: np.ndarray, *, policy=None, path: Path | None = None,
                     settings: dict | None = None, seed: int = 11, min_gap: float = 0.0, samples: int | None = None,
                     extremes: bool = False) -> dict[str, np.ndarray]:
    """``samples`` (default ``samples_per_prompt``) samples of ``policy`` (default SFT) per training prefix,
    all their pairs (or only each prefix's best against its worst: ``extremes``; and only those whose scores
    differ by more than ``min_gap``) labelled by the oracle (kept in ``path``, default ``<workdir>/pairs.npz``,
    with ``settings``)."""
    path = path or Path(s.cfg.workdir, "pairs.npz")
    settings = fingerprint(settings or pairs_settings(s.cfg))
    if path.exists():
        with np.load(path) as stored:
            if str(stored["settings"]) == settings:
                return {k: v for k, v in stored.items() if k != "settings"}
        print(f"{path}: drawn with other settings; drawing the pairs again")
    n = samples or s.cfg.samples_per_prompt
    drawn = draw(policy or s.sft, prompts, mask, n=n, key=jax.random.key(seed), **s.sample_kw())
    pairs = pairs_from_samples(drawn, s.judges["oracle"](drawn["tokens"], drawn["mask"]), n, min_gap, extremes)
    if not len(pairs["chosen"]):
        raise ValueError(f"{path}: no two samples of the {len(prompts):,} prefixes have oracle scores more than "
                         f"min_gap={min_gap:g} apart: lower the method's min_gap")
    print(f"{path}: {len(pairs['chosen']):,} pairs from {len(prompts):,} prefixes")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, settings=settings, **pairs)
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
    cfg, settings = s.cfg, dpo_settings(s.cfg, method)
    (first, policy), refs_path = start_policy(cfg, s.sft, method), Path(cfg.workdir, "reference_logprobs.npz")
    for r in range(first, method.rounds):
        workdir = Path(cfg.workdir, method.name, *([f"round{r + 1}"] if r else []))
        if r or method.own_pairs:
            pairs = preference_pairs(s, *round_prefixes(prefixes, r, cfg.train_prompts), policy=policy,
                                     path=workdir / "pairs.npz", seed=11 + r, settings={**settings, "round": r},
                                     min_gap=method.min_gap, samples=method.samples, extremes=method.extremes)
            refs_path = workdir / "reference_logprobs.npz"
        refs = reference_logprobs(s.sft, pairs, refs_path)
        objective = dpo_objective(beta=method.beta, loss_type=method.loss_type,
                                  label_smoothing=method.label_smoothing, soft_labels=method.soft_labels)
        policy = train_on_pairs(policy, objective, {**pairs, **refs}, epochs=settings["epochs"],
                                batch_size=cfg.dpo_batch, optim_cfg=settings["optim"], workdir=workdir,
                                config={**settings, "round": r}, seed=3 + r, progress=cfg.sft_train.progress,
                                stage=method.name)
        if on_round and r + 1 < method.rounds:
            on_round(r + 1, policy)
    export_policy(policy, s.tok, Path(cfg.workdir, method.name, "export"))
    return policy


def online_policy(s: Setup, method: DPOMethod, prefixes: tuple[np.ndarray, np.ndarray], on_eval) -> dict:
    """Online DPO from SFT (``train.online_dpo``): each step the best against the worst of ``method.samples``
    (default 2) samples of the policy then, on ``dpo_batch`` training prefixes, labelled by the oracle;
    judged every ``online_eval_every`` steps (``on_eval(step, row)`` for each such point before the last).
    Returns the last policy's judgement, made anew: a finished run read back was judged during training under
    the judge settings of that time."""
    cfg, settings = s.cfg, dpo_settings(s.cfg, method)
    workdir = Path(cfg.workdir, method.name)
    source = OnlinePairs(*prefixes, reference=s.sft, score_fn=s.judges["oracle"], batch_size=cfg.dpo_batch,
                         samples=method.samples or 2, seed=11, **s.sample_kw())
    objective = dpo_objective(beta=method.beta, loss_type=method.loss_type, label_smoothing=method.label_smoothing,
                              soft_labels=method.soft_labels)
    policy, _ = train_online_dpo(without_dropout(s.sft), objective, source, steps=method.online_steps,
                                 optim_cfg=settings["optim"], workdir=workdir, config=settings, eval_fn=s.evaluate,
                                 eval_every=cfg.online_eval_every, progress=cfg.sft_train.progress, stage=method.name)
    judged = {row["step"]: {k: v for k, v in row.items() if k != "step"}  # every segment's, a resumed run's too
              for row in read_metrics(workdir / "metrics.jsonl") if "kl" in row}
    for step in sorted(judged):
        if step < method.online_steps:
            on_eval(step, judged[step])
    export_policy(policy, s.tok, workdir / "export")
    return s.evaluate(policy)


def rm_settings(cfg: Config) -> dict:
    return {"optim": cfg.rm_optim, "epochs": cfg.dpo_epochs, "batch": cfg.dpo_batch, "pairs": pairs_settings(cfg)}


def ppo_settings(cfg: Config, kl_coef: float, on_oracle: bool) -> dict:
    ppo = dataclasses.replace(cfg.ppo, kl_coef=kl_coef, max_new_tokens=cfg.max_new_tokens)
    return {"ppo": ppo, "optim": cfg.ppo_optim, "train": {"steps": cfg.ppo_rollouts * ppo.steps_per_rollout},
            "reference": sft_settings(cfg),
            "reward": {"oracle_dir": cfg.oracle_dir} if on_oracle else rm_settings(cfg)}


def train_reward_model(s: Setup, pairs: dict) -> tuple[callable, dict]:
    """A reward model on the SFT policy's backbone, Bradley-Terry on 90% of the pairs; returns its scorer
    ((tokens, mask) -> reward, normalised to mean 0 and std 1 over the SFT samples, as Ziegler et al. do)
    and its held-out pair accuracy."""
    cfg, n = s.cfg, len(pairs["chosen"])
    split = np.random.default_rng(0).permutation(n)
    held, fit = split[:max(1, n // 10)], split[max(1, n // 10):]
    rm = train_on_pairs(RewardModel(without_dropout(s.sft), rngs=nnx.Rngs(4)), reward_loss,
                        {k: v[fit] for k, v in pairs.items()}, epochs=cfg.dpo_epochs, batch_size=cfg.dpo_batch,
                        optim_cfg=cfg.rm_optim, workdir=Path(cfg.workdir, "reward_model"), config=rm_settings(cfg),
                        seed=5, progress=cfg.sft_train.progress)
    both = {k: np.concatenate([pairs[f"chosen{k}"], pairs[f"rejected{k}"]]) for k in ("", "_mask")}
    r = reward_scores(rm, both[""], both["_mask"])
    mu, sd = float(r.mean()), float(r.std() + 1e-6)
    accuracy = pairwise_accuracy(*(reward_scores(rm, pairs[side][held], pairs[f"{side}_mask"][held])
                                   for side in ("chosen", "rejected")))
    return (lambda tokens, mask: (reward_scores(rm, tokens, mask) - mu) / sd), {"heldout_pair_accuracy": accuracy,
                                                                                 "heldout_pairs": len(held)}


def ppo_policy(s: Setup, name: str, score_fn, kl_coef: float, prompts: np.ndarray, mask: np.ndarray):
    cfg, settings = s.cfg, ppo_settings(s.cfg, kl_coef, on_oracle=score_fn is s.judges["oracle"])
    model = train_ppo(PolicyWithValue(without_dropout(s.sft), rngs=nnx.Rngs(6)), s.sft, score_fn, prompts, mask,
                      cfg=settings["ppo"], rollouts=cfg.ppo_rollouts, optim_cfg=cfg.ppo_optim,
                      workdir=Path(cfg.workdir, name), config=settings, eos_id=s.tok.sep_id, pad_id=s.tok.pad_id,
                      seed=7, progress=cfg.sft_train.progress)
    export_policy(model.policy, s.tok, Path(cfg.workdir, name, "export"))
    return model


def run_ppo(s: Setup, results: StageResults, pairs: dict, prompts: np.ndarray, mask: np.ndarray) -> None:
    names = [f"ppo_rm_b{b:g}" for b in s.cfg.ppo_kl_coefs]
    if not all(results.has(n, judged_settings(s.cfg, ppo_settings(s.cfg, b, False)))
               for n, b in zip(names, s.cfg.ppo_kl_coefs)):
        t0 = time.perf_counter()
        rm_score, stats = train_reward_model(s, pairs)  # (a finished reward model is read back)
        if not results.has("reward_model", rm_settings(s.cfg)):
            results.put("reward_model", {**stats, "seconds": round(time.perf_counter() - t0, 1)}, rm_settings(s.cfg))
        for name, beta in zip(names, s.cfg.ppo_kl_coefs):
            results.get(name, lambda name=name, beta=beta: {
                "method": "PPO (reward model)", "param": beta,
                **s.evaluate(ppo_policy(s, name, rm_score, beta, prompts, mask))},
                judged_settings(s.cfg, ppo_settings(s.cfg, beta, False)))
    beta = s.cfg.ppo_oracle_kl_coef
    results.get(f"ppo_oracle_b{beta:g}", lambda: {"method": "PPO (oracle)", "param": beta, **s.evaluate(
        ppo_policy(s, f"ppo_oracle_b{beta:g}", s.judges["oracle"], beta, prompts, mask))},
        judged_settings(s.cfg, ppo_settings(s.cfg, beta, True)))
