"""Learning from human preferences on Anthropic's HH-RLHF (harmless-base, 2,312 chosen / rejected pairs).

Launch:  make preferences-hh C=rm    (python -m nlp_jax.run experiments/preferences_hh.py:rm)
         make preferences-hh C=dpo   (python -m nlp_jax.run experiments/preferences_hh.py:dpo)    (:smoke, :smoke_dpo)

The split is ``data.hh_rlhf.hh_split(2000, seed=0)``: 1,992 usable training pairs and 312 held-out ones
(8 of the 2,312 are left out: no shared prompt, or an empty or repeated reply). Everything is judged on the
312 held-out pairs by pairwise accuracy (a tie counts one half), beside three baselines: a coin,
"the longer reply wins" and "the shorter reply wins" (by characters); the coin is the mean of 1,000
seeded ones, their spread beside it.

- ``rm``: reward models on all-MiniLM-L6-v2 (a 22.7M-parameter BERT encoder; the largest pretrained model
  this CPU fine-tunes in minutes). The input is [CLS], the prompt's last ``max_prompt_length`` pieces and
  the reply, at most ``max_length`` pieces (the end of a dialogue is what the reply answers). Two models
  on the first 500 / 1,000 / 2,000 training pairs (the data-size curve): *linear*, a Bradley-Terry reward
  linear in MiniLM's frozen sentence embedding (logistic regression on the chosen-minus-rejected
  difference), and *fine-tuned*, ``RewardModel(MiniLM, pooling='mean')`` trained end to end with the
  Bradley-Terry loss through the one train loop.
- ``dpo``: an SFT GPT (4 layers, 256 wide, context 256, a WordPiece vocabulary of 8,192 trained on the
  training dialogues) on the chosen dialogues of the training pairs is the reference; its log-prob
  difference is a fourth baseline. DPO (sigmoid, ``dpo_beta``) from it on 500 / 1,000 / 2,000 pairs, with
  the reference's log-probs cached; its accuracy is that of the implicit reward
  beta (log pi(y|x) - log pi_ref(y|x)).

A held-out pair whose two rows are identical after truncation is a tie for every model (counted, 0.5).
Results: ``<workdir>/results.json`` and ``results.md``. Measured (2026-12-01, a 2-core AMD EPYC): ``rm``
held-out accuracy **0.644** with all pairs for both reward models ("the shorter reply wins": 0.598); ``dpo``
0.583, no better than the reference's log-prob difference (0.593): DPO does not learn this preference at
this scale.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path

import numpy as np
from flax import nnx

from nlp_jax.data.corpus import delimited_stream
from nlp_jax.data.hh_rlhf import hh_split
from nlp_jax.data.preferences import encode_pairs
from nlp_jax.data.wordpiece import WordPieceTokenizer
from nlp_jax.eval.perplexity import perplexity
from nlp_jax.eval.rewards import by_length, pairwise_accuracy, reward_scores
from nlp_jax.models.bert import normalized_mean
from nlp_jax.models.bert_hf import load_hf_bert, minilm_dir
from nlp_jax.models.gpt2 import GPT2, GPT2Config, without_dropout
from nlp_jax.models.logistic import fit_logistic_regression, predict_proba
from nlp_jax.models.reward import RewardModel
from nlp_jax.objectives import dpo_objective, reward_loss
from nlp_jax.train.config import OptimConfig, TrainConfig
from nlp_jax.train.lm import train_on_stream
from nlp_jax.train.preference import reference_logprobs, train_on_pairs
from nlp_jax.train.records import markdown_table, write_summary
from nlp_jax.train.stages import Settings, Stage, StageResults, Stages, run_resumable
from nlp_jax.validate import at_least, check_fields, positive


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    stage: str = "rm"  # 'rm' (reward models on MiniLM) or 'dpo' (SFT GPT + DPO)
    encoder_dir: str = ""  # the reward models' BERT encoder, a HF directory ('' = all-MiniLM-L6-v2)
    n_train: int = 2000  # the split: the first n_train of a seeded permutation train, the rest is held out
    split_seed: int = 0
    sizes: tuple[int, ...] = (500, 1000, 2000)  # training pairs of each point of the data-size curve
    max_length: int = 160  # reward-model rows: [CLS] + prompt tail + reply, in MiniLM pieces
    max_prompt_length: int = 112
    rm_batch: int = 16
    rm_epochs: int = 1
    rm_optim: OptimConfig = OptimConfig(lr=5e-5, min_lr=5e-6, warmup_steps=10, weight_decay=0.01)
    linear_l2: float = 1e-3
    vocab_size: int = 8192
    model: GPT2Config = GPT2Config(vocab_size=8192, block_size=256, n_layer=4, n_head=4, n_embd=256, dropout=0.1)
    sft_optim: OptimConfig = OptimConfig(lr=1e-3, min_lr=1e-4, warmup_steps=50, beta2=0.99, weight_decay=0.1)
    sft_train: TrainConfig = TrainConfig(steps=300, log_every=25, eval_every=100, ckpt_every=100)
    sft_batch: int = 16  # blocks of block_size tokens per SFT step
    dpo_max_prompt_length: int = 192  # of the decoder's block_size
    dpo_beta: float = 0.1
    dpo_batch: int = 16
    dpo_epochs: int = 1
    dpo_optim: OptimConfig = OptimConfig(lr=1e-4, min_lr=1e-5, warmup_steps=10, weight_decay=0.0)
    max_pairs: int = 0  # 0: every pair; else at most this many training and held-out pairs (smoke)
    workdir: str = "runs/hh_rm"

    def __post_init__(self):
        check_fields(self, stage=((lambda v: v in ("rm", "dpo")), "'rm' or 'dpo'"), n_train=at_least(1),
                     max_length=at_least(4), max_prompt_length=at_least(1), rm_batch=at_least(1),
                     rm_epochs=at_least(1), vocab_size=at_least(8), sft_batch=at_least(1),
                     dpo_beta=positive(),
                     dpo_batch=at_least(1), dpo_epochs=at_least(1), max_pairs=at_least(0))
        if not self.sizes or min(self.sizes) < 1:
            raise ValueError(f"sizes must be positive pair counts, got {self.sizes}")


CONFIGS = ("rm", "dpo", "smoke", "smoke_dpo")  # what get_config accepts (every one is built by tests/test_configs.py)


def get_config(arg: str | None = None) -> Config:
    if arg in (None, "", "rm"):
        return Config()
    if arg == "dpo":
        return Config(stage="dpo", workdir="runs/hh_dpo")
    if arg in ("smoke", "smoke_dpo"):
        quick = TrainConfig(steps=2, log_every=1, eval_every=0, ckpt_every=0, progress=False)
        return Config(stage="rm" if arg == "smoke" else "dpo", sizes=(8, 16), max_pairs=24, max_length=48,
                      max_prompt_length=32, rm_batch=4, vocab_size=300, sft_train=quick, sft_batch=4,
                      model=GPT2Config.tiny(vocab_size=300, block_size=64), dpo_max_prompt_length=40,
                      dpo_batch=4, workdir=f"runs/hh_{arg}")
    raise ValueError(f"unknown config {arg!r}; choose {', '.join(CONFIGS)}")


def graph(cfg: Config) -> Stages:
    """The stages: the config fields each one's results depend on and the stages it reads (a row stored under
    other settings is measured again, with every row that reads it)."""
    rm_rows = ("encoder_dir", "max_length", "max_prompt_length")
    return Stages(
        cfg,
        data=Stage(fields=("n_train", "split_seed", "max_pairs")),
        linear=Stage(fields=(*rm_rows, "linear_l2"), reads=("data",)),  # + the number of pairs
        fine_tuned=Stage(fields=(*rm_rows, "rm_batch", "epochs=rm_epochs", "optim=rm_optim"), reads=("data",),
                         resumable=("epochs",)),
        sft=Stage(fields=("model", "vocab_size", "optim=sft_optim", "train=sft_train", "sft_batch"),
                  ignore=("sft_train.progress",), reads=("data",)),
        reference=Stage(fields=("dpo_max_prompt_length",), reads=("sft",)),
        dpo=Stage(fields=("dpo_max_prompt_length", "dpo_beta", "dpo_batch", "epochs=dpo_epochs", "optim=dpo_optim"),
                  reads=("sft",), resumable=("epochs",)),  # + the number of pairs
    )


def length_baselines(held: list[tuple[str, str, str]]) -> dict:
    """Accuracy of a coin (the mean of 1,000 seeded ones, ``random_std`` their spread), of "the longer reply
    wins" and of "the shorter reply wins"."""
    chosen, rejected = (np.array([len(t[k]) for t in held], np.float64) for k in (1, 2))
    coins = np.random.default_rng(0).random((1000, len(held))) < 0.5  # 1,000 seeded coins: their mean and spread
    return {"random": float(coins.mean()), "random_std": float(coins.mean(1).std()),
            "longer": pairwise_accuracy(chosen, rejected),
            "shorter": pairwise_accuracy(-chosen, -rejected)}


def encode(tok: WordPieceTokenizer, triples: list, *, max_length: int, max_prompt_length: int) -> tuple[dict, int]:
    """(pair arrays, number of pairs identical after truncation, which are left out and scored as ties)."""
    prompts, chosen, rejected = zip(*triples)
    pairs, dropped = encode_pairs(lambda text: tok.pieces([text])[0], prompts, chosen, rejected,
                                  max_length=max_length, max_prompt_length=max_prompt_length,
                                  pad_id=tok.pad_id, bos_id=tok.cls_id, drop_invalid=True)
    return pairs, len(dropped)


def held_out_accuracy(scores: tuple[np.ndarray, np.ndarray], ties: int) -> dict:
    """Pairwise accuracy of (chosen, rejected) scores, the ``ties`` pairs left out by truncation counted 0.5."""
    n = len(scores[0])
    return {"accuracy": (pairwise_accuracy(*scores) * n + 0.5 * ties) / (n + ties), "held_out": n + ties}


def curve(cfg: Config, results: StageResults, name: str, n_fit: int, ties: int, fit_and_score) -> None:
    """``fit_and_score(n, settings) -> (chosen scores, rejected scores)`` on the held-out pairs, for each size;
    each point stored under its stage's settings with ``pairs=n``."""
    for n in sorted({min(n, n_fit) for n in cfg.sizes}):
        settings = graph(cfg).settings(name, pairs=n)
        results.get(f"{name}_{n}", functools.partial(_point, fit_and_score, n, settings, ties), settings)


def _point(fit_and_score, n: int, settings: Settings, ties: int) -> dict:
    return {"pairs": n, **held_out_accuracy(fit_and_score(n, settings), ties)}


def encoder_dir(cfg: Config) -> Path:
    return Path(cfg.encoder_dir) if cfg.encoder_dir else minilm_dir()


@nnx.jit
def _embed(encoder, tokens, mask):
    return normalized_mean(encoder(tokens, attention_mask=mask)[0], mask)


def embeddings(encoder, pairs: dict) -> dict[str, np.ndarray]:
    """MiniLM's normalised mean embedding (N, D) of every chosen and rejected row."""
    return {side: by_length(lambda t, m: _embed(encoder, t, m), [pairs[side], pairs[f"{side}_mask"]], 64)
            for side in ("chosen", "rejected")}


def linear_reward(cfg: Config, fit: dict, held: dict, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A reward linear in the frozen embedding: logistic regression on +-(e_chosen - e_rejected), symmetric,
    so the bias is 0 and P(chosen wins) = sigma(w . (e_w - e_l)): Bradley-Terry with r = w . e."""
    d = fit["chosen"][:n] - fit["rejected"][:n]
    params = fit_logistic_regression(np.concatenate([d, -d]), np.repeat([1, 0], len(d)), l2=cfg.linear_l2)
    score = lambda e: predict_proba(params, e)[:, 1]  # noqa: E731  (monotone in w . e: the same ranking)
    return score(held["chosen"] - held["rejected"]), score(held["rejected"] - held["chosen"])


def pairs_train(cfg: Config, seed: int) -> TrainConfig:
    """How the reward models and DPO train on pairs: logged every 10 steps, checkpointed every 50."""
    return TrainConfig(steps=0, log_every=10, eval_every=0, ckpt_every=50, progress=cfg.sft_train.progress, seed=seed)


def fine_tuned_reward(cfg: Config, fit: dict, held: dict, n: int, settings: Settings
                      ) -> tuple[np.ndarray, np.ndarray]:
    rm = train_on_pairs(RewardModel(load_hf_bert(encoder_dir(cfg)), pooling="mean", rngs=nnx.Rngs(2)), reward_loss,
                        {k: v[:n] for k, v in fit.items()}, epochs=cfg.rm_epochs, batch_size=cfg.rm_batch,
                        optim_cfg=cfg.rm_optim, workdir=Path(cfg.workdir, f"reward_model_{n}"), config=settings,
                        multiple=16, train_cfg=pairs_train(cfg, seed=1))
    return tuple(reward_scores(rm, held[s], held[f"{s}_mask"], batch_size=32) for s in ("chosen", "rejected"))


def run_rm(cfg: Config, results: StageResults, train_set: list, held_set: list) -> None:
    tok = WordPieceTokenizer.from_pretrained(encoder_dir(cfg))
    kw = dict(max_length=cfg.max_length, max_prompt_length=cfg.max_prompt_length)
    (fit, _), (held, ties) = encode(tok, train_set, **kw), encode(tok, held_set, **kw)
    frozen = {}  # the embeddings, computed when a point of the linear curve first needs them

    def linear(n, settings):
        if not frozen:
            t0, encoder = time.perf_counter(), load_hf_bert(encoder_dir(cfg), dropout=0.0)
            frozen.update(fit=embeddings(encoder, fit), held=embeddings(encoder, held))
            print(f"{cfg.encoder_dir or 'MiniLM'} embeddings of {2 * (len(fit['chosen']) + len(held['chosen']))} rows: "
                  f"{time.perf_counter() - t0:.0f} s")
        return linear_reward(cfg, frozen["fit"], frozen["held"], n)

    n_fit = len(fit["chosen"])
    curve(cfg, results, "linear", n_fit, ties, linear)
    curve(cfg, results, "fine_tuned", n_fit, ties, functools.partial(fine_tuned_reward, cfg, fit, held))


def dialogues(tok: WordPieceTokenizer, triples: list, seed: int | None = None) -> np.ndarray:
    """``[CLS] prompt + chosen reply [SEP]`` of every pair (in a seeded order if ``seed``), one stream."""
    return delimited_stream(tok.pieces([p + c for p, c, _ in triples]), tok.cls_id, tok.sep_id, seed)


def train_sft(cfg: Config, tok: WordPieceTokenizer, train_set: list, held_set: list) -> GPT2:
    train_ids = dialogues(tok, train_set, cfg.sft_train.seed)
    print(f"SFT on {len(train_ids):,} tokens of {len(train_set):,} chosen dialogues, vocabulary {tok.vocab_size}")
    held_ids, context = dialogues(tok, held_set), cfg.model.block_size
    return train_on_stream(dataclasses.replace(cfg.model, vocab_size=tok.vocab_size), train_ids,
                           batch_size=cfg.sft_batch, train_cfg=cfg.sft_train, optim_cfg=cfg.sft_optim,
                           workdir=Path(cfg.workdir, "sft"), config=graph(cfg).settings("sft"),
                           eval_fn=lambda m: {"val_loss": perplexity(m, held_ids, context=context)["loss"]})


def dpo_reward(cfg: Config, sft: GPT2, fit: dict, held: dict, n: int, settings: Settings
               ) -> tuple[np.ndarray, np.ndarray]:
    """The implicit reward beta (log pi - log pi_ref) of the chosen and rejected held-out replies after DPO
    on the first n training pairs."""
    refs = reference_logprobs(sft, fit, Path(cfg.workdir, "reference_logprobs.npz"))
    rows = {**{k: v[:n] for k, v in fit.items()}, **{k: v[:n] for k, v in refs.items()}}
    policy = train_on_pairs(without_dropout(sft), dpo_objective(beta=cfg.dpo_beta), rows, epochs=cfg.dpo_epochs,
                            batch_size=cfg.dpo_batch, optim_cfg=cfg.dpo_optim, workdir=Path(cfg.workdir, f"dpo_{n}"),
                            config=settings, multiple=16, train_cfg=pairs_train(cfg, seed=3))
    ref_held = reference_logprobs(sft, held, Path(cfg.workdir, "reference_logprobs_held.npz"))
    now = reference_logprobs(policy, held)
    return tuple(cfg.dpo_beta * (now[k] - ref_held[k]) for k in ("ref_chosen", "ref_rejected"))


def run_dpo(cfg: Config, results: StageResults, train_set: list, held_set: list) -> None:
    texts = [p + c for p, c, _ in train_set] + [p + r for p, _, r in train_set]
    tok = WordPieceTokenizer.trained_once(Path(cfg.workdir, "tokenizer"), texts, cfg.vocab_size,
                                          max_length=cfg.model.block_size)
    kw = dict(max_length=cfg.model.block_size, max_prompt_length=cfg.dpo_max_prompt_length)
    (fit, _), (held, ties) = encode(tok, train_set, **kw), encode(tok, held_set, **kw)
    t0 = time.perf_counter()
    sft = train_sft(cfg, tok, train_set, held_set)  # (a finished run is read back)
    stages = graph(cfg)
    if not results.has("sft", stages.settings("sft")):
        val = perplexity(sft, dialogues(tok, held_set), context=sft.config.block_size)["loss"]
        results.put("sft", {"val_loss": val, "seconds": round(time.perf_counter() - t0, 1)}, stages.settings("sft"))
    results.get("reference", lambda: held_out_accuracy(tuple(reference_logprobs(
        sft, held, Path(cfg.workdir, "reference_logprobs_held.npz")).values()), ties), stages.settings("reference"))
    curve(cfg, results, "dpo", len(fit["chosen"]), ties, functools.partial(dpo_reward, cfg, sft, fit, held))


def run(cfg: Config) -> dict:
    return run_resumable(cfg.workdir, lambda: run_stages(cfg))


def run_stages(cfg: Config) -> dict:
    t0 = time.perf_counter()
    results = StageResults(cfg.workdir)
    train_set, held_set, left_out = hh_split(cfg.n_train, cfg.split_seed)
    if cfg.max_pairs:
        train_set, held_set = train_set[:cfg.max_pairs], held_set[:cfg.max_pairs]
    print(f"HH-RLHF harmless-base: {len(train_set)} training pairs, {len(held_set)} held out, {left_out} left out")
    baselines, data = length_baselines(held_set), graph(cfg).settings("data")
    for name in ("random", "longer", "shorter"):  # (cheap: measured at every run, stored with the split's settings)
        row = {"accuracy": baselines[name], "held_out": len(held_set)}
        results.put(name, {**row, "std": baselines["random_std"]} if name == "random" else row, data)
    (run_rm if cfg.stage == "rm" else run_dpo)(cfg, results, train_set, held_set)
    rows = [[name, row.get("pairs", "-"), f"{row['accuracy']:.3f}", row.get("seconds", "-")]
            for name, row in results.data.items() if "accuracy" in row]
    Path(cfg.workdir, "results.md").write_text(markdown_table(["scorer", "training pairs", "held-out accuracy",
                                                               "seconds"], rows) + "\n")
    return write_summary(cfg.workdir, {"status": "finished", "wall_seconds": round(time.perf_counter() - t0, 1),
                                       "train_pairs": len(train_set), "left_out": left_out, **results.data})
