"""``nlp-jax vectors``: word vectors from your text, skip-gram or CBOW (``models.word2vec``, word2vec's
objective with negative sampling) or PPMI-SVD (``models.ppmi_svd``), written in word2vec's text and binary
formats, which gensim (``KeyedVectors.load_word2vec_format``) and word2vec.c's tools read.

    nlp-jax vectors corpus.txt --method sg --dim 100 --out runs/my_vectors --query king --query film

Input: UTF-8 text, one document a line (blank lines skipped), words split at whitespace; several files are
read as one corpus. Output in ``--out``: ``vectors.txt``, ``vectors.bin`` and ``summary.json`` (corpus size,
vocabulary, seconds in all, the training's own statistics, the nearest neighbours of each ``--query``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from nlp_jax.data.files import stream_text
from nlp_jax.data.word2vec import index_word_corpus
from nlp_jax.models.ppmi_svd import PPMISVDConfig, ppmi_svd
from nlp_jax.models.word2vec import Word2Vec, Word2VecConfig

METHODS = ("sg", "cbow", "ppmi_svd")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nlp-jax vectors", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    w2v = Word2VecConfig()
    p.add_argument("files", nargs="+", help="UTF-8 text files, one document a line")
    p.add_argument("--out", required=True, help="the output folder (created)")
    p.add_argument("--method", choices=METHODS, default="sg", help="sg (skip-gram), cbow or ppmi_svd (default: sg)")
    p.add_argument("--dim", type=int, default=w2v.vector_size, help=f"dimensions (default: {w2v.vector_size})")
    p.add_argument("--window", type=int, default=w2v.window, help=f"context window (default: {w2v.window})")
    p.add_argument("--min-count", type=int, default=5, help="drop words seen fewer times (default: 5)")
    p.add_argument("--epochs", type=int, default=w2v.epochs, help=f"passes (sg, cbow; default: {w2v.epochs})")
    p.add_argument("--negative", type=int, default=w2v.negative,
                   help=f"negatives per example (sg, cbow; default: {w2v.negative})")
    p.add_argument("--sample", type=float, default=w2v.sample,
                   help=f"subsampling threshold (sg, cbow; 0: off; default: {w2v.sample:g})")
    p.add_argument("--seed", type=int, default=w2v.seed, help=f"(default: {w2v.seed})")
    p.add_argument("--query", action="append", default=[], help="a word whose 10 nearest neighbours to report "
                   "(repeatable)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    for name in ("dim", "window", "min_count", "epochs", "negative"):
        if getattr(args, name) < 1:
            raise SystemExit(f"nlp-jax vectors: --{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    start = time.perf_counter()
    documents = 0

    def counted(lines):
        nonlocal documents
        for line in lines:
            documents += 1
            yield line

    # streamed: the corpus is held as its token ids (8 bytes a token) and its vocabulary
    corpus = index_word_corpus(counted(stream_text(args.files, "read")), min_count=args.min_count)
    print(f"{documents:,} documents, {len(corpus.ids):,} tokens, {len(corpus.words):,} words seen "
          f"{args.min_count}+ times")
    if args.method == "ppmi_svd":
        if args.dim >= len(corpus.words):
            raise SystemExit(f"nlp-jax vectors: --dim {args.dim} needs more than {args.dim} words for PPMI-SVD; "
                             f"this corpus has {len(corpus.words)} (lower --dim or --min-count)")
        wv, stats = ppmi_svd(corpus, PPMISVDConfig(dim=args.dim, window=args.window))
    else:
        config = dataclasses.replace(Word2VecConfig(), sg=args.method == "sg", vector_size=args.dim,
                                     window=args.window, epochs=args.epochs, negative=args.negative,
                                     sample=args.sample, seed=args.seed)
        model = Word2Vec(config, corpus)
        stats = model.train()
        wv = model.word_vectors()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    wv.save(out / "vectors.txt")
    wv.save(out / "vectors.bin", binary=True)
    neighbours = {q: wv.nearest(q, 10) if q.lower() in wv.index else "not in the vocabulary" for q in args.query}
    summary = {"method": args.method, "files": args.files, "documents": documents, "tokens": len(corpus.ids),
               "vocabulary": len(corpus.words), "dim": int(wv.vectors.shape[1]),
               "seconds": round(time.perf_counter() - start, 2),
               "training": {k: v for k, v in stats.items() if isinstance(v, (int, float))}, "neighbours": neighbours}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for q, near in neighbours.items():
        print(f"{q}: " + (near if isinstance(near, str) else ", ".join(f"{w} {s:.3f}" for w, s in near)))
    print(f"{len(wv.words):,} vectors of {wv.vectors.shape[1]} in {out}/vectors.txt and vectors.bin "
          f"({summary['seconds']} s)")
    return 0
