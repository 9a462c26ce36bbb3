"""``nlp-jax classify``: fine-tune a BERT classifier on your labelled texts (a CSV, TSV or JSONL file with
named columns), its validation accuracy reported, exported for ``nlp-jax predict`` and ``transformers``.

    nlp-jax classify reviews.csv --valid reviews_dev.csv --text-column text --label-column label --out runs/clf
    nlp-jax classify pairs.jsonl --text-column premise --pair-column hypothesis --label-column label --out runs/nli
    nlp-jax classify reviews.csv --init scratch --set model.n_layer=2 --set vocab_size=4000 --out runs/clf_small

``--init``: ``minilm`` (all-MiniLM-L6-v2, installed with the package), a Hugging Face BERT directory (ours,
e.g. ``runs/bert_pretrain/export``, or one downloaded), or ``scratch`` (the ``model`` shape, random, with a
WordPiece vocabulary of ``vocab_size`` learnt from the training texts). The labels are the training file's
distinct values (as text, sorted; numbers in numeric order); without ``--valid`` a seeded tenth of the rows
is held out. Training runs ``epochs`` passes through the one loop (checkpoints, resume, ``loss.png``), evaluated
every ``train.eval_every`` steps and at the end; the checkpoint of best validation accuracy is the one
reported (accuracy and macro-F1) and exported. A text longer than
``max_length`` pieces is truncated (the longest of a pair first) and counted in the summary, never silently.

Output in ``--out``: ``metrics.jsonl``, ``loss.png``, ``summary.json`` and ``export/``, a HF BERT directory
with the classifier head and the labels (``transformers.BertForSequenceClassification`` gives the same logits
with ``pooling='cls'``, the default; ``mean`` pooling has no HF form and is read by this package alone).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import ClassVar

import jax.numpy as jnp
import numpy as np
from flax import nnx

from nlp_jax.cli import add_run_options, launch_training
from nlp_jax.data.files import iter_records
from nlp_jax.data.pretraining import SentenceBatches
from nlp_jax.data.wordpiece import WordPieceTokenizer
from nlp_jax.eval.sentences import batched, classifier_logits
from nlp_jax.models.bert import BertClassifier, BertConfig
from nlp_jax.models.bert_hf import load_hf_bert, minilm_dir, save_hf_bert
from nlp_jax.objectives import classification_loss
from nlp_jax.train.config import OptimConfig, TrainConfig
from nlp_jax.train.loop import load_trained, train
from nlp_jax.train.records import write_summary
from nlp_jax.validate import at_least, check_fields, in_unit


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    RESUMABLE: ClassVar[tuple[str, ...]] = ("epochs",)  # besides optim and train.steps: a resume may change it
    train_file: str
    valid_file: str = ""  # '' holds out valid_fraction of the training rows (seeded by train.seed)
    valid_fraction: float = 0.1
    text_column: str = "text"
    pair_column: str = ""  # a second text per row (sentence-pair tasks); '' for none
    label_column: str = "label"
    init: str = "minilm"  # 'minilm', 'scratch' or a HF BERT directory
    model: BertConfig = BertConfig.mini()  # init='scratch': the shape (the vocabulary: vocab_size)
    vocab_size: int = 8192  # init='scratch': WordPiece pieces learnt from the training texts
    pooling: str = "cls"  # 'cls' (the pooler on [CLS], as HF) or 'mean'
    dropout: float = 0.1
    epochs: int = 3
    batch_size: int = 32
    max_length: int = 128  # pieces a row, [CLS] and [SEP] included
    optim: OptimConfig = OptimConfig(lr=5e-5, min_lr=5e-7, warmup_steps=100, weight_decay=0.01, beta2=0.999)
    train: TrainConfig = TrainConfig(steps=0, log_every=50, eval_every=500, ckpt_every=500)
    workdir: str = "runs/classify"

    def __post_init__(self):
        check_fields(self, valid_fraction=in_unit(), vocab_size=at_least(8), epochs=at_least(1),
                     batch_size=at_least(1), max_length=at_least(3),
                     pooling=((lambda v: v in ("cls", "mean")), "'cls' or 'mean'"))
        if not self.train_file:
            raise ValueError("train_file: name the training table (CSV, TSV or JSONL)")
        if not self.valid_file and not 0.0 < self.valid_fraction < 1.0:
            raise ValueError(f"valid_fraction={self.valid_fraction}: without a validation file, hold out a "
                             "fraction of the training rows strictly between 0 and 1")

    @property
    def columns(self) -> list[str]:
        return [self.text_column, *([self.pair_column] if self.pair_column else []), self.label_column]


def parser() -> argparse.ArgumentParser:
    d = Config(train_file="x")
    p = argparse.ArgumentParser(prog="nlp-jax classify", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("train_file", help="the labelled training rows: .csv, .tsv (a header row first) or .jsonl")
    p.add_argument("--out", required=True, help="the run directory (created; a rerun resumes it)")
    p.add_argument("--valid", default="", help="validation rows, the same columns (default: a tenth held out)")
    p.add_argument("--text-column", default=d.text_column, help=f"(default: {d.text_column})")
    p.add_argument("--pair-column", default="", help="a second text a row, for pair tasks (default: none)")
    p.add_argument("--label-column", default=d.label_column, help=f"(default: {d.label_column})")
    p.add_argument("--init", default=d.init, help=f"minilm, scratch or a HF BERT directory (default: {d.init})")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"(default: {d.epochs})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"(default: {d.batch_size})")
    p.add_argument("--max-length", type=int, default=d.max_length, help=f"pieces a row (default: {d.max_length})")
    p.add_argument("--lr", type=float, default=d.optim.lr, help=f"peak learning rate (default: {d.optim.lr})")
    p.add_argument("--seed", type=int, default=d.train.seed, help=f"(default: {d.train.seed})")
    add_run_options(p, "pooling=mean, train.steps=200, model.n_layer=2")
    return p


def config_from_args(a: argparse.Namespace) -> Config:
    cfg = Config(train_file=a.train_file, valid_file=a.valid, text_column=a.text_column, pair_column=a.pair_column,
                 label_column=a.label_column, init=a.init, epochs=a.epochs, batch_size=a.batch_size,
                 max_length=a.max_length, workdir=a.out)
    return dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, lr=a.lr),
                               train=dataclasses.replace(cfg.train, seed=a.seed))


def main(argv: list[str] | None = None) -> dict:
    p = parser()
    a = p.parse_args(argv)
    return launch_training(p, a, [a.train_file, a.valid], config_from_args, sys.modules[__name__])


@dataclasses.dataclass
class Rows:
    texts: list[str]
    pairs: list[str] | None
    labels: list[str]


def read_rows(cfg: Config, path: str) -> Rows:
    """The file's texts (and second texts) and labels, streamed (``data.files.iter_records``): memory holds
    these strings alone."""
    rows = Rows([], [] if cfg.pair_column else None, [])
    for i, r in enumerate(iter_records(path, cfg.columns), start=1):
        for c in cfg.columns[:-1]:
            if not isinstance(r[c], str):
                raise ValueError(f"{path}: row {i}'s {c!r} is {type(r[c]).__name__} {r[c]!r}, not text")
        rows.texts.append(r[cfg.text_column])
        if cfg.pair_column:
            rows.pairs.append(r[cfg.pair_column])
        rows.labels.append(str(r[cfg.label_column]).strip())
    if not rows.texts:
        raise ValueError(f"{path}: no rows")
    return rows


def splits(cfg: Config) -> tuple[Rows, Rows, list[str]]:
    """(training rows, validation rows, the label names): a validation label that training never saw is a
    ValueError naming it, its row and the labels there are."""
    rows = read_rows(cfg, cfg.train_file)
    if cfg.valid_file:
        valid, source = read_rows(cfg, cfg.valid_file), cfg.valid_file
    else:
        order = np.random.default_rng(cfg.train.seed).permutation(len(rows.texts))
        n_valid = max(1, int(round(len(order) * cfg.valid_fraction)))
        pick = lambda idx: Rows([rows.texts[i] for i in idx], None if rows.pairs is None  # noqa: E731
                                else [rows.pairs[i] for i in idx], [rows.labels[i] for i in idx])
        rows, valid, source = pick(np.sort(order[n_valid:])), pick(np.sort(order[:n_valid])), "the held-out rows"
    names = sorted(set(rows.labels), key=lambda s: (0, float(s), s) if _is_number(s) else (1, 0.0, s))
    if len(names) < 2:
        raise ValueError(f"{cfg.train_file}: column {cfg.label_column!r} has {len(names)} distinct label(s) "
                         f"({', '.join(names)}); a classifier needs at least 2")
    unseen = [(i, y) for i, y in enumerate(valid.labels) if y not in names]
    if unseen:
        i, y = unseen[0]
        raise ValueError(f"{source}: label {y!r} (row {i + 1}; {len(unseen)} rows in all) never occurs in "
                         f"{cfg.train_file}, whose labels are {', '.join(names)}: a model cannot learn it")
    return rows, valid, names


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def resolve_config(cfg: Config) -> Config:
    return cfg if cfg.train.steps else with_steps(cfg, len(splits(cfg)[0].texts))


def with_steps(cfg: Config, n_train: int) -> Config:
    """``train.steps`` 0 means ``epochs`` passes over the ``n_train`` training rows."""
    if cfg.train.steps:
        return cfg
    steps = cfg.epochs * max(1, n_train // cfg.batch_size)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=steps))


def truncated(tok: WordPieceTokenizer, rows: Rows, max_length: int) -> int:
    """How many rows exceed ``max_length`` pieces with their specials ([CLS] a [SEP] (b [SEP])), tokenised
    10,000 rows at a time (a million rows' pieces at once would hold gigabytes)."""
    cut = 0
    for i in range(0, len(rows.texts), 10_000):
        length = np.asarray([len(p) + 2 for p in tok.pieces(rows.texts[i:i + 10_000])])
        if rows.pairs is not None:
            length += np.asarray([len(p) + 1 for p in tok.pieces(rows.pairs[i:i + 10_000])])
        cut += int((length > max_length).sum())
    return cut


def scores(model, tok: WordPieceTokenizer, rows: Rows, names: list[str], max_length: int) -> dict:
    """Accuracy and macro-F1 (the mean over labels of 2 TP / (2 TP + FP + FN), a label never predicted nor
    present counting 0) of ``model`` on ``rows``."""
    pred = batched(model, tok, rows.texts, lambda logits, b: jnp.argmax(logits, -1), max_length=max_length,
                   forward=classifier_logits, pairs=rows.pairs)
    gold = np.asarray([names.index(y) for y in rows.labels])
    f1 = [2 * ((pred == k) & (gold == k)).sum() / max(1, (pred == k).sum() + (gold == k).sum())
          for k in range(len(names))]
    return {"valid_accuracy": float((pred == gold).mean()), "valid_macro_f1": float(np.mean(f1))}


def _model_and_tokenizer(cfg: Config, names: list[str], texts: list[str]):
    if cfg.init == "scratch":
        tok = WordPieceTokenizer.trained_once(Path(cfg.workdir, "tokenizer"), texts, cfg.vocab_size,
                                              max_length=cfg.max_length)
        shape = dataclasses.replace(cfg.model, vocab_size=tok.vocab_size, dropout=cfg.dropout, attn_dropout=None,
                                    block_size=max(cfg.model.block_size, cfg.max_length))
        return BertClassifier(shape, num_labels=len(names), pooling=cfg.pooling, rngs=nnx.Rngs(cfg.train.seed)), tok
    source = minilm_dir() if cfg.init == "minilm" else Path(cfg.init)
    if not (source / "config.json").is_file():
        raise FileNotFoundError(f"init={cfg.init!r}: {source} is not a HF BERT directory (no config.json); use "
                                "minilm, scratch or a directory with config.json, model.safetensors and a tokenizer")
    model = load_hf_bert(source, head="classifier", num_labels=len(names), pooling=cfg.pooling, seed=cfg.train.seed,
                         dropout=cfg.dropout, attn_dropout=None)
    if cfg.max_length > model.config.block_size:
        raise ValueError(f"max_length={cfg.max_length} exceeds {source}'s {model.config.block_size} positions")
    return model, WordPieceTokenizer.from_pretrained(source, max_length=model.config.block_size)


def run(cfg: Config) -> dict:
    t0 = time.perf_counter()
    rows, valid, names = splits(cfg)
    cfg = with_steps(cfg, len(rows.texts))
    model, tok = _model_and_tokenizer(cfg, names, rows.texts + (rows.pairs or []))
    cut = {"train": truncated(tok, rows, cfg.max_length), "valid": truncated(tok, valid, cfg.max_length)}
    counts = {y: rows.labels.count(y) for y in names}
    print(f"{len(rows.texts):,} training and {len(valid.texts):,} validation rows; labels {counts}; rows longer than "
          f"{cfg.max_length} pieces, truncated: {cut['train']:,} / {cut['valid']:,}")
    source = SentenceBatches(rows.texts, np.asarray([names.index(y) for y in rows.labels]), tok, cfg.batch_size,
                             cfg.max_length, seed=cfg.train.seed, pairs=rows.pairs)
    model, result = train(model, classification_loss, source, train_cfg=cfg.train, optim_cfg=cfg.optim,
                          workdir=cfg.workdir, eval_fn=lambda m: scores(m, tok, valid, names, cfg.max_length),
                          best_metric="valid_accuracy", best_mode="max", config=cfg)
    summary = {**result.summary(), "init": cfg.init, "labels": names, "train_rows": len(rows.texts),
               "valid_rows": len(valid.texts), "label_counts": counts, "truncated_rows": cut,
               "best_valid_accuracy": result.best}
    if result.interrupted:
        return write_summary(cfg.workdir, summary)
    model, meta = load_trained(model, classification_loss, cfg.optim, cfg.workdir)  # the best evaluation's
    final = {**scores(model, tok, valid, names, cfg.max_length), "best_step": meta["step"]}
    export = save_hf_bert(model, Path(cfg.workdir, "export"), labels=names, tokenizer=tok)
    print(f"validation accuracy {final['valid_accuracy']:.4f}, macro-F1 {final['valid_macro_f1']:.4f}; exported to "
          f"{export}:\n  nlp-jax predict {export} <table or text file>")
    return write_summary(cfg.workdir, {**summary, **final, "export": str(export),
                                       "wall_seconds": round(time.perf_counter() - t0, 1)})
