"""``nlp-jax translate-train`` end to end on tiny parallel files (a TSV, or two aligned files with a held-out
share), its export translating a file, and bad parallel input named."""

import json
import re
from pathlib import Path

import pytest

from nlp_jax.cli import main

ROOT = Path(__file__).resolve().parents[1]
TSV, VALID = ROOT / "docs/examples/parallel.tsv", ROOT / "docs/examples/parallel_valid.tsv"
QUICK = ["--steps", "2", "--vocab-size", "120", "--budget", "256", "--set", "train.eval_every=0", "--set",
         "train.progress=false", "--set", "lstm.hidden=16", "--set", "lstm.attn_dim=16", "--set", "lstm.emb=16",
         "--set", "beam=2", "--set", "heatmaps=1"]


def test_a_tsv_trains_scores_and_exports_a_translator_that_translates_a_file(tmp_path, capsys):
    out = tmp_path / "mt"
    assert main(["translate-train", str(TSV), "--valid", str(VALID), "--out", str(out), *QUICK]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "finished" and s["train_pairs"] == 294 and s["pairs_cut"] == 0
    assert 0 <= s["greedy"]["bleu"] <= 100 and "case:mixed" in s["beam2"]["signature"]
    assert len((out / "val.greedy.tgt").read_text().splitlines()) == 40
    sources = tmp_path / "src.txt"
    sources.write_text("the king ate bread\nthe cat slept\n")
    capsys.readouterr()
    assert main(["translate", str(out / "export"), str(sources)]) in (0, None)
    assert len(capsys.readouterr().out.strip().splitlines()) == 2


def test_two_aligned_files_hold_out_a_seeded_share_and_bad_parallel_input_is_named(tmp_path, refusal):
    src, tgt = tmp_path / "a.src", tmp_path / "a.tgt"
    rows = [line.split("\t") for line in TSV.read_text().splitlines()]
    src.write_text("".join(r[0] + "\n" for r in rows))
    tgt.write_text("".join(r[1] + "\n" for r in rows))
    out = tmp_path / "mt"
    assert main(["translate-train", "--source", str(src), "--target", str(tgt), "--out", str(out), *QUICK,
                 "--set", "heatmaps=0"]) == 0
    assert json.loads((out / "summary.json").read_text())["train_pairs"] == 294 - 15  # 5% of 294 held out
    short = tmp_path / "short.tgt"
    short.write_text("one\n")
    tabs = tmp_path / "tabs.tsv"
    tabs.write_text("a\tb\nc d e\n")
    empty = tmp_path / "empty.tsv"
    empty.write_text("a\tb\n\t c\n")
    for args, message in [(["--source", str(src), "--target", str(short)], "has 294 lines but .*short.tgt has 1"),
                          ([str(tabs)], r"tabs.tsv:2: 1 tab-separated fields, expected source<TAB>target"),
                          ([str(empty)], r"empty.tsv:2: an empty source sentence"),
                          ([str(TSV), "--source", str(src)], "one of the two"),
                          (["--source", str(src)], "source_file and target_file go together")]:
        shown = refusal(["translate-train", *args, "--out", str(tmp_path / "o"), *QUICK])
        assert re.search(message, shown), (message, shown)


def test_read_parallel_pairs_a_tsv_or_two_aligned_files_alike_and_skips_only_a_tsv_s_blank_lines(tmp_path):
    from nlp_jax.cli.translate_train import read_parallel

    tsv = tmp_path / "p.tsv"
    tsv.write_text("the cat\tle chat\n\n the dog \tle chien\n")
    (tmp_path / "a.en").write_text("the cat\n the dog \n")
    (tmp_path / "a.fr").write_text("le chat\nle chien\n")
    expected = (["the cat", "the dog"], ["le chat", "le chien"])  # sentences stripped of outer spaces
    assert read_parallel(str(tsv)) == expected
    assert read_parallel(source=str(tmp_path / "a.en"), target=str(tmp_path / "a.fr")) == expected
    (tmp_path / "b.fr").write_text("le chat\n\n")
    with pytest.raises(ValueError, match=r"b.fr:2: an empty target sentence; remove the pair"):
        read_parallel(source=str(tmp_path / "a.en"), target=str(tmp_path / "b.fr"))
    (tmp_path / "c.fr").write_text("le chat\nle chien\nle loup\n")
    with pytest.raises(ValueError, match=r"a.en has 2 lines but .*c.fr has 3: the two sides must be line-aligned"):
        read_parallel(source=str(tmp_path / "a.en"), target=str(tmp_path / "c.fr"))
    tsv.write_text("a\tb\n\n \tb\n")  # the fault's own line, blank lines counted
    with pytest.raises(ValueError, match=r"p.tsv:3: an empty source sentence"):
        read_parallel(str(tsv))
