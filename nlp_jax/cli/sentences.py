"""``nlp-jax sentences``: sentence-level uses of a BERT checkpoint directory (HF format with its tokenizer, e.g.
the ``export/`` of the BERT SST-2 experiment or of ``nlp-jax classify``, or all-MiniLM-L6-v2).

    nlp-jax sentences classify runs/bert_sst2/export sentences.txt      # label + probabilities
    nlp-jax sentences nearest minilm corpus.txt --query "a great film" -k 5

Input files hold one sentence a line (blank lines are skipped). ``minilm`` names the installed
all-MiniLM-L6-v2.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from nlp_jax.data.files import read_lines
from nlp_jax.eval.sentences import classify, embed
from nlp_jax.models.bert_hf import minilm_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("classify", help="label and class probabilities for each line of a file")
    n = sub.add_parser("nearest", help="the sentences of a file nearest to a query (cosine similarity)")
    for p in (c, n):
        p.add_argument("checkpoint", help="a HF BERT directory with its tokenizer, or 'minilm'")
        p.add_argument("file", help="one sentence a line")
    n.add_argument("--query", required=True, action="append", help="query sentence (repeatable)")
    n.add_argument("-k", type=int, default=5, help="neighbours per query (default: 5)")
    args = parser.parse_args(argv)
    if args.command == "nearest" and args.k < 1:
        parser.error(f"-k must be >= 1 (neighbours per query), got {args.k}")
    checkpoint = minilm_dir() if args.checkpoint == "minilm" else Path(args.checkpoint)
    if not checkpoint.is_dir():
        raise FileNotFoundError(f"{checkpoint}: no such directory (a HF BERT directory with its tokenizer)")
    texts = [line.strip() for line in read_lines(args.file) if line.strip()]
    if not texts:
        raise ValueError(f"{args.file}: no sentences (one sentence a line expected)")
    if args.command == "classify":
        labels, probs = classify(checkpoint, texts)
        print("\t".join(["label", *(f"p({name})" for name in labels), "sentence"]))
        for text, p in zip(texts, probs):
            print("\t".join([labels[int(np.argmax(p))], *(f"{x:.4f}" for x in p), text]))
        return
    vectors = embed(checkpoint, texts + args.query)
    corpus, queries = vectors[:len(texts)], vectors[len(texts):]
    for query, q in zip(args.query, queries):
        sims = corpus @ q
        print(f"query: {query}")
        for i in np.argsort(-sims, kind="stable")[:args.k]:
            print(f"  {sims[i]:.4f}  {texts[i]}")
