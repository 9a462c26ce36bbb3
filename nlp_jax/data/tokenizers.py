"""Tokenizers: character-level, and GPT-2's byte-level BPE (Radford et al. 2019; Sennrich et al. 2016).

``GPT2Tokenizer`` runs on tiktoken's fast encoder built from the two OpenAI files (``encoder.json`` and
``vocab.bpe``, resolved through the data root); ``bpe_reference`` is the plain-Python statement of the same
algorithm, kept as the readable specification and checked against the fast encoder in the tests.
"""

from __future__ import annotations

import functools

import numpy as np

from nlp_jax.data.root import read_json, read_text, resolve
from nlp_jax.validate import check_ids

# GPT-2's pre-tokenisation pattern (contractions, letters, numbers, other symbols, whitespace runs).
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
ENDOFTEXT = "<|endoftext|>"


class CharTokenizer:
    """One id per distinct character, ids in sorted character order (nanoGPT's shakespeare_char vocabulary)."""

    def __init__(self, chars: str):
        self.chars = "".join(sorted(set(chars)))
        self._codes = np.frombuffer(self.chars.encode("utf-32-le"), np.uint32)  # sorted code points

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        return cls(text)

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        codes = np.frombuffer(text.encode("utf-32-le"), np.uint32)
        ids = np.searchsorted(self._codes, codes)
        bad = (ids >= len(self._codes)) | (self._codes[np.minimum(ids, len(self._codes) - 1)] != codes)
        if bad.any():
            unknown = sorted({chr(c) for c in codes[bad]})
            raise ValueError(f"characters not in the vocabulary: {unknown!r}")
        return ids.astype(np.int32)

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in check_ids(ids, self.vocab_size, "decode ids").ravel())


class GPT2Tokenizer:
    """GPT-2 byte-level BPE: 50,257 ids (50,000 merges + 256 bytes + ``<|endoftext|>`` = 50256)."""

    def __init__(self):
        import tiktoken
        import tiktoken.load

        ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
            vocab_bpe_file=str(resolve("gpt2_bpe/vocab.bpe")),
            encoder_json_file=str(resolve("gpt2_bpe/encoder.json")),
        )
        self._enc = tiktoken.Encoding(
            name="gpt2_local", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
            special_tokens={ENDOFTEXT: len(ranks)}, explicit_n_vocab=len(ranks) + 1,
        )
        self.eot_token = len(ranks)

    @property
    def vocab_size(self) -> int:
        return self._enc.n_vocab

    def encode(self, text: str, *, allow_special: bool = False) -> np.ndarray:
        """Token ids; ``allow_special`` maps the text ``<|endoftext|>`` to id 50256 instead of BPE pieces."""
        ids = self._enc.encode(text, allowed_special={ENDOFTEXT}) if allow_special else self._enc.encode_ordinary(text)
        return np.asarray(ids, np.int32)

    def decode(self, ids) -> str:
        return self._enc.decode([int(i) for i in check_ids(ids, self.vocab_size, "decode ids").ravel()])


@functools.lru_cache(maxsize=1)
def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 bytes to printable unicode characters."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    extra = [b for b in range(256) if b not in keep]
    return {**{b: chr(b) for b in keep}, **{b: chr(256 + i) for i, b in enumerate(extra)}}


@functools.lru_cache(maxsize=1)
def _reference_tables() -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    encoder = read_json("gpt2_bpe/encoder.json")
    lines = read_text("gpt2_bpe/vocab.bpe").split("\n")[1:]
    merges = [tuple(line.split()) for line in lines if line]
    return encoder, {pair: rank for rank, pair in enumerate(merges)}


def _bpe_word(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Repeatedly merge the adjacent pair with the lowest merge rank until no pair is mergeable."""
    while len(symbols) > 1:
        pairs = [(ranks.get(p, float("inf")), i) for i, p in enumerate(zip(symbols, symbols[1:]))]
        rank, first = min(pairs)
        if rank == float("inf"):
            break
        best = (symbols[first], symbols[first + 1])
        merged, i = [], 0
        while i < len(symbols):
            if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                merged.append(symbols[i] + symbols[i + 1])
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return symbols


def bpe_reference(text: str) -> list[int]:
    """Byte-level BPE in plain Python: pre-tokenise, map bytes to unicode, merge by rank, look up ids."""
    encoder, ranks = _reference_tables()
    b2u = _byte_to_unicode()
    ids = []
    import regex  # only the plain-Python BPE reference needs it

    for piece in regex.findall(GPT2_PATTERN, text):
        symbols = [b2u[b] for b in piece.encode("utf-8")]
        ids.extend(encoder[s] for s in _bpe_word(symbols, ranks))
    return ids
