"""``eval.sentences`` and ``nlp-jax sentences``: classify a file with a saved classifier, nearest sentences by
embedding."""

import numpy as np
import pytest
from flax import nnx

from nlp_jax.cli import main
from nlp_jax.data.wordpiece import WordPieceTokenizer
from nlp_jax.eval import sentences
from nlp_jax.models.bert import BertClassifier, BertConfig
from nlp_jax.models.bert_hf import save_hf_bert

TEXT = ["a fine film .", "a dull film .", "the cast is fine", "dull , dull , dull"] * 10


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    tok = WordPieceTokenizer.train(TEXT, 60, min_frequency=1, max_length=24)
    model = BertClassifier(BertConfig.tiny(vocab_size=60, dropout=0.0), num_labels=2, rngs=nnx.Rngs(0))
    where = save_hf_bert(model, tmp_path_factory.mktemp("clf") / "export", labels=["negative", "positive"])
    tok.save(where)
    return where


def test_classify_prints_a_label_and_probabilities_per_line_in_order(checkpoint, tmp_path, capsys):
    f = tmp_path / "in.txt"
    lines = ["a fine film .", "", "dull , dull , dull and a much longer line than the others"]
    f.write_text("\n".join(lines) + "\n")
    assert main(["sentences", "classify", str(checkpoint), str(f)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split("\t") == ["label", "p(negative)", "p(positive)", "sentence"] and len(out) == 3
    for row, text in zip(out[1:], [lines[0], lines[2]]):
        label, p0, p1, sentence = row.split("\t")
        assert sentence == text and float(p0) + float(p1) == pytest.approx(1, abs=2e-4)
        assert label == ("negative" if float(p0) > float(p1) else "positive")
    labels, probs = sentences.classify(checkpoint, [lines[2], lines[0]])  # order kept despite length sorting
    assert labels == ["negative", "positive"]
    np.testing.assert_allclose(probs[1], [float(out[1].split("\t")[1]), float(out[1].split("\t")[2])], atol=1e-4)


def test_nearest_ranks_by_cosine_and_empty_files_are_refused(checkpoint, tmp_path, capsys, refusal):
    f = tmp_path / "corpus.txt"
    f.write_text("\n".join(TEXT[:4]))
    assert main(["sentences", "nearest", str(checkpoint), str(f), "--query", "a fine film .", "-k", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "query: a fine film ." and out[1].strip() == "1.0000  a fine film ."
    (tmp_path / "empty.txt").write_text("\n\n")
    assert "empty.txt: no sentences" in refusal(["sentences", "classify", str(checkpoint), str(tmp_path / "empty.txt")])
    # it dropped a result silently; refused before the model loads
    said = refusal(["sentences", "nearest", str(tmp_path / "nowhere"), str(f), "--query", "x", "-k", "-1"])
    assert said.startswith("2 ") and "-k must be >= 1" in said
    assert "nowhere: no such directory" in refusal(["sentences", "classify", str(tmp_path / "nowhere"), str(f)])
    (tmp_path / "latin1.txt").write_bytes("un caf\xe9\n".encode("latin-1"))
    assert "latin1.txt:1: not UTF-8 text" in refusal(["sentences", "classify", str(checkpoint),
                                                      str(tmp_path / "latin1.txt")])


def test_embed_with_random_weights_keeps_the_shape_and_tokenizer_not_the_weights(checkpoint):
    trained = sentences.embed(checkpoint, TEXT[:4])
    random = sentences.embed(checkpoint, TEXT[:4], random_seed=3)
    np.testing.assert_array_equal(random, sentences.embed(checkpoint, TEXT[:4], random_seed=3))  # seeded
    assert random.shape == trained.shape and np.abs(random - trained).max() > 0.1
    assert not np.allclose(random, sentences.embed(checkpoint, TEXT[:4], random_seed=4))
    np.testing.assert_allclose(np.linalg.norm(random, axis=-1), 1.0, rtol=1e-5)


def test_minilm_reads_256_pieces_as_its_own_configuration_says():
    """It truncated at 512 (its position table) where sentence-transformers stops at 256: cosine 0.946."""
    from nlp_jax.models.bert_hf import minilm_dir

    assert sentences.sequence_limit(minilm_dir(), 512) == 256
    long = "the film is " + "very " * 300 + "good"  # ~305 pieces: only the first 256 are read
    a, b = sentences.embed(minilm_dir(), [long, long + " and the ending is awful"])
    np.testing.assert_allclose(a, b, atol=1e-6)
