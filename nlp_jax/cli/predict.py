"""``nlp-jax predict``: a trained classifier's label and class probabilities for every text of a file.

    nlp-jax predict runs/clf/export new_reviews.csv --text-column text --out predictions.csv
    nlp-jax predict runs/clf/export sentences.txt                        # one text a line; TSV on stdout
    nlp-jax predict runs/clf/export dev.jsonl --label-column label       # also its accuracy against the file's labels

The classifier is an export of ``nlp-jax classify`` or of the SST-2 experiment (a HF BERT directory with a
classifier head, its labels and tokenizer). The file is a table (``.csv``, ``.tsv``, ``.jsonl``: the
``--text-column``, and ``--pair-column`` for a pair classifier) or plain text, one a line. ``--out`` writes
the rows as CSV, TSV or JSONL by its extension: the text (and pair), the predicted ``label`` and a
``p(<label>)`` column per class; without it, TSV on stdout. A text longer than the model's positions is
truncated and counted on stderr.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from nlp_jax.data.files import TABLE_FORMATS, read_records, stream_text
from nlp_jax.eval.sentences import SentenceClassifier


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nlp-jax predict", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("classifier", help="a classifier export directory")
    p.add_argument("file", help="a .csv, .tsv or .jsonl table, or text with one text a line")
    p.add_argument("--text-column", default="text", help="(default: text)")
    p.add_argument("--pair-column", default="", help="the second text of a pair classifier (default: none)")
    p.add_argument("--label-column", default="", help="gold labels in the file: report the accuracy (default: none)")
    p.add_argument("--out", default="", help="write .csv, .tsv or .jsonl (default: TSV on stdout)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not Path(args.file).is_file():
        raise SystemExit(f"nlp-jax predict: {args.file}: no such file")
    if args.out and Path(args.out).suffix.lower() not in TABLE_FORMATS:
        raise SystemExit(f"nlp-jax predict: --out {args.out}: write {', '.join(TABLE_FORMATS)} (by the extension)")
    try:
        clf = SentenceClassifier(args.classifier)
        if Path(args.file).suffix.lower() in TABLE_FORMATS:
            columns = [args.text_column, *([args.pair_column] if args.pair_column else [])]
            records = read_records(args.file, columns + ([args.label_column] if args.label_column else []))
        else:
            if args.pair_column or args.label_column:
                raise ValueError(f"{args.file}: --pair-column and --label-column need a table (.csv, .tsv, .jsonl)")
            columns, records = [args.text_column], [{args.text_column: t} for t in stream_text([args.file])]
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"nlp-jax predict: {err}") from None
    if not records:
        raise SystemExit(f"nlp-jax predict: {args.file} holds no texts")
    texts = [str(r[args.text_column]) for r in records]
    pairs = [str(r[args.pair_column]) for r in records] if args.pair_column else None
    probs = clf(texts, pairs)
    names = clf.labels
    limit = clf.model.config.block_size
    length = np.asarray([len(p) + 2 for p in clf.tokenizer.pieces(texts)])
    if pairs is not None:
        length += np.asarray([len(p) + 1 for p in clf.tokenizer.pieces(pairs)])
    if (length > limit).any():
        print(f"{int((length > limit).sum()):,} of {len(texts):,} texts exceed the model's {limit} positions: "
              "truncated", file=sys.stderr)
    rows = [{**{c: r[c] for c in columns}, "label": names[int(np.argmax(p))],
             **{f"p({n})": round(float(x), 6) for n, x in zip(names, p)}} for r, p in zip(records, probs)]
    if args.label_column:
        correct = sum(row["label"] == str(r[args.label_column]).strip() for row, r in zip(rows, records))
        print(f"accuracy {correct / len(rows):.4f} ({correct:,} of {len(rows):,}) against {args.label_column!r}",
              file=sys.stderr)
    _write(rows, args.out)
    return 0


def _write(rows: list[dict], out: str) -> None:
    kind = TABLE_FORMATS.get(Path(out).suffix.lower(), "tsv") if out else "tsv"
    f = open(out, "w", encoding="utf-8", newline="") if out else sys.stdout
    try:
        if kind == "jsonl":
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        else:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="," if kind == "csv" else "\t",
                                    lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    finally:
        if out:
            f.close()
