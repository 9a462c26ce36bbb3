"""The ``nlp-jax`` command: its commands listed, each one's options shown, an unknown one refused, and
``run`` launching an experiment as ``python -m nlp_jax.run`` does."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nlp_jax.cli import COMMANDS, main
from nlp_jax.models.word_vectors import WordVectors

ROOT = Path(__file__).resolve().parents[1]


def test_no_command_lists_the_commands_and_an_unknown_one_is_refused(capsys):
    assert main([]) == 2
    listed = capsys.readouterr().out
    assert all(f"  {name} " in listed for name in COMMANDS)
    assert main(["--help"]) == 0
    assert main(["trian"]) == 2
    assert f"unknown command 'trian'; the commands are {', '.join(COMMANDS)}" in capsys.readouterr().err


@pytest.mark.parametrize("command", list(COMMANDS))
def test_each_command_shows_its_options_under_its_own_name(command, capsys):
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0 and capsys.readouterr().out.startswith(f"usage: nlp-jax {command}")


def test_run_launches_an_experiment_and_python_m_nlp_jax_is_the_same_command(capsys):
    gpt = str(ROOT / "experiments" / "gpt_shakespeare_char.py")
    assert main(["run", f"{gpt}:cpu", "--print-config", "--set", "train.steps=7"]) == 0
    assert json.loads(capsys.readouterr().out)["train"]["steps"] == 7
    out = subprocess.run([sys.executable, "-m", "nlp_jax", "nope"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "unknown command 'nope'" in out.stderr


def _corpus(path: Path, lines: int = 300, seed: int = 0) -> Path:
    """Text whose words co-occur by topic: animals with animals, numbers with numbers."""
    rng = np.random.default_rng(seed)
    topics = [["cat", "dog", "horse", "cow", "sheep"], ["one", "two", "three", "four", "five"]]
    path.write_text("\n".join(" ".join(rng.choice(topics[i % 2], 8)) for i in range(lines)) + "\n\n")
    return path


@pytest.mark.parametrize("method", ["sg", "ppmi_svd"])
def test_vectors_learns_topics_from_a_text_file_and_gensim_reads_both_formats(tmp_path, method, capsys):
    out = tmp_path / "out"
    assert main(["vectors", str(_corpus(tmp_path / "c.txt")), "--out", str(out), "--method", method, "--dim", "4",
                 "--min-count", "2", "--epochs", "3", "--sample", "0", "--query", "cat", "--query", "zebra"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["documents"] == 300 and summary["tokens"] == 2400 and summary["vocabulary"] == 10
    near = [w for w, _ in summary["neighbours"]["cat"][:4]]
    assert set(near) == {"dog", "horse", "cow", "sheep"}, near  # its topic's words come first
    assert summary["neighbours"]["zebra"] == "not in the vocabulary"
    wv = WordVectors.load(out / "vectors.txt")
    np.testing.assert_array_equal(WordVectors.load(out / "vectors.bin", binary=True).vectors, wv.vectors)
    gensim = pytest.importorskip("gensim")
    for name, binary in (("vectors.txt", False), ("vectors.bin", True)):
        kv = gensim.models.KeyedVectors.load_word2vec_format(str(out / name), binary=binary)
        assert kv.index_to_key == wv.words and np.array_equal(kv.vectors, wv.vectors)


def test_vectors_refuses_bad_input_naming_the_file_and_the_fix(tmp_path, refusal):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("cat dog\ncaf\xe9 dog\n".encode("latin-1"))
    cases = [([str(tmp_path / "missing.txt")], "missing.txt: no such file"),
             ([str(bad)], "latin1.txt:2: not UTF-8 text .* at byte 11"),
             ([str(_corpus(tmp_path / "c.txt", 4)), "--min-count", "1000"], "no word occurs 1000 times or more; lower"),
             ([str(_corpus(tmp_path / "d.txt")), "--method", "ppmi_svd", "--dim", "50"], "--dim 50 needs more than 50"),
             ([str(_corpus(tmp_path / "e.txt")), "--dim", "0"], "--dim must be >= 1")]
    (tmp_path / "blank.txt").write_text("\n \n")
    cases.append(([str(tmp_path / "blank.txt")], "blank.txt holds no text"))
    for args, message in cases:
        shown = refusal(["vectors", *args, "--out", str(tmp_path / "o")])
        assert re.search(message, shown), (message, shown)


def test_the_own_data_page_s_examples_run_as_written(tmp_path, monkeypatch):
    import shlex

    monkeypatch.chdir(ROOT)
    page = (ROOT / "docs" / "guide" / "own_data.md").read_text()
    blocks = page.split("```bash\n")[1:]  # (```console blocks are shown, not run)
    lines = [line for block in blocks for line in block.split("```")[0].splitlines() if line.startswith("nlp-jax ")]
    assert len(lines) >= 3
    for line in lines:
        args = [a.replace("runs/", f"{tmp_path}/") for a in shlex.split(line)[1:]]
        assert main(args) == 0, line
    near = json.loads((tmp_path / "stories_sg" / "summary.json").read_text())["neighbours"]
    rulers, animals = {"prince", "queen", "princess", "duke", "emperor"}, {"dog", "mouse", "horse", "rabbit", "fox"}
    assert {w for w, _ in near["king"][:5]} == rulers and {w for w, _ in near["cat"][:5]} == animals  # as it says
    ppmi = json.loads((tmp_path / "stories_ppmi" / "summary.json").read_text())["neighbours"]
    assert {w for w, _ in ppmi["king"][:5]} == rulers
    kn3 = json.loads((tmp_path / "stories_kn3" / "summary.json").read_text())["evaluations"]
    held = kn3["docs/examples/stories_valid.txt"]
    assert (round(held["perplexity"], 2), held["tokens"], held["unknown_words"]) == (2.30, 546, 1)  # as it says
    lm = json.loads((tmp_path / "stories_lm" / "summary.json").read_text())
    assert round(lm["val_ppl"], 1) == 2.2 and lm["steps"] == 300  # "2.21 a character"
    clf = json.loads((tmp_path / "reviews_clf" / "summary.json").read_text())
    assert clf["valid_accuracy"] >= 0.97 and clf["steps"] == 60  # "all 100 validation rows right"
    assert (tmp_path / "reviews_dev_predictions.csv").read_text().startswith("text,label,p(negative),p(positive)\n")
    dpo = json.loads((tmp_path / "prefs_dpo" / "summary.json").read_text())
    assert dpo["preference_accuracy"] >= 0.95 and dpo["valid"]["examples"] == 60  # "all 60 held-out pairs"


def test_ngram_reports_the_model_s_perplexity_and_exports_what_an_arpa_reader_scores_alike(tmp_path):
    train, valid = tmp_path / "train.txt", tmp_path / "valid.txt"
    train.write_text("the cat sat\nthe dog sat\n\nthe cat ran\na dog ran far\n")
    valid.write_text("the cat ran far\nthe bird sat\n")
    out = tmp_path / "kn"
    assert main(["ngram", str(train), "--order", "2", "--eval", str(valid), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sentences"] == 4 and summary["tokens"] == 17 and summary["vocabulary"] == 10
    e = summary["evaluations"][str(valid)]
    assert e["tokens"] == 9 and e["unknown_words"] == 1  # 7 words + 2 end tokens; "bird" is <unk>
    arpa = pytest.importorskip("arpa")
    model = arpa.loadf(str(out / "model.arpa"))[0]
    log10 = sum(model.log_s(line) for line in valid.read_text().splitlines())
    assert log10 == pytest.approx(e["log10_prob"], rel=1e-9)
    assert e["perplexity"] == pytest.approx(10 ** (-log10 / 9), rel=1e-9)


def test_ngram_refuses_bad_input_naming_the_file_and_the_fix(tmp_path, refusal):
    marked = tmp_path / "marked.txt"
    marked.write_text("<s> the cat </s>\n")
    (tmp_path / "blank.txt").write_text("\n\n")
    for args, message in [([str(tmp_path / "none.txt")], "none.txt: no such file"),
                          ([str(tmp_path / "blank.txt")], "blank.txt holds no text"),
                          ([str(marked)], r"\['<s>', '</s>'\] appear in the training text"),
                          ([str(marked), "--order", "0"], "--order and --min-count must be >= 1")]:
        shown = refusal(["ngram", *args, "--out", str(tmp_path / "o")])
        assert re.search(message, shown), (message, shown)


def test_tfidf_equals_scikit_learn_s_vectorizer_and_finds_the_nearest_documents(tmp_path):
    docs = tmp_path / "docs.txt"
    docs.write_text("the king rode to the castle\nthe cat sat on the mat\n\nthe queen and the king dined\n"
                    "a dog and a cat played\nthe mat was red\n")
    stop = tmp_path / "stop.txt"
    stop.write_text("the\na\n")
    out = tmp_path / "tfidf"
    assert main(["tfidf", str(docs), "--out", str(out), "--stop-words", str(stop), "--query", "the king",
                 "-k", "2"]) == 0
    with np.load(out / "tfidf.npz") as f:
        ours = np.zeros(tuple(f["shape"]))
        for r in range(ours.shape[0]):
            cols = slice(f["indptr"][r], f["indptr"][r + 1])
            ours[r, f["indices"][cols]] = f["data"][cols]
    terms = [line.split("\t")[0] for line in (out / "vocabulary.tsv").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["documents"] == 5 and [h["document"] for h in summary["queries"]["the king"]] == [3, 1]
    sklearn = pytest.importorskip("sklearn.feature_extraction.text")
    vec = sklearn.TfidfVectorizer(stop_words=["the", "a"], token_pattern=r"\S+", vocabulary=terms)
    theirs = vec.fit_transform([line for line in docs.read_text().splitlines() if line.strip()]).toarray()
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)
    with pytest.raises(SystemExit, match="no term is left .* lower --min-count"):
        main(["tfidf", str(docs), "--out", str(out), "--min-count", "99"])
