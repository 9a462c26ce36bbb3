"""``nlp-jax translate-train``: an encoder-decoder translator of your parallel text (``train.translation``, the
Multi30k experiment's recipe), its validation BLEU reported, exported for ``nlp-jax translate``.

    nlp-jax translate-train pairs.tsv --out runs/my_mt                               # source<TAB>target a line
    nlp-jax translate-train --source train.en --target train.de --arch transformer --steps 3000 --out runs/my_mt

Input: a TSV of ``source<TAB>target`` lines, or two line-aligned UTF-8 files (``--source`` / ``--target``,
the same number of lines). Validation: ``--valid`` (a TSV) or ``--valid-source`` / ``--valid-target``, else
a seeded share of the pairs (``valid_fraction``) is held out. A joint BPE vocabulary (``vocab_size``) is
learnt from the training text and kept in ``<out>/tokenizer``; pairs longer than the model's ``max_len``
pieces are cut (counted in the summary). ``--arch``: ``lstm`` (additive attention, the Multi30k experiment's
best LSTM) or ``transformer``; ``--set`` reaches every field (``lstm.hidden=256``, ``beam=5``,
``average_last=5``; ``--print-config``). Output in ``--out``: ``metrics.jsonl``, ``loss.png``, the
translations of the validation pairs (``val.greedy.tgt``, ``val.beam5.tgt``), ``by_length.md``,
``attention.png``, ``summary.json`` (BLEU by sacrebleu, cased and lower-cased, with its signature) and
``export/``: ``nlp-jax translate <out>/export sentences.txt`` translates a file.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys

import numpy as np

from nlp_jax.cli import add_run_options, launch_training
from nlp_jax.data.files import byte_bar, stream_lines
from nlp_jax.train.translation import TranslationConfig, train_translation
from nlp_jax.validate import check_fields, in_unit


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(TranslationConfig):
    train_file: str = ""  # a TSV of source<TAB>target lines; or the two aligned files below
    source_file: str = ""
    target_file: str = ""
    valid_file: str = ""
    valid_source_file: str = ""
    valid_target_file: str = ""
    valid_fraction: float = 0.05  # held out (seeded by train.seed) when no validation files are given
    src_lang: str = "src"  # (names the translation files only)
    tgt_lang: str = "tgt"
    workdir: str = "runs/translate_train"

    def __post_init__(self):
        super().__post_init__()
        check_fields(self, valid_fraction=in_unit())
        if bool(self.train_file) == bool(self.source_file or self.target_file):
            raise ValueError("give the training pairs as train_file (a TSV) or as source_file and target_file, "
                             "one of the two")
        if not self.train_file and not (self.source_file and self.target_file):
            raise ValueError("source_file and target_file go together: name both")
        if bool(self.valid_source_file) != bool(self.valid_target_file):
            raise ValueError("valid_source_file and valid_target_file go together: name both")
        given = bool(self.valid_file or self.valid_source_file)
        if not given and not 0.0 < self.valid_fraction < 1.0:
            raise ValueError(f"valid_fraction={self.valid_fraction}: without validation files, hold out a fraction "
                             "of the pairs strictly between 0 and 1")


def parser() -> argparse.ArgumentParser:
    d = Config(train_file="x")
    p = argparse.ArgumentParser(prog="nlp-jax translate-train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("train_file", nargs="?", default="", help="a TSV of source<TAB>target lines")
    p.add_argument("--source", default="", help="the source side, one sentence a line (with --target)")
    p.add_argument("--target", default="", help="the target side, line-aligned with --source")
    p.add_argument("--valid", default="", help="validation pairs, a TSV (default: a held-out share)")
    p.add_argument("--valid-source", default="", help="validation source sentences (with --valid-target)")
    p.add_argument("--valid-target", default="", help="validation target sentences")
    p.add_argument("--out", required=True, help="the run directory (created; a rerun resumes it)")
    p.add_argument("--arch", choices=("lstm", "transformer"), default=d.arch, help=f"(default: {d.arch})")
    p.add_argument("--vocab-size", type=int, default=d.vocab_size, help=f"joint BPE (default: {d.vocab_size})")
    p.add_argument("--steps", type=int, default=d.train.steps, help=f"(default: {d.train.steps})")
    p.add_argument("--budget", type=int, default=d.budget, help=f"tokens a batch (default: {d.budget})")
    p.add_argument("--seed", type=int, default=d.train.seed, help=f"(default: {d.train.seed})")
    add_run_options(p, "lstm.hidden=256, transformer.n_layers=6, beam=5")
    return p


def config_from_args(a: argparse.Namespace) -> Config:
    cfg = Config(train_file=a.train_file, source_file=a.source, target_file=a.target, valid_file=a.valid,
                 valid_source_file=a.valid_source, valid_target_file=a.valid_target, arch=a.arch,
                 vocab_size=a.vocab_size, budget=a.budget, workdir=a.out)
    return dataclasses.replace(cfg, lstm=dataclasses.replace(cfg.lstm, attention="additive"),
                               train=dataclasses.replace(cfg.train, steps=a.steps, seed=a.seed))


def main(argv: list[str] | None = None) -> dict:
    p = parser()
    a = p.parse_args(argv)
    files = [a.train_file, a.source, a.target, a.valid, a.valid_source, a.valid_target]
    return launch_training(p, a, files, config_from_args, sys.modules[__name__])


def read_parallel(tsv: str = "", source: str = "", target: str = "") -> tuple[list[str], list[str]]:
    """(sources, targets) of a TSV of ``source<TAB>target`` lines or of two line-aligned files, streamed with a
    progress bar (memory holds the sentences, not the files); blank lines of a TSV are skipped, a line without
    exactly one tab (file:line), files of different lengths and an empty sentence (file:line) are refused."""
    src, tgt = [], []

    def add(s: str, t: str, where: tuple[str, str], number: int) -> None:
        s, t = s.strip(), t.strip()
        if not s or not t:
            raise ValueError(f"{where[0] if not s else where[1]}:{number}: an empty "
                             f"{'source' if not s else 'target'} sentence; remove the pair")
        src.append(s)
        tgt.append(t)

    if tsv:
        with byte_bar([tsv], "read pairs") as bar:
            for number, line in enumerate(stream_lines(tsv, bar), start=1):
                if not line.strip():
                    continue
                fields = line.rstrip("\r\n").split("\t")
                if len(fields) != 2:
                    raise ValueError(f"{tsv}:{number}: {len(fields)} tab-separated fields, expected source<TAB>target")
                add(*fields, (tsv, tsv), number)
    else:
        lengths = [0, 0]
        with byte_bar([source, target], "read pairs") as bar:
            for number, (s, t) in enumerate(itertools.zip_longest(stream_lines(source, bar), stream_lines(target, bar)),
                                            start=1):
                lengths = [lengths[0] + (s is not None), lengths[1] + (t is not None)]
                if s is not None and t is not None:
                    add(s, t, (source, target), number)
        if lengths[0] != lengths[1]:
            raise ValueError(f"{source} has {lengths[0]:,} lines but {target} has {lengths[1]:,}: the two sides must "
                             "be line-aligned")
    if not src:
        raise ValueError(f"{tsv or source}: no sentence pairs")
    return src, tgt


def run(cfg: Config) -> dict:
    src, tgt = read_parallel(cfg.train_file, cfg.source_file, cfg.target_file)
    if cfg.valid_file or cfg.valid_source_file:
        valid = read_parallel(cfg.valid_file, cfg.valid_source_file, cfg.valid_target_file)
    else:
        order = np.random.default_rng(cfg.train.seed).permutation(len(src))
        n_valid = max(1, int(round(len(src) * cfg.valid_fraction)))
        held, kept = np.sort(order[:n_valid]), np.sort(order[n_valid:])
        valid = ([src[i] for i in held], [tgt[i] for i in held])
        src, tgt = [src[i] for i in kept], [tgt[i] for i in kept]
    return train_translation(cfg, (src, tgt), valid)
