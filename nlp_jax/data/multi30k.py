"""Multi30k task 1 (Elliott et al. 2016): image captions in English, German and French, 29,000 training and
1,014 validation sentence pairs, original case and untokenised, one sentence a line, line-aligned across
languages (``multi30k/raw/{split}.{lang}.gz``, resolved and checksummed by ``data.root``)."""

from __future__ import annotations

import gzip

from nlp_jax.data.root import resolve

SPLITS = ("train", "val")
LANGUAGES = ("en", "de", "fr")


def read_lines(split: str, lang: str) -> list[str]:
    """The sentences of one side, whitespace at the ends stripped."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if lang not in LANGUAGES:
        raise ValueError(f"lang must be one of {LANGUAGES}, got {lang!r}")
    path = resolve(f"multi30k/raw/{split}.{lang}.gz")
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return [line.strip() for line in f]
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not gzipped UTF-8 text ({err})") from None


def read_pairs(split: str, src: str = "en", tgt: str = "de") -> tuple[list[str], list[str]]:
    """(source sentences, target sentences) of ``split``, aligned line by line."""
    if src == tgt:
        raise ValueError(f"src and tgt must be different languages, got {src!r} twice")
    sources, targets = read_lines(split, src), read_lines(split, tgt)
    if len(sources) != len(targets):
        raise ValueError(f"multi30k {split}: {len(sources)} {src} lines but {len(targets)} {tgt} lines")
    return sources, targets
