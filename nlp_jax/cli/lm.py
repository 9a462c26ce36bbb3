"""``nlp-jax lm``: a language model of your own text files, a GPT (``models.gpt2``) or an LSTM
(``models.rnn_lm``), trained through the one loop (checkpoints, resume, a progress bar, ``loss.png``), its
validation perplexity reported, and exported for ``nlp-jax perplexity`` and ``nlp-jax generate``.

    nlp-jax lm my_text.txt --out runs/my_lm                            # a character-level GPT (nanoGPT's CPU size)
    nlp-jax lm a.txt b.txt --valid held.txt --tokenizer bpe --vocab-size 8192 --out runs/my_bpe_lm
    nlp-jax lm my_text.txt --arch lstm --out runs/my_lstm --set lstm.hidden=512 --set train.steps=5000

Input: UTF-8 text files, read as a stream (a file of millions of lines never sits in memory as text; its
token ids do, 4 bytes each, stated in the summary). Every file is one document: ``<|endoftext|>`` opens
each, so the model learns where a document starts. Tokenizers (``data.lm_tokenizer``): ``char`` (one id a
character), ``bpe`` (byte-level BPE learnt from the training files, ``--vocab-size``) or ``gpt2`` (GPT-2's
own vocabulary); trained once and kept in ``<out>/tokenizer``. Validation: the ``--valid`` files, or else the
last ``valid_fraction`` of the training stream (held out, as nanoGPT splits shakespeare_char).

Every option is a field of :class:`Config`; ``--set key=value`` reaches the rest (``gpt.dropout=0.1``,
``optim.weight_decay=0.1``, ``train.eval_every=100``; ``--print-config`` shows them all). A rerun of a
finished run reads its results back; an interrupted one resumes (``Ctrl-C`` saves a checkpoint). Output in
``--out``: ``metrics.jsonl``, ``loss.png``, ``summary.json``, the checkpoints, and ``export/``: a GPT as a
Hugging Face GPT-2 directory (``transformers.GPT2LMHeadModel`` and ``PreTrainedTokenizerFast`` load it), an
LSTM as ``rnn_lm.json`` + ``model.safetensors``, each with its ``tokenizer.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from nlp_jax.cli import add_run_options, launch_training
from nlp_jax.data.corpus import RandomBlocks, SequentialBlocks
from nlp_jax.data.files import stream_lines
from nlp_jax.data.lm_tokenizer import KINDS, LMTokenizer
from nlp_jax.eval.perplexity import perplexity, recurrent_perplexity
from nlp_jax.models.gpt2 import GPT2, GPT2Config
from nlp_jax.models.gpt2_hf import save_hf_gpt2
from nlp_jax.models.rnn_lm import RNNLM, RNNLMConfig, save_rnn_lm
from nlp_jax.objectives import Objective, bptt_loss, lm_loss
from nlp_jax.train.config import OptimConfig, TrainConfig
from nlp_jax.train.loop import train
from nlp_jax.train.records import write_summary
from nlp_jax.validate import at_least, check_fields, in_unit

ARCHS = ("gpt", "lstm")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    files: tuple[str, ...]  # the training text
    valid: tuple[str, ...] = ()  # validation text (none: the last valid_fraction of the training stream)
    valid_fraction: float = 0.1
    tokenizer: str = "char"  # 'char', 'bpe' or 'gpt2'
    vocab_size: int = 4096  # tokenizer='bpe': the vocabulary learnt (specials included)
    arch: str = "gpt"  # 'gpt' or 'lstm'
    # nanoGPT's CPU shakespeare_char model (HF GPT-2 has biases, so the export needs bias=True)
    gpt: GPT2Config = GPT2Config(vocab_size=1, block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0)
    lstm: RNNLMConfig = RNNLMConfig(vocab_size=1, hidden=256, layers=2, dropout=0.0)
    bptt: int = 64  # arch='lstm': tokens per truncated-BPTT window
    batch_size: int = 12  # sequences a step
    optim: OptimConfig = OptimConfig(lr=1e-3, min_lr=1e-4, warmup_steps=100, beta2=0.99)
    train: TrainConfig = TrainConfig(steps=2000, eval_every=250, log_every=10, ckpt_every=500)
    eval_batch_size: int = 64  # windows per forward in the validation perplexity
    workdir: str = "runs/lm"

    def __post_init__(self):
        check_fields(self, valid_fraction=in_unit(), vocab_size=at_least(1), bptt=at_least(1),
                     batch_size=at_least(1), eval_batch_size=at_least(1),
                     tokenizer=((lambda v: v in KINDS), f"one of {KINDS}"),
                     arch=((lambda v: v in ARCHS), f"one of {ARCHS}"))
        if not self.files:
            raise ValueError("files: name at least one training text file")
        if not self.valid and not 0.0 < self.valid_fraction < 1.0:
            raise ValueError(f"valid_fraction={self.valid_fraction}: without --valid files, hold out a fraction "
                             "of the training text strictly between 0 and 1")


def parser() -> argparse.ArgumentParser:
    d = Config(files=("x",))
    p = argparse.ArgumentParser(prog="nlp-jax lm", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", help="UTF-8 training text")
    p.add_argument("--out", required=True, help="the run directory (created; a rerun resumes it)")
    p.add_argument("--valid", action="append", default=[], help="a validation file (repeatable; default: the last "
                   f"{d.valid_fraction * 100:.0f}%% of the training text)")
    p.add_argument("--tokenizer", choices=KINDS, default=d.tokenizer, help=f"(default: {d.tokenizer})")
    p.add_argument("--vocab-size", type=int, default=d.vocab_size, help=f"for bpe (default: {d.vocab_size})")
    p.add_argument("--arch", choices=ARCHS, default=d.arch, help=f"(default: {d.arch})")
    p.add_argument("--steps", type=int, default=d.train.steps, help=f"optimizer steps (default: {d.train.steps})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"(default: {d.batch_size})")
    p.add_argument("--lr", type=float, default=d.optim.lr, help=f"peak learning rate (default: {d.optim.lr})")
    p.add_argument("--seed", type=int, default=d.train.seed, help=f"(default: {d.train.seed})")
    add_run_options(p, "gpt.n_layer=6, gpt.block_size=256, lstm.hidden=512")
    return p


def config_from_args(args: argparse.Namespace) -> Config:
    cfg = Config(files=tuple(args.files), valid=tuple(args.valid), tokenizer=args.tokenizer,
                 vocab_size=args.vocab_size, arch=args.arch, batch_size=args.batch_size, workdir=args.out)
    return dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, lr=args.lr),
                               train=dataclasses.replace(cfg.train, steps=args.steps, seed=args.seed))


def main(argv: list[str] | None = None) -> dict:
    p = parser()
    args = p.parse_args(argv)
    return launch_training(p, args, [*args.files, *args.valid], config_from_args, sys.modules[__name__])


def run(cfg: Config) -> dict:
    t0 = time.perf_counter()
    workdir = Path(cfg.workdir)
    tok = LMTokenizer.trained_once(workdir / "tokenizer", (line for f in cfg.files for line in stream_lines(f)),
                                   cfg.tokenizer, cfg.vocab_size)
    ids = tok.encode_files(cfg.files, "training text")
    if cfg.valid:
        train_ids, valid_ids = ids, tok.encode_files(cfg.valid, "validation text")
    else:
        cut = int(len(ids) * (1.0 - cfg.valid_fraction))
        train_ids, valid_ids = ids[:cut], ids[cut:]
    unknown = {name: int((a == tok.unk_id).sum()) if tok.unk_id is not None else 0
               for name, a in (("train", train_ids), ("valid", valid_ids))}
    print(f"{len(train_ids):,} training and {len(valid_ids):,} validation tokens ({tok.vocab_size:,} ids, "
          f"{cfg.tokenizer}; {(train_ids.nbytes + valid_ids.nbytes) / 2**20:.1f} MiB of ids in memory)")
    if cfg.arch == "gpt":
        mcfg = dataclasses.replace(cfg.gpt, vocab_size=tok.vocab_size)
        context = mcfg.block_size
        model = GPT2(mcfg, rngs=nnx.Rngs(cfg.train.seed))
        objective, source = lm_loss, RandomBlocks(_long_enough(train_ids, context, "training"), cfg.batch_size,
                                                 context, seed=cfg.train.seed, vocab_size=tok.vocab_size)

        def evaluate(m):
            return perplexity(m, _long_enough(valid_ids, context, "validation"), context=context,
                              batch_size=cfg.eval_batch_size)
    else:
        mcfg = dataclasses.replace(cfg.lstm, vocab_size=tok.vocab_size)
        model = RNNLM(mcfg, rngs=nnx.Rngs(cfg.train.seed))
        source = SequentialBlocks(train_ids, cfg.batch_size, cfg.bptt, vocab_size=tok.vocab_size)
        objective = Objective(bptt_loss, init_state=lambda: model.init_carry(cfg.batch_size))

        def evaluate(m):
            return recurrent_perplexity(m, _long_enough(valid_ids, 1, "validation"), bptt=cfg.bptt)
    params = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    print(f"{cfg.arch}: {params:,} parameters, {cfg.train.steps:,} steps of {cfg.batch_size}")
    model, result = train(model, objective, source, train_cfg=cfg.train, optim_cfg=cfg.optim, workdir=workdir,
                          eval_fn=lambda m: {"val_loss": evaluate(m)["loss"]}, config=cfg)
    summary = {**result.summary(), "arch": cfg.arch, "tokenizer": cfg.tokenizer, "vocab_size": tok.vocab_size,
               "parameters": params, "train_tokens": len(train_ids), "valid_tokens": len(valid_ids),
               "unknown_tokens": unknown, "ids_mib": round((train_ids.nbytes + valid_ids.nbytes) / 2**20, 1),
               "best_val_loss": result.best}
    if result.interrupted:  # the checkpoint is saved: a rerun resumes
        return write_summary(workdir, summary)
    final = evaluate(model)
    meta = {"bos_token_id": tok.eot_id, "eos_token_id": tok.eot_id}
    export = (save_hf_gpt2(model, workdir / "export", tokenizer=tok, **meta) if cfg.arch == "gpt"
              else save_rnn_lm(model, workdir / "export", tokenizer=tok, **meta))
    print(f"validation perplexity {final['ppl']:.3f} (loss {final['loss']:.4f} nats a token); exported to {export}:\n"
          f"  nlp-jax perplexity {export} <text file>\n  nlp-jax generate {export} <prompts file>")
    return write_summary(workdir, {**summary, "val_loss": final["loss"], "val_ppl": final["ppl"],
                                   "export": str(export), "wall_seconds": round(time.perf_counter() - t0, 1)})


def _long_enough(ids: np.ndarray, context: int, what: str) -> np.ndarray:
    if len(ids) <= context + 1:
        raise ValueError(f"the {what} text is {len(ids):,} tokens: too short for a context of {context} (need more "
                         f"than {context + 1}); give more text, or a smaller gpt.block_size / bptt")
    return ids
