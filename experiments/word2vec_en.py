"""Word vectors on en_corpus: skip-gram and CBOW (ours vs gensim, same settings) and PPMI-SVD.

Launch:  make w2v   (python -m nlp_jax.run experiments/word2vec_en.py; :smoke for tests)

Settings (gensim's defaults, and the issue's): vector_size 100, window 5, min_count 5, negative 5,
sample 1e-4, 5 epochs, alpha 0.025 -> 0.0001; gensim with 2 worker threads, ours with the C++ kernel on
2 threads. Every model is scored by the same code (``nlp_jax.eval.word_vectors``, gensim's protocol):
Google analogies (3CosAdd, 3CosMul, coverage, semantic / syntactic), WordSim-353 and SimLex-999
Spearman. Speed: effective words (those kept by subsampling) per second of training, vocabulary
building excluded on both sides. gensim is read the way ``LineSentence`` reads the file: one document a
line, cut into pieces of at most 10,000 words.

Result (2026-11-28, a 2-core CPU; mean of seeds 1-3): analogies 3CosAdd skip-gram **13.58%** (gensim 4.4:
12.66%), CBOW 6.02% (5.59%), PPMI-SVD **19.82%**; skip-gram trains at 1.46x gensim's words/s.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from nlp_jax.data.root import resolve
from nlp_jax.data.word2vec import index_word_corpus, read_lines
from nlp_jax.eval.word_vectors import evaluate_analogies, evaluate_word_pairs
from nlp_jax.models.ppmi_svd import PPMISVDConfig, ppmi_svd
from nlp_jax.models.word2vec import Word2Vec, Word2VecConfig
from nlp_jax.models.word_vectors import WordVectors
from nlp_jax.train.records import markdown_table, write_config, write_summary

QUERIES = ("king", "france", "computer", "good", "running")
METHODS = ("sg", "cbow", "ppmi_svd", "gensim_sg", "gensim_cbow")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    corpus: str = "en_corpus/en_corpus_a-z.txt"  # under the data root
    max_docs: int = 0  # 0: every document
    min_count: int = 5
    methods: tuple[str, ...] = METHODS  # any of METHODS, in this order
    seeds: tuple[int, ...] = (1, 2, 3)  # word2vec runs per method (ours and gensim); PPMI-SVD runs once
    w2v: Word2VecConfig = Word2VecConfig()  # shared by sg and cbow (sg and seed are set per run)
    ppmi: PPMISVDConfig = PPMISVDConfig(window=5)  # the word2vec window
    gensim_workers: int = 2
    save_vectors: bool = False  # write each method's last vectors to workdir/<method>.txt (word2vec text format)
    workdir: str = "runs/word2vec_en"  # summary.json goes here


CONFIGS = ("default", "smoke")  # what get_config accepts (every one is built by tests/test_configs.py)


def get_config(arg: str | None = None) -> Config:
    if arg in (None, "", "default"):
        return Config()
    if arg == "smoke":
        return Config(max_docs=15, min_count=2, seeds=(1,), w2v=Word2VecConfig(epochs=1, chunk_words=4096),
                      ppmi=PPMISVDConfig(dim=20), workdir="runs/word2vec_en_smoke")
    raise ValueError(f"unknown config {arg!r}; choose {', '.join(CONFIGS)}")


def evaluate(wv: WordVectors) -> dict:
    """The scores of one model: a flat dict of numbers (see ``COLUMNS``)."""
    analogies = evaluate_analogies(wv, resolve("word_eval/questions-words.txt"))
    return {"3cosadd": analogies["total"]["3cosadd"], "3cosmul": analogies["total"]["3cosmul"],
            "semantic": analogies.get("semantic", {}).get("3cosadd", 0.0),
            "syntactic": analogies.get("syntactic", {}).get("3cosadd", 0.0),
            "coverage": analogies["total"]["coverage"],
            "wordsim353": evaluate_word_pairs(wv, resolve("word_eval/wordsim353.tsv"))["spearman"],
            "simlex999": evaluate_word_pairs(wv, resolve("word_eval/simlex999.txt"))["spearman"]}


def train_ours(cfg: Config, corpus, method: str, seed: int) -> tuple[WordVectors, dict]:
    if method == "ppmi_svd":
        return ppmi_svd(corpus, cfg.ppmi)
    model = Word2Vec(dataclasses.replace(cfg.w2v, sg=method == "sg", seed=seed), corpus)
    stats = model.train()
    return model.word_vectors(), stats


def train_gensim(cfg: Config, docs: list[str], method: str, seed: int) -> tuple[WordVectors, dict]:
    from gensim.models import Word2Vec as GensimWord2Vec

    w = cfg.w2v
    sentences = [words[i:i + 10_000] for words in (d.split() for d in docs) for i in range(0, len(words), 10_000)]
    model = GensimWord2Vec(vector_size=w.vector_size, window=w.window, min_count=cfg.min_count, negative=w.negative,
                           sample=w.sample, alpha=w.alpha, min_alpha=w.min_alpha, sg=int(method == "gensim_sg"),
                           workers=cfg.gensim_workers, seed=seed)
    model.build_vocab(sentences)
    start = time.perf_counter()
    effective, _ = model.train(sentences, total_examples=model.corpus_count, epochs=w.epochs)
    seconds = time.perf_counter() - start
    wv = WordVectors(list(model.wv.index_to_key), model.wv.vectors)
    return wv, {"effective_words": effective, "seconds": seconds, "words_per_s": effective / seconds}


def _gensim_available() -> bool:
    try:
        import gensim  # noqa: F401
    except ImportError:
        return False
    return True


# column key -> (header, scale, format of the scaled mean and spread, unit)
COLUMNS = {"3cosadd": ("analogy 3CosAdd", 100, ".2f", "%"), "3cosmul": ("3CosMul", 100, ".2f", "%"),
           "semantic": ("semantic", 100, ".2f", "%"), "syntactic": ("syntactic", 100, ".2f", "%"),
           "coverage": ("coverage", 100, ".2f", "%"), "wordsim353": ("WS-353 rho", 1, ".3f", ""),
           "simlex999": ("SimLex rho", 1, ".3f", ""), "seconds": ("train s", 1, ".1f", ""),
           "words_per_s": ("words/s", 1e-3, ".0f", "k")}


def _cell(key: str, values: list[float]) -> str:
    """``mean`` or ``mean ± sample sd`` in the column's unit."""
    _, scale, fmt, unit = COLUMNS[key]
    text = f"{np.mean(values) * scale:{fmt}}{unit}"
    return f"{text} ± {np.std(values, ddof=1) * scale:{fmt}}{unit}" if len(values) > 1 else text


def table(summary: dict) -> str:
    """Markdown: mean ± sample standard deviation over the seeds of each method."""
    rows = [[name, len(runs), *(_cell(k, [r[k] for r in runs]) if k in runs[0] else "-" for k in COLUMNS)]
            for name, runs in summary["methods"].items()]
    return markdown_table(["method", "runs", *(c[0] for c in COLUMNS.values())], rows)


def run(cfg: Config) -> dict:
    unknown = [m for m in cfg.methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {METHODS}")
    docs = read_lines(resolve(cfg.corpus))
    docs = docs[:cfg.max_docs] if cfg.max_docs else docs
    start = time.perf_counter()
    corpus = index_word_corpus(docs, min_count=cfg.min_count)
    summary = {"tokens": len(corpus.ids), "vocabulary": len(corpus.words),
               "vocabulary_seconds": time.perf_counter() - start, "methods": {}, "neighbours": {}}
    print(f"{len(docs):,} documents, {len(corpus.ids):,} tokens, {len(corpus.words):,} words "
          f"(min_count {cfg.min_count}) in {summary['vocabulary_seconds']:.1f} s")
    gensim = _gensim_available()
    for method in cfg.methods:
        if method.startswith("gensim") and not gensim:
            print(f"{method}: gensim is not installed, skipped (pip install -e '.[peers]')")
            continue
        runs = []
        for seed in cfg.seeds[:1] if method == "ppmi_svd" else cfg.seeds:
            wv, stats = (train_gensim(cfg, docs, method, seed) if method.startswith("gensim")
                         else train_ours(cfg, corpus, method, seed))
            runs.append({**stats, **evaluate(wv), "seed": seed})
            print(f"{method} seed {seed}: " + ", ".join(f"{k} {v:.4g}" for k, v in runs[-1].items()))
        summary["methods"][method] = runs
        if cfg.save_vectors:
            Path(cfg.workdir).mkdir(parents=True, exist_ok=True)
            wv.save(Path(cfg.workdir) / f"{method}.txt")
        summary["neighbours"][method] = {q: [w for w, _ in wv.nearest(q, 5)] for q in QUERIES if q in wv.index}
    write_config(cfg.workdir, cfg)
    write_summary(cfg.workdir, summary, echo=False)
    print(table(summary))
    for method, neighbours in summary["neighbours"].items():
        print(f"{method} neighbours: " + "; ".join(f"{q}: {', '.join(ws)}" for q, ws in neighbours.items()))
    return summary
