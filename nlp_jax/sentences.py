"""Sentence-level uses of a BERT checkpoint directory (HF format with its tokenizer, e.g. the ``export/``
of the BERT SST-2 experiment, or all-MiniLM-L6-v2):

    python -m nlp_jax.sentences classify runs/bert_sst2/export sentences.txt      # label + probabilities
    python -m nlp_jax.sentences nearest  minilm corpus.txt --query "a great film" -k 5

Input files hold one sentence a line (blank lines are skipped). ``minilm`` names the installed
all-MiniLM-L6-v2. Batches are sorted by length, so padding stays small.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from nlp_jax.data.exports import read_json_file
from nlp_jax.data.files import read_lines
from nlp_jax.data.wordpiece import WordPieceTokenizer
from nlp_jax.models.bert import normalized_mean
from nlp_jax.models.bert_hf import init_hf_bert, load_hf_bert, minilm_dir


@nnx.jit
def _forward(model, batch):
    return model(batch["input_ids"], segments=batch["token_type_ids"], attention_mask=batch["attention_mask"])


@nnx.jit
def classifier_logits(model, batch):
    """A ``BertClassifier``'s logits (B, C) alone (with [CLS] pooling its last block computes [CLS] only)."""
    return model(batch["input_ids"], segments=batch["token_type_ids"], attention_mask=batch["attention_mask"],
                 all_hidden=False)[0]


def batched(model, tokenizer: WordPieceTokenizer, texts: list[str], fn, batch_size: int = 128,
            max_length: int | None = None, forward=_forward, pairs: list[str] | None = None) -> np.ndarray:
    """``fn(forward(model, batch), batch) -> (B, ...)`` over ``texts`` (with their second texts ``pairs``) in
    length-sorted batches, returned in input order (a progress bar on stderr past 8 batches); ``forward``
    defaults to the model's ``(outputs, aux)``."""
    lengths = [len(t) for t in texts] if pairs is None else [len(t) + len(u) for t, u in zip(texts, pairs)]
    order = np.argsort(lengths, kind="stable")
    out = [None] * len(texts)
    starts = range(0, len(texts), batch_size)
    for start in tqdm(starts, desc="sentences", unit="batch", leave=False, disable=len(starts) <= 8):
        idx = order[start:start + batch_size]
        second = None if pairs is None else [pairs[i] for i in idx]
        batch = {k: jnp.asarray(v)
                 for k, v in tokenizer.encode([texts[i] for i in idx], second, max_length=max_length).items()}
        values = np.asarray(fn(forward(model, batch), batch))
        for i, v in zip(idx, values):
            out[i] = v
    return np.stack(out) if out else np.zeros((0,))


class SentenceClassifier:
    """A saved BERT classifier loaded once: ``clf(texts) -> probabilities (N, C)``; ``clf.labels`` names
    the classes (the export's id2label)."""

    def __init__(self, directory: str | Path):
        self.model = load_hf_bert(directory, head="classifier", dropout=0.0)
        if self.model.fresh_heads:
            raise ValueError(f"{directory} has no classifier head (a fine-tuned export has one)")
        self.tokenizer = WordPieceTokenizer.from_pretrained(directory, max_length=self.model.config.block_size)
        config = read_json_file(Path(directory, "config.json"))
        self.labels = [config.get("id2label", {}).get(str(i), str(i)) for i in range(self.model.head.kernel.shape[1])]

    def __call__(self, texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
        return batched(self.model, self.tokenizer, texts, lambda logits, b: jax.nn.softmax(logits, -1),
                       forward=classifier_logits, pairs=pairs)


def classify(directory: str | Path, texts: list[str]) -> tuple[list[str], np.ndarray]:
    """(label names, probabilities (N, C)) of a saved BERT classifier on ``texts``."""
    clf = SentenceClassifier(directory)
    return clf.labels, clf(texts)


def sequence_limit(directory: str | Path, block_size: int) -> int:
    """The pieces a sentence embedding reads: the checkpoint's own ``sentence_bert_config.json``
    ``max_seq_length`` when it has one (all-MiniLM-L6-v2: 256, trained so, although its position table holds
    512), else the model's ``block_size``."""
    config = Path(directory, "sentence_bert_config.json")
    if not config.exists():
        return block_size
    return min(int(read_json_file(config).get("max_seq_length", block_size)), block_size)


def embed(directory: str | Path, texts: list[str], random_seed: int | None = None) -> np.ndarray:
    """L2-normalised masked-mean sentence embeddings (N, D), all-MiniLM-L6-v2's recipe. With ``random_seed``
    the directory's architecture and tokenizer with random weights instead of its own (a probe's baseline)."""
    model = (load_hf_bert(directory, dropout=0.0) if random_seed is None
             else init_hf_bert(directory, dropout=0.0, seed=random_seed))
    tok = WordPieceTokenizer.from_pretrained(directory, max_length=sequence_limit(directory, model.config.block_size))
    return batched(model, tok, texts, lambda out, batch: normalized_mean(out[0], batch["attention_mask"]))


def _read_lines(path: str) -> list[str]:
    try:
        lines = [line.strip() for line in read_lines(path)]
    except ValueError as err:
        raise SystemExit(str(err)) from None
    lines = [line for line in lines if line]
    if not lines:
        raise SystemExit(f"{path}: no sentences (one sentence a line expected)")
    return lines


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
    texts = _read_lines(args.file)
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


if __name__ == "__main__":
    sys.exit(main())
