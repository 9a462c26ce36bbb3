"""Readers of a user's files that name the file, the line and the byte of whatever is wrong in them."""

from __future__ import annotations

import csv
import io
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


def stream_lines(source: str | Path) -> Iterator[str]:
    """The lines of a UTF-8 text file one at a time, each with its line end (a leading byte-order mark
    dropped): a file of any size is read in constant memory. A byte that is not UTF-8 is a ValueError naming
    the file, the line and the byte offset, as :func:`read_text` does."""
    offset = 0
    with open(source, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(f"{source}:{number}: not UTF-8 text ({err.reason} at byte {offset + err.start:,});"
                                 " convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None
            yield line.removeprefix("\ufeff") if number == 1 else line
            offset += len(raw)


TABLE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl"}


def read_records(path: str | Path, columns: Sequence[str], optional: Sequence[str] = ()) -> list[dict]:
    """The rows of a CSV, TSV (a header row of column names first) or JSONL file (one JSON object a line), by
    its extension, each as ``{column: value}`` for ``columns`` (required) and those of ``optional`` the file
    has. Refused with a ValueError naming the file (and the line, for a fault in one): an unknown extension,
    no rows, a missing column (listing the columns there are), a row with another number of fields than the
    header, a line that is not a JSON object or lacks a column. Blank lines are skipped."""
    path = Path(path)
    kind = TABLE_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"{path}: a table must be {', '.join(TABLE_FORMATS)} (by its extension)")
    text = read_text(path)
    rows: list[tuple[int, dict]] = []
    if kind == "jsonl":
        for number, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not a JSON object ({err.msg} at column {err.colno})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{number}: a JSON {type(row).__name__}, not an object of columns")
            rows.append((number, row))
        present = set().union(*(r.keys() for _, r in rows)) if rows else set()
    else:
        reader = csv.reader(io.StringIO(text), delimiter="," if kind == "csv" else "\t")
        header = next((r for r in reader if any(f.strip() for f in r)), None)
        present = set(header or ())
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue
            if len(fields) != len(header):
                raise ValueError(f"{path}:{reader.line_num}: {len(fields)} fields, the header has {len(header)} "
                                 f"({', '.join(header)}); quote a field that holds the delimiter")
            rows.append((reader.line_num, dict(zip(header, fields))))
    if not rows:
        raise ValueError(f"{path}: no rows")
    missing = [c for c in columns if c not in present]
    if missing:
        raise ValueError(f"{path}: no column {', '.join(map(repr, missing))}; its columns are "
                         f"{', '.join(sorted(present))}")
    out = []
    for number, row in rows:
        lacking = [c for c in columns if c not in row]
        if lacking:
            raise ValueError(f"{path}:{number}: the row has no {', '.join(map(repr, lacking))}")
        out.append({c: row[c] for c in (*columns, *optional) if c in row})
    return out
