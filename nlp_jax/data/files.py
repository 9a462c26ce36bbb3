"""Readers of a user's files that name the file, the line and the byte of whatever is wrong in them."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path


def read_text(source: str | Path) -> str:
    """A UTF-8 text file (``'-'``: standard input), a leading byte-order mark dropped; a byte that is not UTF-8
    is a ValueError naming the file, the line and the byte offset."""
    data = sys.stdin.buffer.read() if str(source) == "-" else Path(source).read_bytes()
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ValueError(f"{source}:{line}: not UTF-8 text ({err.reason} at byte {err.start:,}); convert the file "
                         "to UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None


def read_lines(source: str | Path) -> list[str]:
    """The lines of a UTF-8 text file (:func:`read_text`), split at newlines only (a form feed or U+2028
    inside a line stays in it, so line i of the output of a line-by-line tool is line i of its input)."""
    lines = read_text(source).split("\n")
    lines = lines[:-1] if lines and lines[-1] == "" else lines  # the final newline ends the last line
    return [line.removesuffix("\r") for line in lines]  # Windows line ends


def stream_lines(source: str | Path, progress=None) -> Iterator[str]:
    """The lines of a UTF-8 text file one at a time, each with its line end (a leading byte-order mark
    dropped): a file of any size is read in constant memory. A byte that is not UTF-8 is a ValueError naming
    the file, the line and the byte offset, as :func:`read_text` does. ``progress`` (a tqdm bar, e.g.
    :func:`byte_bar`'s) is advanced by the bytes read, every 10,000 lines and at the end."""
    offset = unreported = 0
    with open(source, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(f"{source}:{number}: not UTF-8 text ({err.reason} at byte {offset + err.start:,});"
                                 " convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None
            yield line.removeprefix("\ufeff") if number == 1 else line
            offset += len(raw)
            if progress is not None and number % 10_000 == 0:
                progress.update(offset - unreported)
                unreported = offset
    if progress is not None:
        progress.update(offset - unreported)


def byte_bar(paths: Sequence[str | Path], what: str):
    """A progress bar on stderr over the bytes of ``paths`` (for :func:`stream_lines`), named ``what``."""
    from tqdm.auto import tqdm

    return tqdm(total=sum(Path(p).stat().st_size for p in paths), unit="B", unit_scale=True, desc=what, leave=False)


def stream_text(paths: Sequence[str | Path], what: str = "read") -> Iterator[str]:
    """The non-blank lines of UTF-8 text files read in turn, line ends dropped, streamed
    (:func:`stream_lines`) with one progress bar named ``what``. A missing file is a FileNotFoundError at
    the call; no text in them all, a ValueError naming them once they are read."""
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such file")

    def lines():
        seen = False
        with byte_bar(paths, what) as bar:
            for path in paths:
                for line in stream_lines(path, bar):
                    line = line.rstrip("\r\n")
                    if line.strip():
                        seen = True
                        yield line
        if not seen:
            raise ValueError(f"{', '.join(map(str, paths))} holds no text")

    return lines()


TABLE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl"}


def iter_records(path: str | Path, columns: Sequence[str], optional: Sequence[str] = (),
                 what: str = "read") -> Iterator[dict]:
    """The rows of a CSV, TSV (a header row of column names first) or JSONL file (one JSON object a line), by
    its extension, each as ``{column: value}`` for ``columns`` (required) and those of ``optional`` the row
    has, streamed (:func:`stream_lines`: constant memory) with a progress bar named ``what``. Refused with a
    ValueError naming the file (and the line, for a fault in one): an unknown extension, a missing column
    (listing the columns there are), a row with another number of fields than the header, a line that is not
    a JSON object or lacks a column. Blank lines are skipped."""
    path = Path(path)
    kind = TABLE_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"{path}: a table must be {', '.join(TABLE_FORMATS)} (by its extension)")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")

    def picked(number: int, row: dict, first: bool) -> dict:
        lacking = [c for c in columns if c not in row]
        if lacking and first:  # (a later row that lacks one is a fault of that row)
            raise ValueError(f"{path}: no column {', '.join(map(repr, lacking))}; its columns are "
                             f"{', '.join(sorted(row))}")
        if lacking:
            raise ValueError(f"{path}:{number}: the row has no {', '.join(map(repr, lacking))}")
        return {c: row[c] for c in (*columns, *optional) if c in row}

    def rows():
        with byte_bar([path], what) as bar:
            lines = stream_lines(path, bar)
            first = True
            if kind == "jsonl":
                for number, line in enumerate(lines, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as err:
                        raise ValueError(f"{path}:{number}: not a JSON object ({err.msg} at column {err.colno})"
                                         ) from None
                    if not isinstance(row, dict):
                        raise ValueError(f"{path}:{number}: a JSON {type(row).__name__}, not an object of columns")
                    yield picked(number, row, first)
                    first = False
                return
            reader = csv.reader(lines, delimiter="," if kind == "csv" else "\t")
            header = next((r for r in reader if any(f.strip() for f in r)), None)
            if header is not None and (missing := [c for c in columns if c not in header]):
                raise ValueError(f"{path}: no column {', '.join(map(repr, missing))}; its columns are "
                                 f"{', '.join(sorted(header))}")
            for fields in reader:
                if not any(f.strip() for f in fields):
                    continue
                if len(fields) != len(header):
                    raise ValueError(f"{path}:{reader.line_num}: {len(fields)} fields, the header has {len(header)} "
                                     f"({', '.join(header)}); quote a field that holds the delimiter")
                yield picked(reader.line_num, dict(zip(header, fields)), first)
                first = False

    return rows()


def read_records(path: str | Path, columns: Sequence[str], optional: Sequence[str] = ()) -> list[dict]:
    """:func:`iter_records`' rows as a list; a file without rows is a ValueError naming it."""
    records = list(iter_records(path, columns, optional))
    if not records:
        raise ValueError(f"{path}: no rows")
    return records
