"""``nlp-jax classify`` / ``predict`` end to end on tiny tables: a few steps of a tiny BERT from a HF directory
and from scratch, a pair task, the export read by transformers alike, and every bad input named."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from nlp_jax.cli import main

ROOT = Path(__file__).resolve().parents[1]
REVIEWS, DEV = ROOT / "docs/examples/reviews.csv", ROOT / "docs/examples/reviews_dev.csv"
QUICK = ["--set", "train.steps=3", "--set", "train.eval_every=0", "--set", "train.progress=false",
         "--batch-size", "8", "--max-length", "24"]
TINY = ["--init", "scratch", "--set", "model.n_layer=1", "--set", "model.n_embd=16", "--set", "model.n_head=2",
        "--set", "model.n_inner=32", "--set", "vocab_size=120"]


def test_classify_from_a_hf_bert_exports_a_classifier_transformers_reads_alike_and_predict_labels_a_table(
        tmp_path, tiny_bert_dir, capsys):
    out = tmp_path / "clf"
    assert main(["classify", str(REVIEWS), "--valid", str(DEV), "--init", str(tiny_bert_dir), "--out", str(out),
                 *QUICK, "--max-length", "64"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "finished" and s["labels"] == ["negative", "positive"] and s["best_step"] == 3
    assert (s["train_rows"], s["valid_rows"]) == (400, 100) and sum(s["label_counts"].values()) == 400
    assert 0.0 <= s["valid_accuracy"] <= 1.0 and s["truncated_rows"] == {"train": 0, "valid": 0}
    capsys.readouterr()
    assert main(["predict", str(out / "export"), str(DEV), "--label-column", "label", "--out",
                 str(tmp_path / "p.jsonl")]) == 0
    assert f"accuracy {s['valid_accuracy']:.4f} (" in capsys.readouterr().err  # the run's own validation score
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(rows) == 100 and set(rows[0]) == {"text", "label", "p(negative)", "p(positive)"}
    assert all(abs(r["p(negative)"] + r["p(positive)"] - 1) < 1e-5 for r in rows)
    transformers, torch = pytest.importorskip("transformers"), pytest.importorskip("torch")
    hf = transformers.BertForSequenceClassification.from_pretrained(str(out / "export")).eval()
    assert hf.config.id2label == {0: "negative", 1: "positive"}
    from nlp_jax.eval.sentences import SentenceClassifier

    clf = SentenceClassifier(out / "export")
    batch = clf.tokenizer.encode(["the plot was not dull at all", "a flat script"])
    with torch.no_grad():
        theirs = hf(**{k: torch.tensor(np.asarray(v, np.int64)) for k, v in batch.items()}).logits.numpy()
    ours = np.asarray(clf.model(batch["input_ids"], segments=batch["token_type_ids"],
                                attention_mask=batch["attention_mask"])[0])
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_a_pair_task_from_scratch_holds_out_a_tenth_counts_truncation_and_predicts_plain_text(tmp_path, capsys):
    r = np.random.default_rng(0)
    words = ["cat", "dog", "bird", "fish", "lion", "bear"]
    rows = []
    for _ in range(60):
        a, b = r.choice(words, 2)
        rows.append({"premise": f"the {a} sleeps", "hypothesis": f"the {b} sleeps",
                     "label": "same" if a == b else "different"})
    rows.append({"premise": " ".join(["very"] * 40) + " long", "hypothesis": "short", "label": "different"})
    table = tmp_path / "pairs.jsonl"
    table.write_text("".join(json.dumps(x) + "\n" for x in rows))
    out = tmp_path / "nli"
    assert main(["classify", str(table), "--text-column", "premise", "--pair-column", "hypothesis", "--out",
                 str(out), *QUICK, *TINY]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["train_rows"] + s["valid_rows"] == 61 and s["valid_rows"] == 6  # a seeded tenth held out
    assert sum(s["truncated_rows"].values()) == 1 and s["labels"] == ["different", "same"]
    texts = tmp_path / "texts.txt"
    texts.write_text("the cat sleeps\n\nthe dog sleeps\n")
    capsys.readouterr()
    assert main(["predict", str(out / "export"), str(texts)]) == 0  # (a pair model, one text: its pair empty)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "text\tlabel\tp(different)\tp(same)" and len(lines) == 3


def test_bad_tables_and_labels_are_refused_naming_the_file_and_the_fix(tmp_path, refusal):
    def table(name, text):
        (tmp_path / name).write_text(text)
        return str(tmp_path / name)

    good = table("good.csv", "text,label\n" + "".join(f"row {i},{'ab'[i % 2]}\n" for i in range(20)))
    cases = [([table("cols.csv", "sentence,label\nhi,a\n")], r"no column 'text'; its columns are label, sentence"),
             ([table("ragged.csv", "text,label\nhi,a\nhi,b,c\n")], r"ragged.csv:3: 3 fields, the header has 2"),
             ([table("bad.jsonl", '{"text": "hi", "label": "a"}\n{"text": \n')], r"bad.jsonl:2: not a JSON object"),
             ([table("one.csv", "text,label\nhi,a\nho,a\n")], "has 1 distinct label"),
             ([table("num.jsonl", '{"text": 3, "label": "a"}\n{"text": "x", "label": "b"}\n')],
              r"row 1's 'text' is int 3, not text"),
             ([good, "--valid", table("dev.csv", "text,label\nx,a\ny,c\n")],
              r"dev.csv: label 'c' \(row 2; 1 rows in all\) never occurs in .*good.csv, whose labels are a, b"),
             ([table("empty.tsv", "")], "empty.tsv: no rows"),
             ([good, "--init", str(tmp_path)], "is not a HF BERT directory"),
             ([str(tmp_path / "none.csv")], "no such file")]
    for args, message in cases:
        shown = refusal(["classify", "--out", str(tmp_path / "o"), *QUICK, *TINY, *args])
        assert re.search(message, shown), (message, shown)
