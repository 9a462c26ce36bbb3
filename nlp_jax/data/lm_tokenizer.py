"""The tokenizers a language model of your own text is trained with, each a ``tokenizers.Tokenizer`` saved as
the ``tokenizer.json`` that Hugging Face's ``PreTrainedTokenizerFast`` (and so ``transformers``) reads:

- ``char``: one id per character of the training text (nanoGPT's shakespeare_char), plus ``<unk>`` for a
  character the training text never had;
- ``bpe``: byte-level BPE (GPT-2's scheme: bytes, never an unknown token) with merges learnt from the text;
- ``gpt2``: GPT-2's own 50,257-token vocabulary, built from OpenAI's ``encoder.json`` and ``vocab.bpe``
  (the data root's ``gpt2_bpe/``); it numbers a text as tiktoken does (tested).

Every kind has ``<|endoftext|>``, which separates documents (files) in a training stream. ``encode`` never
adds special tokens.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from nlp_jax.data.files import byte_bar, stream_lines
from nlp_jax.data.hf_tokenizer import HFTokenizer, read_tokenizer_file

KINDS = ("char", "bpe", "gpt2")
ENDOFTEXT, UNK = "<|endoftext|>", "<unk>"


def _char_pipeline(chars: Iterable[str]):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    vocab = {UNK: 0, ENDOFTEXT: 1, **{c: i + 2 for i, c in enumerate(sorted(set(chars) - {UNK, ENDOFTEXT}))}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character alone
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens([UNK, ENDOFTEXT])
    return tok


def _byte_level(model):
    from tokenizers import Tokenizer, decoders, pre_tokenizers

    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # GPT-2's pattern, then bytes
    tok.decoder = decoders.ByteLevel()
    return tok


class LMTokenizer(HFTokenizer):
    """``encode(text) -> ids``, ``decode(ids) -> text``, ``eot_id`` (``<|endoftext|>``), ``unk_id`` (None
    for the byte-level kinds, which have no unknown text)."""

    def __init__(self, tokenizer, source: str = "tokenizer"):
        self.eot_id = tokenizer.token_to_id(ENDOFTEXT)
        if self.eot_id is None:
            raise ValueError(f"{source}: no {ENDOFTEXT} token: not a tokenizer of `nlp-jax lm` (train one with "
                             f"LMTokenizer.train)")
        self.unk_id = tokenizer.token_to_id(UNK)
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self._tok = tokenizer

    @classmethod
    def train(cls, texts: Iterable[str], kind: str, vocab_size: int = 4096) -> LMTokenizer:
        """A ``kind`` tokenizer of ``texts`` (an iterable read once: lines of a large file are streamed);
        ``vocab_size`` counts the specials and applies to ``bpe`` alone."""
        from tokenizers import models, pre_tokenizers, trainers

        if kind == "char":
            chars: set[str] = set()
            for text in texts:
                chars.update(text)
            return cls(_char_pipeline(chars), source="char")
        if kind == "gpt2":
            from nlp_jax.data.root import resolve

            tok = _byte_level(models.BPE.from_file(str(resolve("gpt2_bpe/encoder.json")),
                                                   str(resolve("gpt2_bpe/vocab.bpe"))))
            tok.add_special_tokens([ENDOFTEXT])
            return cls(tok, source="gpt2")
        if kind != "bpe":
            raise ValueError(f"tokenizer kind {kind!r} unknown; choose from {', '.join(KINDS)}")
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        if vocab_size < len(alphabet) + 1:
            raise ValueError(f"vocab_size={vocab_size}: a byte-level BPE needs at least {len(alphabet) + 1} "
                             f"(its {len(alphabet)} bytes and {ENDOFTEXT})")
        tok = _byte_level(models.BPE())
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[ENDOFTEXT], initial_alphabet=alphabet,
                                      show_progress=False)
        tok.train_from_iterator(texts, trainer)
        return cls(tok, source="bpe")

    @classmethod
    def trained_once(cls, directory: str | Path, texts: Iterable[str], kind: str, vocab_size: int = 4096):
        """The tokenizer kept in ``directory``, or one trained on ``texts`` and saved there first."""
        if Path(directory, "tokenizer.json").exists():
            return cls.from_pretrained(directory)
        tok = cls.train(texts, kind, vocab_size)
        tok.save(directory)
        return tok

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> LMTokenizer:
        path = Path(directory, "tokenizer.json")
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer file {path}")
        return cls(read_tokenizer_file(path), source=str(path))

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self._tok.encode(text, add_special_tokens=False).ids, np.int32)

    def encode_lines(self, lines: Iterable[str], block: int = 1000, parallel: int = 16) -> Iterator[np.ndarray]:
        """The ids of ``lines`` (line ends kept), read as a stream: each ``block`` lines are encoded as one text,
        ``parallel`` blocks in one multi-threaded call, so a file of millions of lines never sits in memory
        as text. Where a block ends, trailing whitespace may be split otherwise than in one whole text (GPT-2's
        pattern looks ahead across line ends): about one token in ten thousand differs."""
        texts: list[str] = []
        lines_in_block: list[str] = []
        for line in lines:
            lines_in_block.append(line)
            if len(lines_in_block) == block:
                texts.append("".join(lines_in_block))
                lines_in_block = []
                if len(texts) == parallel:
                    yield self._encode_batch(texts)
                    texts = []
        if lines_in_block:
            texts.append("".join(lines_in_block))
        if texts:
            yield self._encode_batch(texts)

    def encode_files(self, paths: Sequence[str], what: str = "text") -> np.ndarray:
        """``<|endoftext|>`` + the ids of each file in turn, one int32 stream, each file streamed
        (:func:`~nlp_jax.data.files.stream_lines`) with a progress bar (``what`` names it)."""
        parts = []
        with byte_bar(paths, f"tokenize {what}") as bar:
            for path in paths:
                parts.append(np.asarray([self.eot_id], np.int32))
                parts.extend(self.encode_lines(stream_lines(path, bar)))
        return np.concatenate(parts)

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        rows = [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]
        return np.fromiter((i for r in rows for i in r), np.int32, count=sum(map(len, rows)))

    def decode(self, ids) -> str:
        """The text of ``ids``, ``<|endoftext|>`` dropped (``<unk>`` too: it spells no text)."""
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=True)

    def pieces(self, texts: list[str]) -> list[list[int]]:
        """The ids of each text (``generate``'s prompts)."""
        return [list(self.encode(t)) for t in texts]

    @property
    def pad_id(self) -> int:
        """The id a left-padded prompt batch is padded with (masked out): ``<|endoftext|>``."""
        return self.eot_id
