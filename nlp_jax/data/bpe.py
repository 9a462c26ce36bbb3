"""Subword tokenisation for translation: byte-pair encoding (Sennrich et al. 2016) on Hugging Face
``tokenizers``, reversible, so a translation is detokenised exactly and scored as raw text.

The pipeline: Unicode NFC, then a SentencePiece-style pre-tokeniser (each space becomes ``▁`` on the piece
after it) with punctuation split off, then BPE merges learnt from the training text alone. Decoding undoes
``▁`` and drops the specials. Case is kept (BLEU is reported cased and lower-cased). A character never seen
in training becomes ``<unk>`` (id 1), which decodes to nothing: say so rather than guess.

Ids 0-3 are ``<pad>``, ``<unk>``, ``<s>``, ``</s>``. ``encode`` returns pieces without specials; the model's
data pipeline adds ``<s>`` / ``</s>`` where it needs them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from nlp_jax.data.hf_tokenizer import HFTokenizer, read_tokenizer_file

SPECIALS = ("<pad>", "<unk>", "<s>", "</s>")
PAD, UNK, BOS, EOS = range(4)


def _pipeline():
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always"),
                                                 pre_tokenizers.Punctuation()])
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    return tok


class BPETokenizer(HFTokenizer):
    """``encode(texts) -> [[ids]]``, ``decode(ids) -> text``; ``train`` learns one, ``save`` /
    ``from_pretrained`` / ``trained_once`` keep it as ``<dir>/tokenizer.json``."""

    pad_id, unk_id, bos_id, eos_id = PAD, UNK, BOS, EOS

    def __init__(self, tokenizer, source: str = "tokenizer"):
        for i, name in enumerate(SPECIALS):
            if tokenizer.token_to_id(name) != i:
                raise ValueError(f"{source}: {name} must have id {i} (ids 0-3 are {', '.join(SPECIALS)}), got "
                                 f"{tokenizer.token_to_id(name)}")
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self._tok = tokenizer

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, *, min_frequency: int = 2) -> BPETokenizer:
        """Learn merges from ``texts`` until the vocabulary (specials included) has ``vocab_size`` entries
        or no pair occurs ``min_frequency`` times."""
        from tokenizers import trainers

        if vocab_size < len(SPECIALS) + 1:
            raise ValueError(f"vocab_size must be > {len(SPECIALS)} (the specials), got {vocab_size}")
        tok = _pipeline()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                      special_tokens=list(SPECIALS), show_progress=False)
        tok.train_from_iterator(texts, trainer)
        return cls(tok)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> BPETokenizer:
        path = Path(directory, "tokenizer.json")
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer file {path}: train one (BPETokenizer.train) and save it there")
        return cls(read_tokenizer_file(path), source=str(path))

    def encode(self, texts: list[str]) -> list[list[int]]:
        """The pieces of each text, no specials, never truncated."""
        if isinstance(texts, str):
            raise TypeError("encode takes a list of texts; wrap one text in a list")
        return [e.ids for e in self._tok.encode_batch(list(texts))]

    def decode(self, ids) -> str:
        """The text of ``ids``; specials (padding, ``<s>``, ``</s>``, ``<unk>``) are dropped."""
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=True).strip()

    def decode_batch(self, rows) -> list[str]:
        return [self.decode(r) for r in rows]
