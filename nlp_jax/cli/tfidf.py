"""``nlp-jax tfidf``: TF-IDF vectors of your documents (``models.tfidf``), and the documents nearest to a query.

    nlp-jax tfidf docs.txt --mode sklearn --out runs/my_tfidf --query "a king in his castle" -k 3

Input: UTF-8 text, one document a line (blank lines skipped). ``--mode sklearn`` weighs as scikit-learn's
``TfidfVectorizer`` does by default (raw counts, smoothed IDF, rows of unit length: equal to it, tested);
``--mode seed`` as the cheat sheet defines TF-IDF. Output in ``--out``: ``tfidf.npz`` (the documents x terms
matrix in CSR form: ``indptr``, ``indices``, ``data``, ``shape``, which
``scipy.sparse.csr_matrix((data, indices, indptr), shape)`` reads), ``vocabulary.tsv`` (each column's term
and IDF) and ``summary.json`` (sizes, and each query's nearest documents by cosine similarity).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from nlp_jax.data.files import stream_text
from nlp_jax.models.tfidf import Tfidf, TfidfConfig
from nlp_jax.ops.counting import CSR


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nlp-jax tfidf", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", help="UTF-8 text files, one document a line")
    p.add_argument("--out", required=True, help="the output folder (created)")
    p.add_argument("--mode", choices=("sklearn", "seed"), default="sklearn", help="the weighting (default: sklearn)")
    p.add_argument("--min-count", type=int, default=1, help="drop terms seen fewer times (default: 1)")
    p.add_argument("--stop-words", help="a file of words to leave out, one a line (default: none)")
    p.add_argument("--query", action="append", default=[], help="a text whose nearest documents to report (repeatable)")
    p.add_argument("-k", type=int, default=5, help="documents reported per query (default: 5)")
    return p


def _unit_rows(m: CSR) -> CSR:
    norms = np.sqrt(np.bincount(m.row_ids, weights=m.data ** 2, minlength=m.shape[0]))
    return m.with_data(m.data / np.maximum(norms, 1e-12)[m.row_ids])


def nearest(docs: CSR, query: CSR, k: int) -> list[tuple[int, float]]:
    """The ``k`` rows of ``docs`` most cosine-similar to the one row of ``query`` (ties: the earlier row)."""
    q = np.zeros(docs.shape[1])
    unit = _unit_rows(query)
    q[unit.indices] = unit.data
    d = _unit_rows(docs)
    sims = np.bincount(d.row_ids, weights=d.data * q[d.indices], minlength=docs.shape[0])
    top = np.argsort(-sims, kind="stable")[:k]
    return [(int(i), float(sims[i])) for i in top]


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.min_count < 1 or args.k < 1:
        raise SystemExit(f"nlp-jax tfidf: --min-count and -k must be >= 1, got {args.min_count}, {args.k}")
    start = time.perf_counter()
    docs = list(stream_text(args.files, "read"))  # held: N and the nearest documents' text
    stop = tuple(w.strip() for w in stream_text([args.stop_words], "stop words")) if args.stop_words else ()
    model = Tfidf(TfidfConfig(mode=args.mode, min_count=args.min_count, stop_words=stop))
    try:
        m = model.fit_transform(docs)
    except ValueError as err:
        raise SystemExit(f"nlp-jax tfidf: {err} (--min-count, --stop-words)") from None
    terms = model.vocabulary.words
    if not terms:
        raise SystemExit(f"nlp-jax tfidf: no term is left (seen --min-count {args.min_count} times and not a stop "
                         "word): lower --min-count")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "tfidf.npz", indptr=m.indptr, indices=m.indices, data=m.data, shape=np.asarray(m.shape))
    (out / "vocabulary.tsv").write_text("".join(f"{t}\t{v:.10g}\n" for t, v in zip(terms, model.idf)),
                                        encoding="utf-8")
    queries = {q: [{"document": i + 1, "cosine": s, "text": docs[i][:80]} for i, s in
                   nearest(m, model.transform([q]), min(args.k, len(docs)))] for q in args.query}
    summary = {"mode": args.mode, "files": args.files, "documents": len(docs), "terms": len(terms),
               "stored_values": int(len(m.data)), "seconds": round(time.perf_counter() - start, 2),
               "queries": queries}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for q, hits in queries.items():
        print(f"{q!r}: " + "; ".join(f"document {h['document']} ({h['cosine']:.3f})" for h in hits))
    print(f"{len(docs):,} documents x {len(terms):,} terms in {out}/tfidf.npz ({summary['seconds']} s)")
    return 0
