"""BERT's WordPiece tokenisation (Wu et al. 2016; Devlin et al. 2019) on Hugging Face ``tokenizers``.

``WordPieceTokenizer.from_pretrained(dir)`` loads a checkpoint's ``tokenizer.json`` or, failing that, its
``vocab.txt`` (+ ``tokenizer_config.json``) and behaves exactly as ``transformers.BertTokenizerFast``:
BERT's normaliser (clean text, Chinese characters split, optional lower-casing and accent stripping),
punctuation-splitting pre-tokeniser, greedy longest-match WordPiece with ``##`` continuations and
``[UNK]`` for words it cannot split, and the ``[CLS] A [SEP] (B [SEP])`` template with segment ids 0 / 1.
``train`` learns a new vocabulary from text with the same pipeline, its ids a function of the texts alone.

``encode`` pads a batch to its longest row rounded up to a multiple of 8 (never to a fixed length) and
truncates rows longer than ``max_length`` by HF's ``longest_first`` rule: the longer sentence of a pair
is cut from its end until both are equally long, then both lose tokens in turn, until the row (specials
included) fits.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from nlp_jax.data.atomic import write_atomic
from nlp_jax.data.hf_tokenizer import HFTokenizer, read_tokenizer_file

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def _pipeline(model, *, lowercase: bool, strip_accents: bool | None, chinese_chars: bool = True):
    """A ``tokenizers.Tokenizer`` with BERT's normaliser, pre-tokeniser and decoder around ``model``."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers

    tok = Tokenizer(model)
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=chinese_chars,
                                                strip_accents=strip_accents, lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    return tok


def _model(tokens: list[str]):
    """A WordPiece model (BERT's: ``[UNK]`` for words it cannot split, longer than 100 characters too) whose
    ids are the tokens' positions."""
    from tokenizers.models import WordPiece

    return WordPiece({t: i for i, t in enumerate(tokens)}, unk_token="[UNK]", max_input_chars_per_word=100)


def _special_ids(tok, source: str) -> dict[str, int]:
    ids = {s: tok.token_to_id(s) for s in SPECIALS}
    missing = [s for s, i in ids.items() if i is None]
    if missing:
        raise ValueError(f"{source}: the vocabulary has no {', '.join(missing)} token; BERT needs all of "
                         f"{', '.join(SPECIALS)}")
    return ids


class WordPieceTokenizer(HFTokenizer):
    """A BERT tokenizer: ``encode(texts, pairs)`` -> ``input_ids``, ``token_type_ids``, ``attention_mask``."""

    def __init__(self, tokenizer, *, max_length: int = 512, source: str = "tokenizer"):
        from tokenizers.processors import TemplateProcessing

        if max_length < 3:
            raise ValueError(f"max_length must be >= 3 (room for [CLS] x [SEP]), got {max_length}")
        self._tok = tokenizer
        self.max_length = max_length
        self.source = source
        ids = _special_ids(tokenizer, source)
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (ids[s] for s in SPECIALS)
        self.special_ids = tuple(sorted(ids.values()))
        tokenizer.post_processor = TemplateProcessing(
            single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
            special_tokens=[("[CLS]", self.cls_id), ("[SEP]", self.sep_id)])
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length, strategy="longest_first")

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, max_length: int | None = None) -> WordPieceTokenizer:
        """From ``tokenizer.json`` when the directory has one, else ``vocab.txt`` (+ ``tokenizer_config.json``
        for ``do_lower_case``, ``strip_accents``, ``tokenize_chinese_chars``, ``model_max_length``)."""
        directory = Path(directory)
        config_file = directory / "tokenizer_config.json"
        config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.exists() else {}
        max_length = max_length or min(int(config.get("model_max_length", 512)), 512)
        if (directory / "tokenizer.json").exists():
            path = directory / "tokenizer.json"
            return cls(read_tokenizer_file(path), max_length=max_length, source=str(path))
        return cls.from_vocab(directory / "vocab.txt", lowercase=config.get("do_lower_case", True),
                              strip_accents=config.get("strip_accents"),
                              chinese_chars=config.get("tokenize_chinese_chars", True), max_length=max_length)

    @classmethod
    def from_vocab(cls, vocab_file: str | Path, *, lowercase: bool = True, strip_accents: bool | None = None,
                   chinese_chars: bool = True, max_length: int = 512) -> WordPieceTokenizer:
        """From a ``vocab.txt`` (one token a line, the line number is its id), as BertTokenizerFast builds it."""
        vocab_file = Path(vocab_file)
        if not vocab_file.exists():
            raise FileNotFoundError(f"no vocabulary file {vocab_file} (expected a BERT vocab.txt or a "
                                    "tokenizer.json beside it)")
        tok = _pipeline(_model(vocab_file.read_text(encoding="utf-8").splitlines()), lowercase=lowercase,
                        strip_accents=strip_accents, chinese_chars=chinese_chars)
        return cls(tok, max_length=max_length, source=str(vocab_file))

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, *, min_frequency: int = 2, lowercase: bool = True,
              max_length: int = 512) -> WordPieceTokenizer:
        """Learn a WordPiece vocabulary of ``vocab_size`` from ``texts`` with BERT's pipeline; the specials
        take ids 0-4 ([PAD], [UNK], [CLS], [SEP], [MASK])."""
        from tokenizers.models import WordPiece
        from tokenizers.trainers import WordPieceTrainer

        if vocab_size <= len(SPECIALS):
            raise ValueError(f"vocab_size must exceed the {len(SPECIALS)} special tokens, got {vocab_size}")
        texts = list(texts)

        def trained(size: int, first: list[str]):
            tok = _pipeline(WordPiece(unk_token="[UNK]"), lowercase=lowercase, strip_accents=None)
            trainer = WordPieceTrainer(vocab_size=size, min_frequency=min_frequency, special_tokens=first,
                                       continuing_subword_prefix="##", show_progress=False)
            tok.train_from_iterator(texts, trainer=trainer)
            return tok.get_vocab()

        # The trainer (a BPE trainer) numbers the "##c" pieces in the order it meets words in a hash map, and
        # breaks ties between equally frequent merges by those numbers: the same texts gave other vocabularies
        # run to run (huggingface/tokenizers#1794). The first pass (no merges) finds every "##c" piece; the
        # second numbers them first, sorted, beside the specials, so every tie is broken the same way.
        continuations = sorted(t for t in trained(len(SPECIALS), list(SPECIALS)) if t.startswith("##"))
        vocab = trained(vocab_size, [*SPECIALS, *continuations])
        # WordPiece encodes by longest match, never by id: the specials keep 0-4, the rest are numbered sorted
        tok = _pipeline(_model(list(SPECIALS) + sorted(t for t in vocab if t not in SPECIALS)), lowercase=lowercase,
                        strip_accents=None)
        tok.add_special_tokens(list(SPECIALS))
        return cls(tok, max_length=max_length, source="trained")

    def save(self, directory: str | Path) -> Path:
        """Write ``tokenizer.json`` (and the ``vocab.txt`` it implies) into ``directory``."""
        directory = super().save(directory)
        vocab = sorted(self._tok.get_vocab().items(), key=lambda kv: kv[1])
        write_atomic(directory / "vocab.txt", "".join(t + "\n" for t, _ in vocab))
        write_atomic(directory / "tokenizer_config.json", json.dumps({"model_max_length": self.max_length}))
        return directory

    def encode(self, texts: list[str] | str, pairs: list[str] | None = None, *, pad_multiple: int = 8,
               max_length: int | None = None) -> dict[str, np.ndarray]:
        """A batch: ``input_ids`` and ``token_type_ids`` (B, L) int32, ``attention_mask`` (B, L) bool, with
        L the longest row rounded up to ``pad_multiple`` (at most ``max_length``); rows longer than
        ``max_length`` (default: the tokenizer's) are truncated by the ``longest_first`` rule."""
        if isinstance(texts, str):
            texts = [texts]
        if pairs is not None and len(pairs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(pairs)} pairs")
        limit = max_length or self.max_length
        if limit != self.max_length:
            self._tok.enable_truncation(limit, strategy="longest_first")
        try:
            enc = self._tok.encode_batch(list(texts) if pairs is None else list(zip(texts, pairs)))
        finally:
            if limit != self.max_length:
                self._tok.enable_truncation(self.max_length, strategy="longest_first")
        longest = max((len(e.ids) for e in enc), default=0)
        width = min(-(-longest // pad_multiple) * pad_multiple, limit)
        ids = np.full((len(enc), width), self.pad_id, np.int32)
        segments = np.zeros((len(enc), width), np.int32)
        mask = np.zeros((len(enc), width), bool)
        for row, e in enumerate(enc):
            ids[row, :len(e.ids)] = e.ids
            segments[row, :len(e.ids)] = e.type_ids
            mask[row, :len(e.ids)] = True
        return {"input_ids": ids, "token_type_ids": segments, "attention_mask": mask}

    def pieces(self, texts: list[str]) -> list[list[int]]:
        """Each text's WordPiece ids without [CLS] / [SEP], never truncated."""
        self._tok.no_truncation()
        try:
            enc = self._tok.encode_batch(list(texts), add_special_tokens=False)
        finally:
            self._tok.enable_truncation(self.max_length, strategy="longest_first")
        return [list(e.ids) for e in enc]

    def decode(self, ids, *, skip_special: bool = True) -> str:
        from nlp_jax.validate import check_ids

        ids = check_ids(ids, self.vocab_size, "decode ids")
        return self._tok.decode([int(i) for i in ids.ravel()], skip_special_tokens=skip_special)
