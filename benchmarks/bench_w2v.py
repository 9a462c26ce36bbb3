"""word2vec training speed: ours vs gensim (same corpus, same settings, same number of threads).

    python benchmarks/bench_w2v.py [--epochs 1] [--rounds 3] [--archs sg cbow] [--threads 2]

en_corpus with vector_size 100, window 5, min_count 5, negative 5, sample 1e-4. Each round trains a
fresh model for ``epochs`` epochs with each library in turn (ours, gensim, ours, ...); the speed is
effective words (kept by subsampling) per second of ``train``, median over rounds. Also reported: ours
on the XLA path (batched updates, any backend) on a slice of the corpus, and where our time goes (the
host's share: subsampling, window draws, chunking; the rest is the kernel).
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import print_table

from nlp_jax.data.root import resolve
from nlp_jax.data.word2vec import index_word_corpus, read_lines
from nlp_jax.models.word2vec import Word2Vec, Word2VecConfig


def ours(corpus, config: Word2VecConfig) -> float:
    return Word2Vec(config, corpus).train(progress=False)["words_per_s"]


def gensim_speed(sentences, config: Word2VecConfig, threads: int) -> float:
    from gensim.models import Word2Vec as GensimWord2Vec

    model = GensimWord2Vec(vector_size=config.vector_size, window=config.window, min_count=5, negative=config.negative,
                           sample=config.sample, sg=int(config.sg), workers=threads, seed=config.seed)
    model.build_vocab(sentences)
    start = time.perf_counter()
    effective, _ = model.train(sentences, total_examples=model.corpus_count, epochs=config.epochs)
    return effective / (time.perf_counter() - start)


def host_seconds(corpus, config: Word2VecConfig) -> float:
    """The host-side work of one ``train`` alone (``Word2Vec.host_chunks``, no training)."""
    start = time.perf_counter()
    for _ in Word2Vec(config, corpus).host_chunks():
        pass
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--archs", nargs="+", default=["sg", "cbow"], choices=["sg", "cbow"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--xla-docs", type=int, default=2000, help="documents for the XLA-path measurement")
    args = parser.parse_args()
    docs = read_lines(resolve("en_corpus/en_corpus_a-z.txt"))
    corpus = index_word_corpus(docs, min_count=5)
    try:
        import gensim  # noqa: F401

        sentences = [w[i:i + 10_000] for w in (d.split() for d in docs) for i in range(0, len(w), 10_000)]
    except ImportError:
        sentences = None
        print("gensim is not installed: ours only (pip install -e '.[peers]')")
    rows = []
    for arch in args.archs:
        config = Word2VecConfig(sg=arch == "sg", epochs=args.epochs, threads=args.threads, implementation="cpu")
        speeds = {"ours": [], "gensim": []}
        for _ in range(args.rounds):
            speeds["ours"].append(ours(corpus, config))
            if sentences is not None:
                speeds["gensim"].append(gensim_speed(sentences, config, args.threads))
        mine = statistics.median(speeds["ours"])
        theirs = statistics.median(speeds["gensim"]) if speeds["gensim"] else None
        small = index_word_corpus(docs[:args.xla_docs], min_count=5)
        xla_config = Word2VecConfig(sg=arch == "sg", epochs=1, implementation="reference")
        ours(small, xla_config)  # compiles the jitted chunk
        xla = ours(small, xla_config)
        host = host_seconds(corpus, config)
        rows.append([arch, f"{mine / 1e3:.0f}k", f"{theirs / 1e3:.0f}k" if theirs else "-",
                     f"{mine / theirs:.2f}x" if theirs else "-", f"{xla / 1e3:.0f}k",
                     f"{host:.1f} s / epoch" if args.epochs == 1 else f"{host:.1f} s"])
        print(f"{arch}: ours {[round(s) for s in speeds['ours']]}, gensim {[round(s) for s in speeds['gensim']]}")
    print_table(f"word2vec training, effective words/s ({args.threads} threads, {args.epochs} epoch(s), median of "
                f"{args.rounds})", ["arch", "ours (C++ kernel)", "gensim", "ratio", "ours (XLA path)",
                                    "host share"], rows)


if __name__ == "__main__":
    main()
