"""Readers of a user's files: CSV, TSV and JSONL rows by column name, every fault named with its file and line."""

import json

import pytest

from nlp_jax.data.files import read_lines, read_records


@pytest.mark.parametrize("ext", [".csv", ".tsv", ".jsonl"])
def test_each_table_format_gives_the_named_columns_of_every_row(tmp_path, ext):
    rows = [{"text": "a fine, warm film", "label": "positive", "id": "1"},
            {"text": 'a "dull"\tone', "label": "negative", "id": "2"}]
    path = tmp_path / f"data{ext}"
    if ext == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    else:
        import csv
        with open(path, "w", newline="") as f:
            writer = csv.writer(f, delimiter="," if ext == ".csv" else "\t")
            writer.writerow(["id", "text", "label"])
            writer.writerows([[r["id"], r["text"], r["label"]] for r in rows])
    got = read_records(path, ["text", "label"], optional=["pair"])
    assert got == [{"text": r["text"], "label": r["label"]} for r in rows]


def test_a_faulty_table_is_named_with_its_file_line_and_fix(tmp_path):
    cases = {
        "cols.csv": ("text,score\nhello,1\n", "cols.csv: no column 'label'; its columns are score, text"),
        "short.tsv": ("text\tlabel\nhello\tpos\nbye\n", "short.tsv:3: 1 fields, the header has 2"),
        "bad.jsonl": ('{"text": "a", "label": 1}\n{"text": "b", label: 0}\n', "bad.jsonl:2: not a JSON object"),
        "list.jsonl": ('{"text": "a", "label": 1}\n[1, 2]\n', "list.jsonl:2: a JSON list"),
        "gap.jsonl": ('{"text": "a", "label": 1}\n{"text": "b"}\n', "gap.jsonl:2: the row has no 'label'"),
        "empty.csv": ("text,label\n\n", "empty.csv: no rows"),
        "data.xlsx": ("", "a table must be .csv, .tsv, .jsonl"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=message):
            read_records(tmp_path / name, ["text", "label"])
    (tmp_path / "latin.csv").write_bytes("text,label\ncaf\xe9,1\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin.csv:2: not UTF-8 text .* at byte 14"):
        read_records(tmp_path / "latin.csv", ["text", "label"])


def test_a_byte_order_mark_and_windows_line_ends_are_not_part_of_the_text(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufefffirst\r\nsecond\r\n".encode("utf-8"))
    assert read_lines(path) == ["first", "second"]


def test_streamed_lines_keep_their_ends_drop_a_byte_order_mark_and_name_a_non_utf8_byte(tmp_path):
    from nlp_jax.data.files import stream_lines

    path = tmp_path / "t.txt"
    path.write_bytes("\ufeffone\r\ntwo\n\nthree".encode())
    assert list(stream_lines(path)) == ["one\r\n", "two\n", "\n", "three"]
    path.write_bytes(b"fine\nstill fine\ncaf\xe9\n")
    with pytest.raises(ValueError, match=r"t.txt:3: not UTF-8 text \(invalid continuation byte at byte 19\)"):
        list(stream_lines(path))


def test_rows_and_lines_are_streamed_with_a_bar_over_the_file_s_bytes(tmp_path):
    """A file is read one line at a time: the rows before a faulty line come out before its error, a quoted
    CSV field may hold a newline, and the progress bar ends at the file's size in bytes."""
    from nlp_jax.data.files import iter_records, stream_lines, stream_text

    path = tmp_path / "rows.jsonl"
    path.write_text('{"text": "caf\\u00e9"}\n{"text": "two"}\n[1]\n')
    rows = iter_records(path, ["text"])
    assert next(rows) == {"text": "café"} and next(rows) == {"text": "two"}
    with pytest.raises(ValueError, match="rows.jsonl:3: a JSON list"):
        next(rows)
    table = tmp_path / "rows.csv"
    table.write_text('text,label\r\n"two\r\nlines",a\r\nplain,b\r\n', newline="")
    assert list(iter_records(table, ["text", "label"])) == [{"text": "two\r\nlines", "label": "a"},
                                                           {"text": "plain", "label": "b"}]

    class Bar:
        n = 0

        def update(self, k):
            self.n += k

    text = tmp_path / "t.txt"
    text.write_text("é\n" * 25_001 + "\n \nend")
    bar = Bar()
    assert sum(1 for _ in stream_lines(text, bar)) == 25_004 and bar.n == text.stat().st_size
    assert sum(1 for _ in stream_text([text])) == 25_002  # blank lines skipped, line ends dropped
    assert list(stream_text([text, text]))[25_000:25_004] == ["é", "end", "é", "é"]
    with pytest.raises(FileNotFoundError, match="nowhere.txt: no such file"):
        stream_text([text, tmp_path / "nowhere.txt"])  # at the call, before any line is read
