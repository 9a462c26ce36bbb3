"""``nlp-jax ngram``: an interpolated modified Kneser-Ney language model of your text (``models.ngram``, as KenLM's
``lmplz`` builds it), its perplexity on other files, and the model as an ARPA file, which KenLM, SRILM and other
backoff-model readers score as we do (tested against an independent reader).

    nlp-jax ngram train.txt --order 3 --eval valid.txt --eval test.txt --out runs/my_kn3

Input: UTF-8 text, one sentence a line (blank lines skipped), words split at whitespace; several training
files are read as one corpus. Each sentence is scored with ``<s>`` before it and ``</s>`` after it, the end
token counted as a token (as KenLM and SRILM count); a word the training saw fewer than ``--min-count`` times,
or never, is ``<unk>`` (counted in the summary). Output in ``--out``: ``model.arpa`` and ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import Counter
from pathlib import Path

import numpy as np

from nlp_jax.data.files import stream_text
from nlp_jax.models.ngram import KneserNeyLM

BOS, EOS, UNK = "<s>", "</s>", "<unk>"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nlp-jax ngram", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", help="UTF-8 training text, one sentence a line")
    p.add_argument("--out", required=True, help="the output folder (created)")
    p.add_argument("--order", type=int, default=3, help="n, the longest n-gram (default: 3)")
    p.add_argument("--min-count", type=int, default=1,
                   help="words seen fewer times in training become <unk> (default: 1, every word kept)")
    p.add_argument("--eval", action="append", default=[], help="a file to report the perplexity of (repeatable)")
    return p


def encode(paths: list[str], index: dict[str, int], what: str) -> tuple[np.ndarray, int, int]:
    """(<s> w1 .. wn </s> ids of every line of ``paths``, streamed: one int32 array; sentences; words not in
    ``index``, which become <unk>)."""
    parts, chunk, sentences, unknown = [], [], 0, 0
    bos, eos, unk = index[BOS], index[EOS], index[UNK]
    for line in stream_text(paths, what):
        ids = [index.get(w, unk) for w in line.split()]
        unknown += ids.count(unk)
        chunk += [bos, *ids, eos]
        sentences += 1
        if len(chunk) >= 1 << 20:
            parts.append(np.asarray(chunk, np.int32))
            chunk = []
    parts.append(np.asarray(chunk, np.int32))
    return np.concatenate(parts), sentences, unknown


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.order < 1 or args.min_count < 1:
        raise SystemExit(f"nlp-jax ngram: --order and --min-count must be >= 1, got {args.order}, {args.min_count}")
    start = time.perf_counter()
    counts = Counter()  # two passes over the files, streamed: memory holds the counts, then the ids (4 bytes a token)
    for line in stream_text(args.files, "count words"):
        counts.update(line.split())
    reserved = [w for w in (BOS, EOS) if w in counts]
    if reserved:
        raise ValueError(f"{reserved} appear in the training text; they mark sentence boundaries here (each line "
                         "is a sentence): remove them")
    words = [BOS, EOS, UNK] + sorted(w for w, c in counts.items() if c >= args.min_count and w != UNK)
    index = {w: i for i, w in enumerate(words)}
    del counts
    train_ids, n_train, _ = encode(args.files, index, "encode")
    lm = KneserNeyLM(train_ids, order=args.order, vocab_size=len(words), bos=index[BOS], eos=index[EOS])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lm.save_arpa(out / "model.arpa", words)
    summary = {"order": args.order, "files": args.files, "sentences": n_train,
               "tokens": int(len(train_ids) - n_train), "vocabulary": len(words), "evaluations": {}}
    for path in args.eval:
        ids, held, unknown = encode([path], index, f"score {path}")
        logp = lm.token_log_probs(ids)
        summary["evaluations"][path] = {"sentences": held, "tokens": len(logp), "unknown_words": unknown,
                                        "perplexity": math.exp(-float(logp.mean())),
                                        "log10_prob": float(logp.sum() / math.log(10))}
        e = summary["evaluations"][path]
        print(f"{path}: perplexity {e['perplexity']:.2f} over {e['tokens']:,} tokens ({held:,} sentences; "
              f"{unknown:,} words scored as <unk>)")
    summary["seconds"] = round(time.perf_counter() - start, 2)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"KN-{args.order} on {summary['tokens']:,} tokens, vocabulary {len(words):,}: {out}/model.arpa "
          f"({summary['seconds']} s)")
    return 0
