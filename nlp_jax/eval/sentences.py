"""Sentence-level uses of a BERT checkpoint directory (HF format with its tokenizer: the ``export/`` of the
BERT SST-2 experiment or of ``nlp-jax classify``, or all-MiniLM-L6-v2): class probabilities of a saved
classifier, and sentence embeddings. Batches are sorted by length, so padding stays small. ``nlp-jax
sentences`` is the command line.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from nlp_jax.data.exports import read_json_file
from nlp_jax.data.wordpiece import WordPieceTokenizer
from nlp_jax.models.bert import normalized_mean
from nlp_jax.models.bert_hf import init_hf_bert, load_hf_bert


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
