"""Fine-tune BERT on SST-2 from [CLS] (or the masked mean), from three initialisations.

Launch:  make bert-sst2 [C=<config>]   (python -m nlp_jax.run experiments/bert_sst2.py:<config>)

Configs: ``minilm`` (all-MiniLM-L6-v2's encoder, pooler [CLS]), ``minilm_mean`` (the same, masked-mean
pooling), ``ours`` (the encoder of ``make bert-pretrain``, from ``runs/bert_pretrain/export``), ``scratch``
(the same shape and vocabulary, random weights: no pretraining), ``ours_tapt`` (from ``bert_pretrain.py:tapt``,
which continues ``ours``'s pretraining on SST-2's unlabelled text; its baseline is ``scratch``), ``ours_corpus`` and
``scratch_corpus`` (the same pair for ``bert_pretrain.py:corpus``), ``ours_ptb_sst`` and ``scratch_ptb_sst``
(for ``bert_pretrain.py:ptb_sst2``), ``ours_ptb_sst_more`` (for ``:ptb_sst2_more``), and ``frozen`` (MiniLM's
frozen sentence embeddings + logistic regression: the baseline; ``frozen_ptb_sst`` and ``frozen_random_ptb_sst``
probe ``ptb_sst2``'s encoder and the same shape with random weights, ``frozen_ptb_sst_more`` ``ptb_sst2_more``'s
encoder). One epoch over the 67,349 training phrases, batch 32,
AdamW with warmup and cosine decay; accuracy on the 872 dev sentences. The classifier is exported with its
tokenizer to ``<workdir>/export`` (``nlp-jax sentences classify <workdir>/export file.txt``).
Results (2026-12-01, a 2-core AMD EPYC with AVX2), SST-2 dev accuracy: ``minilm`` **88.76%** (2,669 s),
``minilm_mean`` 89.45%, ``ours`` 80.50%, ``scratch`` 79.36%, ``frozen`` 80.73%. Fine-tuning from the
study's other pretrainings: ``studies/bert_pretraining``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nlp_jax.data.pretraining import SentenceBatches
from nlp_jax.data.sst2 import read_sst2
from nlp_jax.data.wordpiece import WordPieceTokenizer
from nlp_jax.eval.sentences import batched, classifier_logits, embed
from nlp_jax.models.bert import BertClassifier, BertConfig
from nlp_jax.models.bert_hf import config_from_hf, load_hf_bert, minilm_dir, save_hf_bert
from nlp_jax.models.logistic import fit_logistic_regression, predict_proba
from nlp_jax.objectives import classification_loss
from nlp_jax.train.config import OptimConfig, TrainConfig
from nlp_jax.train.loop import train
from nlp_jax.train.records import write_summary
from nlp_jax.validate import at_least, check_fields

LABELS = ["negative", "positive"]
INITS = ("minilm", "ours", "scratch", "frozen")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    RESUMABLE: ClassVar[tuple[str, ...]] = ("epochs",)  # besides optim and train.steps: a resume may change it
    init: str = "minilm"  # 'minilm', 'ours' (our pretraining), 'scratch' (ours's shape, random), 'frozen'
    init_dir: str = ""  # the HF directory to start from ('' = MiniLM, or runs/bert_pretrain/export)
    pooling: str = "cls"  # 'cls' (the pooler on [CLS]) or 'mean' (masked mean of the last layer)
    frozen_weights: str = "trained"  # init='frozen': the checkpoint's weights, or 'random' (its shape, seeded)
    model: BertConfig = BertConfig.mini()  # init='scratch': the shape (its vocabulary: init_dir's tokenizer)
    dropout: float = 0.1
    optim: OptimConfig = OptimConfig(lr=1e-4, min_lr=1e-6, warmup_steps=200, weight_decay=0.01, beta2=0.999)
    train: TrainConfig = TrainConfig(steps=0, log_every=50, eval_every=500, ckpt_every=500)
    epochs: int = 1  # passes over the training phrases (used when train.steps is 0)
    batch_size: int = 32
    max_length: int = 64  # WordPiece pieces per sentence, [CLS] and [SEP] included
    max_train: int = 0  # 0: all training phrases; else the first ones (smoke)
    max_dev: int = 0  # 0: all 872 dev sentences; else the first ones (smoke)
    workdir: str = "runs/bert_sst2"

    def __post_init__(self):
        check_fields(self, init=((lambda v: v in INITS), f"one of {INITS}"),
                     pooling=((lambda v: v in ("cls", "mean")), "'cls' or 'mean'"), epochs=at_least(1),
                     frozen_weights=((lambda v: v in ("trained", "random")), "'trained' or 'random'"),
                     batch_size=at_least(1), max_length=at_least(3), max_train=at_least(0),
                     max_dev=at_least(0))
        if self.frozen_weights == "random" and self.init != "frozen":
            raise ValueError(f"frozen_weights='random' needs init='frozen', not init={self.init!r} (to fine-tune "
                             f"from random weights, use init='scratch')")

    @property
    def source_dir(self) -> Path:
        if self.init_dir:
            return Path(self.init_dir)
        return minilm_dir() if self.init in ("minilm", "frozen") else Path("runs/bert_pretrain/export")


SMALL = OptimConfig(lr=3e-4, min_lr=3e-6, warmup_steps=200, weight_decay=0.01, beta2=0.999)  # ours and scratch


def _configs() -> dict[str, Config]:
    return {
        "minilm": Config(),
        "minilm_mean": Config(pooling="mean", workdir="runs/bert_sst2_minilm_mean"),
        "ours": Config(init="ours", workdir="runs/bert_sst2_ours", optim=SMALL),
        "scratch": Config(init="scratch", workdir="runs/bert_sst2_scratch", optim=SMALL),
        "frozen": Config(init="frozen", workdir="runs/bert_sst2_frozen"),
        "smoke": Config(max_train=64, max_dev=16, batch_size=8, workdir="runs/bert_sst2_smoke",
                        train=TrainConfig(steps=2, log_every=1, eval_every=0, ckpt_every=0, progress=False)),
    }


CONFIGS = tuple(_configs())  # what get_config accepts (every one is built by tests/test_configs.py)


def get_config(arg: str | None = None) -> Config:
    arg = arg or "minilm"
    if arg not in CONFIGS:
        raise ValueError(f"unknown config {arg!r}; choose {', '.join(CONFIGS)} (variants: studies/bert_pretraining)")
    return _configs()[arg]


def _model(cfg: Config) -> BertClassifier:
    d = cfg.source_dir
    if not (d / "config.json").exists():
        hint = (" (run the pretraining that exports it first: `make bert-pretrain`, or the study config that "
                "pretrains it: studies/bert_pretraining)" if cfg.init in ("ours", "scratch") else "")
        raise FileNotFoundError(f"no BERT checkpoint in {d}{hint}")
    if cfg.init == "scratch":  # the configured shape, the vocabulary of the pretraining it is the baseline of
        vocab = WordPieceTokenizer.from_pretrained(d).vocab_size
        shape = dataclasses.replace(cfg.model, vocab_size=vocab, dropout=cfg.dropout, attn_dropout=None)
        theirs = config_from_hf(json.loads((d / "config.json").read_text()), str(d / "config.json"))
        fields = ("n_layer", "n_embd", "n_head", "n_inner", "block_size")
        differ = {f: (getattr(theirs, f), getattr(shape, f)) for f in fields if getattr(theirs, f) != getattr(shape, f)}
        if differ:
            raise ValueError(f"model= has another shape than the pretraining in {d} it is the baseline of "
                             f"(checkpoint, config): {differ}; set model= to the checkpoint's shape")
        return BertClassifier(shape, num_labels=2, pooling=cfg.pooling, rngs=nnx.Rngs(cfg.train.seed))
    model = load_hf_bert(d, head="classifier", num_labels=2, pooling=cfg.pooling, seed=cfg.train.seed,
                         dropout=cfg.dropout, attn_dropout=None)  # None: cfg.dropout on attention too
    print(f"initialised from {d}; fresh (untrained) heads: {', '.join(model.fresh_heads) or 'none'}")
    return model


def accuracy(model, tok: WordPieceTokenizer, texts: list[str], labels: np.ndarray, max_length: int) -> float:
    preds = batched(model, tok, texts, lambda logits, b: jnp.argmax(logits, -1), max_length=max_length,
                    forward=classifier_logits)
    return float((preds == labels).mean())


def _source(cfg: Config, tok: WordPieceTokenizer) -> SentenceBatches:
    texts, labels = read_sst2("train")
    n = cfg.max_train or len(texts)
    return SentenceBatches(texts[:n], labels[:n], tok, cfg.batch_size, cfg.max_length, seed=cfg.train.seed)


def dev_split(cfg: Config) -> tuple[list[str], np.ndarray]:
    texts, labels = read_sst2("dev")
    n = cfg.max_dev or len(texts)
    return texts[:n], labels[:n]


def resolve_config(cfg: Config) -> Config:
    n = cfg.max_train or len(read_sst2("train")[0])
    steps = cfg.train.steps or cfg.epochs * (n // cfg.batch_size)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=steps))


def run_frozen(cfg: Config) -> dict:
    """A checkpoint's (MiniLM's by default) frozen normalised mean embeddings, then logistic regression: no
    fine-tuning. ``frozen_weights='random'`` embeds with the checkpoint's shape and tokenizer, random weights."""
    texts, labels = read_sst2("train")
    n = cfg.max_train or len(texts)
    dev_texts, dev_labels = dev_split(cfg)
    t0 = time.perf_counter()
    seed = cfg.train.seed if cfg.frozen_weights == "random" else None
    x = embed(cfg.source_dir, texts[:n] + dev_texts, seed)  # one model load for both
    x, x_dev = x[:n], x[n:]
    t_embed = time.perf_counter() - t0
    p = fit_logistic_regression(x, labels[:n])
    dev_acc = float((np.argmax(predict_proba(p, x_dev), -1) == dev_labels).mean())
    return write_summary(cfg.workdir, {"status": "finished", "init": "frozen", "weights": cfg.frozen_weights,
                                       "source": str(cfg.source_dir), "dev_accuracy": dev_acc,
                                       "embed_seconds": round(t_embed, 1),
                                       "wall_seconds": round(time.perf_counter() - t0, 1)})


def run(cfg: Config) -> dict:
    if cfg.init == "frozen":
        return run_frozen(cfg)
    cfg = resolve_config(cfg)
    model = _model(cfg)
    tok = WordPieceTokenizer.from_pretrained(cfg.source_dir, max_length=model.config.block_size)
    dev_texts, dev_labels = dev_split(cfg)
    n_params = sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    print(f"{cfg.train.steps} steps of {cfg.batch_size}; {n_params:,} parameters; pooling {cfg.pooling}")

    def eval_fn(m):
        return {"dev_accuracy": accuracy(m, tok, dev_texts, dev_labels, cfg.max_length)}

    t0 = time.perf_counter()
    model, result = train(model, classification_loss, _source(cfg, tok), train_cfg=cfg.train, optim_cfg=cfg.optim,
                          workdir=cfg.workdir, eval_fn=eval_fn, best_metric="dev_accuracy", best_mode="max",
                          config=cfg)
    summary = {**result.summary(), "init": cfg.init, "pooling": cfg.pooling, "parameters": n_params,
               "wall_seconds": round(time.perf_counter() - t0, 1), "best_dev_accuracy": result.best}
    if result.interrupted:
        return write_summary(cfg.workdir, summary)
    export = save_hf_bert(model, Path(cfg.workdir, "export"), labels=LABELS, tokenizer=tok)
    print(f"classifier exported to {export}: nlp-jax sentences classify {export} <file>")
    return write_summary(cfg.workdir, {**summary, "dev_accuracy": eval_fn(model)["dev_accuracy"]})
