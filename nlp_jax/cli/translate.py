"""``nlp-jax translate``: translate a file of sentences (one a line, raw text) with a saved translator.

    nlp-jax translate runs/translate_lstm_additive/export source.en > hypotheses.de
    sacrebleu references.de < hypotheses.de

The export is what a translation experiment or ``nlp-jax translate-train`` writes to ``<workdir>/export``
(``models.translator``). Lines are split at newlines only (a form feed or U+2028 inside a line stays in it),
and each gives one line of output: an empty line gives an empty line. The arguments and the file are
checked before the model loads.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from nlp_jax.data.files import read_lines
from nlp_jax.models.translator import load_export, translate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export", help="a translator export directory (<workdir>/export)")
    parser.add_argument("source", help="a text file, one source sentence a line ('-': standard input)")
    parser.add_argument("--beam", type=int, default=5, help="beam width (1: greedy; default: 5)")
    parser.add_argument("--length-penalty", type=float, default=1.0,
                        help="hypotheses scored log p / length ** this (default: 1.0)")
    parser.add_argument("--batch-size", type=int, default=64, help="sentences a batch (default: 64)")
    args = parser.parse_args(argv)
    checks = (("beam", args.beam >= 1, ">= 1 (1: greedy)"), ("batch_size", args.batch_size >= 1, ">= 1"),
              ("length_penalty", math.isfinite(args.length_penalty), "a finite number"))
    for name, ok, what in checks:
        if not ok:
            parser.error(f"--{name.replace('_', '-')} must be {what}, got {getattr(args, name)}")
    if not Path(args.export).is_dir():
        raise FileNotFoundError(f"{args.export}: no such directory (a translator export is <workdir>/export)")
    lines = read_lines(args.source)
    if not lines:
        raise ValueError(f"{args.source}: no lines to translate")
    model, src_tok, tgt_tok = load_export(args.export)
    kept = [i for i, line in enumerate(lines) if line.strip()]
    out = [""] * len(lines)  # an empty line stays empty: nothing is invented for it
    for i, line in zip(kept, translate(model, src_tok, tgt_tok, [lines[i] for i in kept], beam=args.beam,
                                       length_penalty=args.length_penalty, batch_size=args.batch_size)):
        out[i] = line
    sys.stdout.write("".join(line + "\n" for line in out))
