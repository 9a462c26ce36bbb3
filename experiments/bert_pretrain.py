"""Pretrain a small BERT from scratch with MLM + NSP on Penn Treebank (Devlin et al. 2019, section 3.1).

Launch:  make bert-pretrain   (python -m nlp_jax.run experiments/bert_pretrain.py; :smoke for tests)

PTB's training text is one sentence a line in reading order, so consecutive lines are true next-sentence
pairs; the validation split is the held-out text. A WordPiece vocabulary (8,192) is trained on the training
text (``<unk>`` is read as [UNK]) and kept in ``<workdir>/tokenizer``; the model is BERT-Mini's shape (4
layers, 256 wide, 4 heads, MLP 1024) with sequence pairs up to 64 pieces, 15% masked (80/10/10), the MLM
head on at most 16 positions a row. The ``corpus`` config pretrains the same model on en_corpus instead
(6.6M words of mixed English, a fifth of it movie reviews, without punctuation or sentence boundaries:
each document is cut into chunks of 20 words, and a true next chunk never crosses a document; every 100th
document is held out), with a quarter of each batch SST-2's unlabelled training sentences, a vocabulary of
both texts and no dropout (the model underfits). ``corpus24`` keeps that vocabulary (copy
``runs/bert_pretrain_corpus/tokenizer`` into its workdir first) but fills the batch with en_corpus pairs of
24-word chunks and no short SST-2 rows (about 540 masked pieces a step instead of 380), with warmup 400
and 4,500 steps. ``ptb_sst2`` is the default recipe
(PTB, dropout 0.1) with a quarter of each batch SST-2's unlabelled sentences and a vocabulary of both texts,
for 2,500 steps. The ``tapt`` config (task-adaptive pretraining, Gururangan
et al. 2020) continues from the default run's export (its weights, heads and vocabulary) with three quarters
of each batch SST-2's training sentences, unlabelled, for the MLM loss only (``sst2_rate`` without
``init_dir`` instead trains from scratch with a vocabulary of both texts). Reports held-out MLM and NSP
accuracy; exports the model with its tokenizer in Hugging Face format to ``<workdir>/export`` (what
``experiments/bert_sst2.py:ours`` and ``:ours_corpus`` read).
Result (``default``, 2026-12-01, a 2-core AMD EPYC with AVX2): after 4,000 steps held-out MLM accuracy
**32.4%** (loss 4.342), NSP **68.4%**; about 90 minutes alone. Variants (tapt, corpus, ptb_sst2, ...):
``studies/bert_pretraining``.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from nlp_jax.data.pretraining import PretrainingBatches, document_chunks
from nlp_jax.data.root import read_text
from nlp_jax.data.sst2 import read_sst2
from nlp_jax.data.wordpiece import WordPieceTokenizer
from nlp_jax.models.bert import BertConfig, BertForPreTraining
from nlp_jax.models.bert_hf import config_to_hf, load_hf_bert, save_hf_bert
from nlp_jax.objectives import pretraining_loss
from nlp_jax.train.config import OptimConfig, TrainConfig
from nlp_jax.train.loop import train
from nlp_jax.train.metrics import plot_losses
from nlp_jax.train.records import write_summary
from nlp_jax.validate import at_least, check_fields


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    model: BertConfig = BertConfig.mini(vocab_size=8192)
    optim: OptimConfig = OptimConfig(lr=1e-3, min_lr=1e-4, warmup_steps=200, weight_decay=0.01, beta2=0.98)
    train: TrainConfig = TrainConfig(steps=4000, log_every=50, eval_every=500, ckpt_every=250)
    batch_size: int = 64  # sentence pairs per step
    max_length: int = 64  # WordPiece pieces per pair, [CLS] and [SEP]s included (longest-first truncation)
    max_predictions: int = 16  # MLM head positions per row (BERT's max_predictions_per_seq)
    eval_batches: int = 16  # held-out batches of batch_size pairs, the same ones at every evaluation
    max_sentences: int = 0  # 0: all training sentences; else the first ones (smoke)
    sst2_rate: float = 0.0  # > 0: this share of each batch is SST-2 training sentences, unlabelled, MLM only
    corpus: str = "ptb"  # 'ptb' (sentences in order) or 'en_corpus' (documents cut into chunks of chunk_words)
    chunk_words: int = 20  # en_corpus: words per chunk (a "sentence" of an NSP pair)
    held_out_every: int = 100  # en_corpus: every this-many-th document is held out
    init_dir: str = ""  # '' = from scratch; else continue from this HF export (weights, heads, its tokenizer)
    tokenizer_dir: str = ""  # '' = train one (or init_dir's); else this folder's tokenizer.json (another run's)
    workdir: str = "runs/bert_pretrain"

    def __post_init__(self):
        check_fields(self, batch_size=at_least(1), max_length=at_least(8), max_predictions=at_least(1),
                     eval_batches=at_least(1), max_sentences=at_least(0),
                     sst2_rate=((lambda v: 0.0 <= v < 1.0), "in [0, 1)"), chunk_words=at_least(1),
                     held_out_every=at_least(2), corpus=((lambda v: v in ("ptb", "en_corpus")), "'ptb' or 'en_corpus'"))


CONFIGS = ("default", "smoke")  # what get_config accepts (every one is built by tests/test_configs.py)


def get_config(arg: str | None = None) -> Config:
    if arg in (None, "", "default", "cpu"):
        return Config()
    if arg == "smoke":
        return Config(model=BertConfig.tiny(vocab_size=200, block_size=32), batch_size=8, max_length=32,
                      eval_batches=2, max_sentences=300, workdir="runs/bert_pretrain_smoke",
                      train=TrainConfig(steps=2, log_every=1, eval_every=0, ckpt_every=0, progress=False))
    raise ValueError(f"unknown config {arg!r}; choose {', '.join(CONFIGS)} (variants: studies/bert_pretraining)")


def sentences(cfg: Config, split: str) -> tuple[list[str], np.ndarray | None]:
    """(sentences in reading order, the indices whose next sentence is a true next one or None for all):
    PTB's lines with ``<unk>`` as BERT's [UNK], or en_corpus's documents ('train': all but every
    ``held_out_every``-th) cut into chunks of ``chunk_words``. ``max_sentences`` keeps the first ones."""
    limit = cfg.max_sentences or None
    if cfg.corpus == "ptb":
        lines = [line.strip().replace("<unk>", "[UNK]") for line in read_text(f"ptb/ptb.{split}.txt").splitlines()]
        return [line for line in lines if line][:limit], None
    docs = read_text("en_corpus/en_corpus_a-z.txt").splitlines()
    docs = [d for i, d in enumerate(docs) if (i % cfg.held_out_every == 0) == (split != "train")]
    chunks, firsts = document_chunks(docs[:limit], cfg.chunk_words)
    chunks = chunks[:limit]
    return chunks, firsts[firsts < len(chunks) - 1]


def tokenizer_for(cfg: Config, texts: list[str]) -> WordPieceTokenizer:
    """The run's WordPiece vocabulary: ``tokenizer_dir``'s, ``init_dir``'s, or trained once and kept in
    ``<workdir>/tokenizer``."""
    field, source = ("tokenizer_dir", cfg.tokenizer_dir) if cfg.tokenizer_dir else ("init_dir", cfg.init_dir)
    if not source:
        return WordPieceTokenizer.trained_once(Path(cfg.workdir, "tokenizer"), texts, cfg.model.vocab_size,
                                               max_length=cfg.model.block_size)
    if not Path(source, "tokenizer.json").exists():
        raise FileNotFoundError(f"{field}={source!r} has no tokenizer.json (run the pretraining that exports it, "
                                f"or point {field} at a folder that holds one)")
    return WordPieceTokenizer.from_pretrained(source, max_length=cfg.model.block_size)


def _model(cfg: Config) -> BertForPreTraining:
    if not cfg.init_dir:
        return BertForPreTraining(cfg.model, rngs=nnx.Rngs(cfg.train.seed))
    model = load_hf_bert(cfg.init_dir, head="pretraining", seed=cfg.train.seed)
    theirs, ours = config_to_hf(model.config), config_to_hf(cfg.model)
    if theirs != ours:
        differ = {k: (theirs[k], ours[k]) for k in ours if theirs[k] != ours[k]}
        raise ValueError(f"init_dir={cfg.init_dir!r} holds another architecture than model= (checkpoint, "
                         f"config): {differ}")
    print(f"continuing from {cfg.init_dir}; fresh heads: {', '.join(model.fresh_heads) or 'none'}")
    return model


def run(cfg: Config) -> dict:
    (train_text, train_firsts), (held_out, held_firsts) = sentences(cfg, "train"), sentences(cfg, "valid")
    singles = []
    if cfg.sst2_rate:  # SST-2's training phrases, without their labels (never the dev sentences)
        singles = read_sst2("train")[0][:cfg.max_sentences or None]
    tok = tokenizer_for(cfg, train_text + singles)
    if tok.vocab_size > cfg.model.vocab_size:
        raise ValueError(f"{cfg.workdir}/tokenizer has {tok.vocab_size} pieces, more than model.vocab_size="
                         f"{cfg.model.vocab_size}; delete the folder or raise model.vocab_size")
    model = _model(cfg)
    loss_fn = functools.partial(pretraining_loss, mask_id=tok.mask_id, special_ids=tok.special_ids,
                                max_predictions=cfg.max_predictions)
    source = PretrainingBatches(train_text, tok, cfg.batch_size, cfg.max_length, seed=cfg.train.seed,
                                singles=singles, single_rate=cfg.sst2_rate, firsts=train_firsts)
    held = PretrainingBatches(held_out, tok, cfg.batch_size, cfg.max_length, seed=12345, firsts=held_firsts)
    held_batches = [held(i) for i in range(cfg.eval_batches)]
    evaluate = nnx.jit(lambda m, b: loss_fn(m, b, None)[1])

    def eval_fn(m):
        rows = [{k: float(v) for k, v in evaluate(m, b).items()} for b in held_batches]
        mean = {k: float(np.mean([r[k] for r in rows])) for k in ("mlm_loss", "nsp_loss", "mlm_accuracy",
                                                                   "nsp_accuracy")}
        return {f"val_{k}": v for k, v in mean.items()}

    n_params = sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    print(f"{len(train_text):,} training sentences, {len(held_out):,} held out; vocabulary {tok.vocab_size}; "
          f"{n_params:,} parameters")
    model, result = train(model, loss_fn, source, train_cfg=cfg.train, optim_cfg=cfg.optim, workdir=cfg.workdir,
                          eval_fn=eval_fn, best_metric="val_mlm_loss", config=cfg)
    summary = {**result.summary(), **(result.evals[-1] if result.evals else {}), "parameters": n_params}
    if not result.interrupted:
        export = save_hf_bert(model, Path(cfg.workdir, "export"), tokenizer=tok)
        plot_losses(Path(cfg.workdir, "metrics.jsonl"), Path(cfg.workdir, "pretrain_losses.png"),
                    title=f"BERT pretraining on {cfg.corpus}",
                    keys=("mlm_loss", "nsp_loss", "val_mlm_loss", "val_nsp_loss"))
        print(f"exported to {export}")
    return write_summary(cfg.workdir, summary)
