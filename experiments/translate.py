"""Multi30k en->de translation with an encoder-decoder: the LSTM without attention (one context vector),
with each attention score (dot, bilinear, additive), and a transformer.

Launch:  make translate [C=<config>]   (python -m nlp_jax.run experiments/translate.py:lstm_additive)
         (configs lstm_none, lstm_dot, lstm_bilinear, lstm_additive, transformer; smoke, smoke_transformer)

Results (validation BLEU, lower-cased, greedy / beam 5; 2-core AMD EPYCs, 2026-12-02/03): ``lstm_none``
18.6 / 19.7, ``lstm_dot`` 28.6 / 30.3 (AVX-512), ``lstm_bilinear`` 29.2 / 30.5, ``lstm_additive`` 28.7 /
**30.0** (1,303 s of training), ``transformer`` 34.0 / **35.8** (3,289 s, AVX-512). Every run:
``docs/areas/translation.md``.

A joint BPE vocabulary is trained on the training side of both languages (``joint_vocab=False``: one per
language), kept in ``<workdir>/tokenizer`` so a resumed run reads the same pieces. Training batches hold
about ``budget`` tokens of pairs of similar length; the run keeps its best checkpoint by greedy
lower-cased BLEU on the validation set (evaluated every ``train.eval_every`` steps) and finally reports,
from that checkpoint, greedy and beam BLEU (cased detokenised with sacrebleu's signature, and lower-cased),
BLEU by source length in words, parameters, wall time and tokens/s, writes the translations, an attention
heatmap of a few validation sentences (``attention.png``; none without attention) and an export for
``nlp-jax translate``.
"""

from __future__ import annotations

import dataclasses

from nlp_jax.data.multi30k import read_pairs
from nlp_jax.models.seq2seq import Seq2SeqConfig
from nlp_jax.models.transformer_seq2seq import TransformerSeq2SeqConfig
from nlp_jax.train.config import OptimConfig, TrainConfig
from nlp_jax.train.translation import TranslationConfig, train_translation
from nlp_jax.validate import at_least, check_fields


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(TranslationConfig):
    max_train: int = 0  # 0: all 29,000 training pairs (smoke: fewer)
    max_val: int = 0  # 0: all 1,014 validation pairs, the ones BLEU is reported on (smoke: the first few)
    workdir: str = "runs/translate"

    def __post_init__(self):
        super().__post_init__()
        check_fields(self, max_train=at_least(0), max_val=at_least(0))


CONFIGS = ("lstm_none", "lstm_dot", "lstm_bilinear", "lstm_additive", "transformer", "smoke", "smoke_transformer")


def get_config(arg: str | None = None) -> Config:
    arg = arg or "lstm_additive"
    if arg.startswith("lstm_") and arg[5:] in ("none", "dot", "bilinear", "additive"):
        return Config(lstm=dataclasses.replace(Config.lstm, attention=arg[5:]), workdir=f"runs/translate_{arg}")
    if arg == "transformer":
        # 4 + 4 layers of 128 (feed-forward 512), 2-3 times faster than 256 wide. 6,600 steps (23.5 epochs) of
        # 2,048 tokens took 3,289 s on the 2-core AVX-512 machine (0.50 s a step): 34.0 greedy / 35.8 beam 5.
        # On an earlier session's machine (AVX2 by its speed) a step took 0.92 s: there 3,600 steps fit the
        # hour (29.6 / 31.5; docs/areas/translation.md).
        # Averaging the last 5 checkpoints of that run (--set average_last=5 --set train.ckpt_every=150
        # --set train.keep_last=5) gave 29.4 / 31.4
        return Config(arch="transformer", transformer=TransformerSeq2SeqConfig(d_model=128, d_ff=512),
                      label_smoothing=0.1,
                      optim=OptimConfig(lr=2e-3, min_lr=1e-5, warmup_steps=200, weight_decay=0.01, beta2=0.98),
                      train=TrainConfig(steps=6600, log_every=25, eval_every=1100, ckpt_every=1100),
                      workdir="runs/translate_transformer")
    quick = TrainConfig(steps=2, log_every=1, eval_every=1, ckpt_every=1, progress=False)
    if arg in ("smoke", "smoke_transformer"):
        return Config(vocab_size=300, arch="lstm" if arg == "smoke" else "transformer",
                      lstm=Seq2SeqConfig.tiny(max_len=24), transformer=TransformerSeq2SeqConfig.tiny(max_len=24),
                      train=quick, budget=256, beam=2, eval_sentences=16, heatmaps=2, max_train=300, max_val=64,
                      workdir=f"runs/translate_{arg}")
    raise ValueError(f"unknown config {arg!r}; choose {', '.join(CONFIGS)}")


def run(cfg: Config) -> dict:
    train_src, train_tgt = read_pairs("train", cfg.src_lang, cfg.tgt_lang)
    val_src, val_tgt = read_pairs("val", cfg.src_lang, cfg.tgt_lang)
    n_train, n_val = cfg.max_train or len(train_src), cfg.max_val or len(val_src)
    return train_translation(cfg, (train_src[:n_train], train_tgt[:n_train]), (val_src[:n_val], val_tgt[:n_val]))
