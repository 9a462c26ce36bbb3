"""Kneser-Ney n-gram LMs on Penn Treebank: ours vs KenLM's ``lmplz`` + ``query``, same invocation.

    KENLM_BIN=/path/to/kenlm/build/bin python benchmarks/bench_ngram.py [--orders 3 5] [--repeats 3]

KenLM is built from the PyPI source distribution (``kenlm==0.3.0``: cmake + ``make lmplz query`` with
Debian's Boost and zlib), never vendored. For each order: the wall time to build the model from the
training text and to score the test set, and the test perplexity, for both. Without ``KENLM_BIN`` only
ours is measured.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from common import print_table

from nlp_jax import ops
from nlp_jax.data.ptb import load_ptb
from nlp_jax.data.root import resolve
from nlp_jax.models.ngram import KneserNeyLM


def ours(order: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    ptb = load_ptb()
    lm = KneserNeyLM(ptb.train, order=order, vocab_size=len(ptb.words), bos=ptb.bos, eos=ptb.eos)
    ppl = float(ops.perplexity(-lm.token_log_probs(ptb.test).mean()))
    return time.perf_counter() - t0, ppl


def kenlm_inputs(tmp: Path) -> dict[str, Path]:
    """PTB with the literal ``<unk>`` renamed: lmplz reserves that symbol; renaming keeps it an ordinary
    word with the same counts (the protocol of the published numbers)."""
    paths = {}
    for split in ("train", "test"):
        paths[split] = tmp / f"ptb.{split}.txt"
        paths[split].write_text(resolve(f"ptb/ptb.{split}.txt").read_text().replace("<unk>", "unkword"))
    return paths


def kenlm(order: int, bin_dir: Path, tmp: Path, inputs: dict[str, Path]) -> tuple[float, float, float]:
    """(build seconds, build + query seconds, test perplexity)."""
    arpa = tmp / f"ptb{order}.arpa"
    t0 = time.perf_counter()
    with open(inputs["train"]) as src, open(arpa, "w") as out:
        subprocess.run([str(bin_dir / "lmplz"), "-o", str(order), "-S", "20%", "-T", str(tmp)],
                       stdin=src, stdout=out, stderr=subprocess.DEVNULL, check=True)
    built = time.perf_counter() - t0
    with open(inputs["test"]) as src:
        res = subprocess.run([str(bin_dir / "query"), "-v", "summary", str(arpa)], stdin=src,
                             capture_output=True, text=True, check=True)
    total = time.perf_counter() - t0
    ppl = float(re.search(r"Perplexity including OOVs:\s*([0-9.]+)", res.stdout).group(1))
    return built, total, ppl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, nargs="+", default=[3, 5])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    bin_dir = Path(os.environ["KENLM_BIN"]) if os.environ.get("KENLM_BIN") else None
    if bin_dir is None:
        print("KENLM_BIN is not set: timing ours only")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        inputs = kenlm_inputs(Path(tmp)) if bin_dir is not None else {}
        for order in args.orders:
            ours_t, kenlm_t, kenlm_build = [], [], []
            for _ in range(args.repeats):  # interleaved: ours, KenLM, ours, ...
                t, ppl = ours(order)
                ours_t.append(t)
                if bin_dir is not None:
                    b, k, kppl = kenlm(order, bin_dir, Path(tmp), inputs)
                    kenlm_t.append(k)
                    kenlm_build.append(b)
            row = [order, f"{ppl:.2f}", f"{np.median(ours_t):.2f}"]
            if kenlm_t:
                row += [f"{kppl:.2f}", f"{np.median(kenlm_build):.2f}", f"{np.median(kenlm_t):.2f}",
                        f"{np.median(ours_t) / np.median(kenlm_t):.2f}x"]
            rows.append(row)
    header = ["order", "ours test ppl", "ours s (load+build+eval)"]
    if bin_dir is not None:
        header += ["KenLM test ppl", "KenLM lmplz s", "KenLM lmplz+query s", "ours time / KenLM time"]
    print_table(f"Kneser-Ney on PTB, median of {args.repeats} interleaved runs", header, rows)


if __name__ == "__main__":
    main()
