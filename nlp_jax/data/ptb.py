"""Mikolov's Penn Treebank (10k vocabulary, ``<unk>`` as an ordinary word): word ids for sentence
streams ``<s> w ... </s>`` (one ``</s>`` per line, the ``<eos>`` of the usual setup)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nlp_jax.data.root import read_text

BOS, EOS = "<s>", "</s>"


@dataclass(frozen=True)
class PTB:
    words: list[str]  # id -> word (sorted), including <s> and </s>
    train: np.ndarray  # token-id streams with <s> before and </s> after every sentence
    valid: np.ndarray
    test: np.ndarray

    @property
    def bos(self) -> int:
        return self.words.index(BOS)

    @property
    def eos(self) -> int:
        return self.words.index(EOS)


def load_ptb() -> PTB:
    splits = {name: [line.split() for line in read_text(f"ptb/ptb.{name}.txt").splitlines()]
              for name in ("train", "valid", "test")}
    words = sorted({w for sentence in splits["train"] for w in sentence} | {BOS, EOS})
    index = {w: i for i, w in enumerate(words)}

    def stream(sentences):
        unknown = {w for s in sentences for w in s} - index.keys()
        if unknown:
            raise ValueError(f"words outside the training vocabulary: {sorted(unknown)[:5]}")
        out = [[index[BOS], *(index[w] for w in s), index[EOS]] for s in sentences]
        return np.fromiter((i for s in out for i in s), np.int64)

    return PTB(words, *(stream(splits[n]) for n in ("train", "valid", "test")))


def lm_stream(ptb: PTB, split: str) -> tuple[np.ndarray, int]:
    """The usual neural-LM stream: words with one end-of-sentence token per line and no ``<s>``; ids
    above ``<s>`` shift down by one so the vocabulary is exactly the 10,000 predicted types.
    Returns (ids, vocab_size)."""
    stream = getattr(ptb, split)
    stream = stream[stream != ptb.bos]
    return np.where(stream > ptb.bos, stream - 1, stream), len(ptb.words) - 1
