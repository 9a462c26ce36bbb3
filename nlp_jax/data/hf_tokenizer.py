"""What the package's tokenizers over a Hugging Face ``tokenizers.Tokenizer`` share (``WordPieceTokenizer``,
``BPETokenizer``): the ``tokenizer.json`` they are saved as, a vocabulary trained once per run directory."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from nlp_jax.data.atomic import atomic_path


def read_tokenizer_file(path: Path):
    """The ``tokenizers.Tokenizer`` saved at ``path``; a damaged file is named with the fix."""
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises a bare Exception on a malformed file
        raise ValueError(f"{path}: not a valid tokenizer.json ({err}); restore it, or delete it to train a new "
                         "vocabulary (then move the run's checkpoints aside too: they index the old one)") from None


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
        with atomic_path(directory / "tokenizer.json") as tmp:
            self._tok.save(str(tmp))
        return directory

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def tokens(self, text: str) -> list[str]:
        return self._tok.encode(text).tokens
