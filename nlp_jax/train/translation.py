"""Training an encoder-decoder translator on parallel text, the one recipe behind the Multi30k experiment
and ``nlp-jax translate-train`` on a user's files: a BPE vocabulary trained
once per run directory (joint, or one per language), batches of about ``budget`` tokens of pairs of similar
length, the LSTM (with or without attention) or the transformer, the best checkpoint by validation BLEU (or
the average of the last ones), and its greedy and beam BLEU."""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from nlp_jax.data.bpe import BPETokenizer
from nlp_jax.data.translation import TokenBudgetBatches, pair_batch, with_end
from nlp_jax.eval.bleu import bleu, bleu_by_length
from nlp_jax.models.seq2seq import LSTMSeq2Seq, Seq2SeqConfig
from nlp_jax.models.transformer_seq2seq import TransformerSeq2Seq, TransformerSeq2SeqConfig
from nlp_jax.models.translator import save_export, translate
from nlp_jax.objectives import seq2seq_loss
from nlp_jax.train.config import OptimConfig, TrainConfig
from nlp_jax.train.loop import load_averaged, load_trained, train
from nlp_jax.train.records import markdown_table, write_summary
from nlp_jax.train.sharding import make_mesh
from nlp_jax.validate import at_least, check_fields, in_unit


@dataclasses.dataclass(frozen=True, kw_only=True)
class TranslationConfig:
    src_lang: str = "en"
    tgt_lang: str = "de"
    vocab_size: int = 8000  # BPE vocabulary (each, when not joint)
    joint_vocab: bool = True  # one vocabulary for both languages (else one per language)
    arch: str = "lstm"  # 'lstm' (model: lstm) or 'transformer' (model: transformer)
    # 128 units a direction (a 256-unit decoder): 0.95 s a step of 2,048 tokens on 2 cores (compilation and
    # evaluation included), so 1,800 steps (6.4 epochs) fit the 30-minute budget (2,000 took 1,902 s); with
    # the cheaper cross-entropy (2026-12-03) 1,800 steps took 1,303 s. Twice
    # the updates at twice the rate beat 4,096-token batches at 1e-3: 26.8 greedy BLEU after 1,000 steps of
    # 2,048 tokens, against 17.0 after 1,000 steps of 4,096
    lstm: Seq2SeqConfig = Seq2SeqConfig(hidden=128, attn_dim=128, dropout=0.2)
    transformer: TransformerSeq2SeqConfig = TransformerSeq2SeqConfig()
    optim: OptimConfig = OptimConfig(lr=2e-3, min_lr=1e-4, warmup_steps=100, weight_decay=0.0, grad_clip=1.0)
    train: TrainConfig = TrainConfig(steps=1800, log_every=25, eval_every=300, ckpt_every=300)  # 6.4 epochs
    budget: int = 2048  # tokens (padding included) per training batch
    label_smoothing: float = 0.0  # eps of the training cross-entropy (seq2seq_loss)
    beam: int = 5  # the final beam search's width
    length_penalty: float = 1.0  # beam hypotheses scored log p / length ** this
    # > 0: the final model averages the parameters of the newest N checkpoints (Vaswani et al. 2017; needs
    # train.keep_last >= N) instead of taking the best one by validation BLEU
    average_last: int = 0
    eval_sentences: int = 0  # validation sentences scored during training (0: all)
    length_edges: tuple[int, ...] = (0, 10, 15, 20, 25)  # BLEU by source length: bucket starts, in words
    heatmaps: int = 3  # validation sentences drawn in attention.png
    workdir: str = "runs/translate"

    def __post_init__(self):
        check_fields(self, vocab_size=at_least(8), budget=at_least(8), beam=at_least(1), eval_sentences=at_least(0),
                     heatmaps=at_least(0), label_smoothing=in_unit(),
                     average_last=at_least(0))
        if self.average_last > self.train.keep_last:
            raise ValueError(f"average_last={self.average_last} needs as many checkpoints kept: set "
                             f"train.keep_last >= {self.average_last} (it is {self.train.keep_last})")
        if self.arch not in ("lstm", "transformer"):
            raise ValueError(f"arch must be 'lstm' or 'transformer', got {self.arch!r}")

    @property
    def max_len(self) -> int:
        return (self.lstm if self.arch == "lstm" else self.transformer).max_len


def tokenizers(cfg: TranslationConfig, train_src: list[str], train_tgt: list[str]) -> tuple[BPETokenizer, BPETokenizer]:
    root = Path(cfg.workdir, "tokenizer")
    if cfg.joint_vocab:
        tok = BPETokenizer.trained_once(root, train_src + train_tgt, cfg.vocab_size)
        return tok, tok
    return (BPETokenizer.trained_once(root / cfg.src_lang, train_src, cfg.vocab_size),
            BPETokenizer.trained_once(root / cfg.tgt_lang, train_tgt, cfg.vocab_size))


def build(cfg: TranslationConfig, src_vocab: int, tgt_vocab: int):
    if cfg.arch == "lstm":
        return LSTMSeq2Seq(dataclasses.replace(cfg.lstm, src_vocab=src_vocab, tgt_vocab=tgt_vocab),
                           rngs=nnx.Rngs(cfg.train.seed))
    shared = cfg.joint_vocab
    return TransformerSeq2Seq(dataclasses.replace(cfg.transformer, src_vocab=src_vocab, tgt_vocab=tgt_vocab,
                                                  shared_embeddings=shared), rngs=nnx.Rngs(cfg.train.seed))


def heatmap(model, src_tok, tgt_tok, sources: list[str], hypotheses: list[str], png: Path) -> None:
    """Cross-attention of the model on its own translations, one panel per sentence (rows: target pieces)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sources), figsize=(5 * len(sources), 5), squeeze=False)
    for ax, s, h in zip(axes[0], sources, hypotheses):
        src = with_end(src_tok.encode([s]), model.max_length)
        tgt = with_end(tgt_tok.encode([h]), model.max_length)
        b = pair_batch(src, tgt, max(len(src[0]), len(tgt[0])))
        _, aux = model(b["target_in"], source=b["source"], source_mask=b["source_mask"], attention_weights=True)
        alpha = np.asarray(aux["attention"])[0, :len(tgt[0]), :len(src[0])]
        ax.imshow(alpha, cmap="Greys", vmin=0, vmax=max(alpha.max(), 1e-6))
        ax.set_xticks(range(len(src[0])), src_tok.tokens(s)[:len(src[0]) - 1] + ["</s>"], rotation=90, fontsize=7)
        ax.set_yticks(range(len(tgt[0])), tgt_tok.tokens(h)[:len(tgt[0]) - 1] + ["</s>"], fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def score(model, src_tok, tgt_tok, sources, references, *, beam: int, length_penalty: float) -> tuple[dict, list]:
    t0 = time.perf_counter()
    hyps = translate(model, src_tok, tgt_tok, sources, beam=beam, length_penalty=length_penalty)
    seconds = time.perf_counter() - t0
    return {**bleu(hyps, references), "sentences_per_second": round(len(sources) / seconds, 1)}, hyps


def train_translation(cfg: TranslationConfig, train_pairs: tuple[list[str], list[str]],
                      val_pairs: tuple[list[str], list[str]]) -> dict:
    """Train ``cfg``'s encoder-decoder on ``train_pairs`` (sources, targets), keep the checkpoint of best greedy
    lower-cased BLEU on ``val_pairs`` (the first ``eval_sentences`` of them), and report from it greedy and
    beam BLEU by sacrebleu (cased and lower-cased, with the signature), BLEU by source length, the translations
    (``val.<name>.<tgt_lang>``), an attention heatmap and an export (``models.translator.save_export``);
    returns the summary written to ``<workdir>/summary.json``."""
    t0 = time.perf_counter()
    (train_src, train_tgt), (val_src, val_tgt) = train_pairs, val_pairs
    src_tok, tgt_tok = tokenizers(cfg, train_src, train_tgt)
    mesh = make_mesh(cfg.train.mesh)  # its rows padded (masked) to a multiple of the devices, so they split evenly
    src_pieces, tgt_pieces = src_tok.encode(train_src), tgt_tok.encode(train_tgt)
    cut = sum(len(a) >= cfg.max_len or len(b) >= cfg.max_len for a, b in zip(src_pieces, tgt_pieces))  # + </s>
    source = TokenBudgetBatches(with_end(src_pieces, cfg.max_len), with_end(tgt_pieces, cfg.max_len), cfg.budget,
                                seed=cfg.train.seed, rows_multiple=1 if mesh is None else mesh.size)
    model = build(cfg, src_tok.vocab_size, tgt_tok.vocab_size)
    params = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    n_eval = cfg.eval_sentences or len(val_src)
    print(f"{len(train_src):,} pairs ({cut:,} cut at {cfg.max_len} pieces), vocabulary {src_tok.vocab_size:,} / "
          f"{tgt_tok.vocab_size:,}, {params:,} "
          f"parameters, {source.steps_per_epoch} steps an epoch, {cfg.train.steps} steps")

    def eval_fn(m):
        return score(m, src_tok, tgt_tok, val_src[:n_eval], val_tgt[:n_eval], beam=1, length_penalty=0.0)[0]

    loss_fn = functools.partial(seq2seq_loss, label_smoothing=cfg.label_smoothing)
    trained, result = train(model, loss_fn, source, train_cfg=cfg.train, optim_cfg=cfg.optim,
                            workdir=cfg.workdir, eval_fn=eval_fn, best_metric="bleu_lc", best_mode="max", config=cfg)
    if result.interrupted:
        return write_summary(cfg.workdir, result.summary())
    fresh = build(cfg, src_tok.vocab_size, tgt_tok.vocab_size)
    if cfg.average_last:
        best, meta = load_averaged(fresh, loss_fn, cfg.optim, cfg.workdir, last=cfg.average_last)
        chosen = {"averaged_steps": meta["steps"]}
    else:
        best, meta = load_trained(fresh, loss_fn, cfg.optim, cfg.workdir)
        chosen = {"best_step": meta["step"]}
    out = {**result.summary(), "parameters": params, **chosen, "epochs": round(result.step / source.steps_per_epoch, 2),
           "train_pairs": len(train_src), "pairs_cut": cut}
    words = [len(s.split()) for s in val_src]
    for name, beam in (("greedy", 1), (f"beam{cfg.beam}", cfg.beam)):
        scores, hyps = score(best, src_tok, tgt_tok, val_src, val_tgt, beam=beam, length_penalty=cfg.length_penalty)
        Path(cfg.workdir, f"val.{name}.{cfg.tgt_lang}").write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
        out[name] = {**scores, "by_length": bleu_by_length(hyps, val_tgt, words, cfg.length_edges)}
        if name == "greedy" and cfg.heatmaps and not (cfg.arch == "lstm" and cfg.lstm.attention == "none"):
            heatmap(best, src_tok, tgt_tok, val_src[:cfg.heatmaps], hyps[:cfg.heatmaps],
                    Path(cfg.workdir, "attention.png"))
    save_export(best, src_tok, tgt_tok, Path(cfg.workdir, "export"))
    rows = [[r["from"], r["to"] or "", r["sentences"], f"{r['bleu_lc']:.1f}",
             f"{b['bleu_lc']:.1f}"] for r, b in zip(out["greedy"]["by_length"], out[f"beam{cfg.beam}"]["by_length"])]
    Path(cfg.workdir, "by_length.md").write_text(markdown_table(
        ["words from", "to", "sentences", "greedy BLEU (lc)", f"beam {cfg.beam} BLEU (lc)"], rows))
    return write_summary(cfg.workdir, {**out, "wall_seconds": round(time.perf_counter() - t0, 1)})
