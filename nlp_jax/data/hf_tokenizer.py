"""What the package's tokenizers over a Hugging Face ``tokenizers.Tokenizer`` share (``WordPieceTokenizer``,
``BPETokenizer``): the ``tokenizer.json`` they are saved as, a vocabulary trained once per run directory."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


class HFTokenizer:
    """A subclass sets ``self._tok`` and defines ``train(texts, vocab_size, **kw)`` and
    ``from_pretrained(directory, **kw)``."""

    @classmethod
    def trained_once(cls, directory: str | Path, texts: Iterable[str], vocab_size: int, **kw):
        """The tokenizer kept in ``directory``, or one trained on ``texts`` and saved there first: a resumed run
        reads the one its weights learnt (one trained before WordPiece's ids were made canonical, or by another
        version of ``tokenizers``, may number or split the same texts otherwise)."""
        if Path(directory, "tokenizer.json").exists():
            return cls.from_pretrained(directory, **kw)
        tok = cls.train(texts, vocab_size, **kw)
        tok.save(directory)
        return tok

    def save(self, directory: str | Path) -> Path:
        """Write ``<directory>/tokenizer.json`` (to a temporary file first, renamed: a crash or a full disk
        never leaves a partial file that later runs would read)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".tokenizer.json.{os.getpid()}.tmp"
        try:
            self._tok.save(str(tmp))
            os.replace(tmp, directory / "tokenizer.json")
        finally:
            tmp.unlink(missing_ok=True)
        return directory

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def tokens(self, text: str) -> list[str]:
        return self._tok.encode(text).tokens
