"""Export directories (a model's weights, config and tokenizers for other tools) checked whole: the writer
ends with :func:`write_checksums`, a ``checksums.sha256`` of every file in the directory (the format
``sha256sum -c`` reads), and every loader starts with :func:`verify_checksums`, so a flipped byte or a
truncated file is named before anything is built from it. A directory without the file (one downloaded
from the Hugging Face Hub, say) is read as it is. The readers here name the file a parse error is in."""

from __future__ import annotations

import json
from pathlib import Path

from nlp_jax.data.atomic import write_atomic
from nlp_jax.data.root import sha256_of

MANIFEST = "checksums.sha256"


def write_checksums(directory: str | Path) -> Path:
    """``<directory>/checksums.sha256`` over every other file under ``directory`` (sorted, relative paths)."""
    directory = Path(directory)
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST and not p.name.startswith("."))
    lines = "".join(f"{sha256_of(p)}  {p.relative_to(directory).as_posix()}\n" for p in files)
    return write_atomic(directory / MANIFEST, lines)


def verify_checksums(directory: str | Path) -> None:
    """Check every file ``checksums.sha256`` lists (nothing when there is none); a missing or changed file is
    a ValueError naming it and the fix."""
    directory = Path(directory)
    manifest = directory / MANIFEST
    if not manifest.exists():
        return
    for number, line in enumerate(manifest.read_text().splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64:
            raise ValueError(f"{manifest}:{number} is not a 'sha256  path' line: the export is damaged; export it "
                             "again from the run's checkpoints")
        path = directory / name
        if not path.is_file():
            raise ValueError(f"{path} is missing from the export ({manifest} lists it): export it again from the "
                             "run's checkpoints")
        if sha256_of(path) != digest:
            raise ValueError(f"{path} does not match its checksum in {manifest}: the file was changed or cut short "
                             "after the export was written; export it again from the run's checkpoints")


def read_json_file(path: str | Path) -> dict:
    """A JSON file, a malformed one named with its line and column."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is malformed JSON: {err.msg} at line {err.lineno}, column {err.colno}") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text: {err.reason} at byte {err.start:,}") from None


def read_safetensors(path: str | Path) -> dict:
    """The arrays of a ``.safetensors`` file (as NumPy), a damaged one named."""
    from safetensors.numpy import load_file

    path = Path(path)
    try:
        return load_file(path)
    except Exception as err:  # safetensors raises its own SafetensorError and OSError, naming no file
        if isinstance(err, FileNotFoundError):
            raise
        raise ValueError(f"{path} is not a readable safetensors file ({err}): it is damaged or cut short") from None
