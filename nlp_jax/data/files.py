"""Readers of a user's files that name the file, the line and the byte of whatever is wrong in them."""

from __future__ import annotations

import sys
from pathlib import Path


def read_lines(source: str | Path) -> list[str]:
    """The lines of a UTF-8 text file (``'-'``: standard input), split at newlines only (a form feed or
    U+2028 inside a line stays in it, so line i of the output of a line-by-line tool is line i of its
    input); a byte that is not UTF-8 is a ValueError naming the file, the line and the byte offset."""
    data = sys.stdin.buffer.read() if str(source) == "-" else Path(source).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ValueError(f"{source}:{line}: not UTF-8 text ({err.reason} at byte {err.start:,}); convert the file "
                         "to UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None
    lines = text.split("\n")
    lines = lines[:-1] if lines and lines[-1] == "" else lines  # the final newline ends the last line
    return [line.removesuffix("\r") for line in lines]  # Windows line ends
