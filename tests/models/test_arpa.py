import math

import numpy as np
import pytest

from nlp_jax.models.arpa import ArpaLM
from nlp_jax.models.ngram import KneserNeyLM

SENTENCES = ["the cat sat on the mat", "the dog sat on the log", "a cat ran", "the dog ran to the cat", "a bird sang"]


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_reading_our_arpa_export_scores_every_token_as_the_kneser_ney_model(order, tmp_path):
    words = ["<s>", "</s>", "<unk>"] + sorted({w for s in SENTENCES for w in s.split()})
    index = {w: i for i, w in enumerate(words)}

    def stream(sents):
        return np.asarray([i for s in sents for i in [0, *(index.get(w, 2) for w in s.split()), 1]], np.int64)

    kn = KneserNeyLM(stream(SENTENCES), order=order, vocab_size=len(words), bos=0, eos=1)
    kn.save_arpa(tmp_path / "m.arpa", words)
    lm = ArpaLM.load(tmp_path / "m.arpa")
    held = ["the cat sat on the log", "a dog sang to the bird", "the zebra ran"]  # zebra: <unk>
    expected = kn.token_log_probs(stream(held)) / math.log(10)
    got = [p for s in held for p in lm.score_sentence(s.split())[0]]
    np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-10)
    result = lm.perplexity([s.split() for s in held])
    assert result["unknown_words"] == 1 and result["tokens"] == len(expected) and lm.order == order
    assert result["perplexity"] == pytest.approx(10 ** (-expected.sum() / len(expected)), rel=1e-8)


def test_a_malformed_file_is_named_by_line_and_a_word_without_unk_is_refused(tmp_path):
    path = tmp_path / "m.arpa"
    path.write_text("\\data\\\nngram 1=2\n\n\\1-grams:\n-0.3\t</s>\n-0.2\tcat\n\n\\end\\\n")
    lm = ArpaLM.load(path)
    assert lm.score_sentence(["cat"])[0] == [-0.2, -0.3]
    with pytest.raises(KeyError, match="'dog' is not in the model's vocabulary, which has no <unk>"):
        lm.score_sentence(["dog"])
    path.write_text("\\data\\\nngram 1=2\n\n\\1-grams:\n-0.3\t</s>\nx\tcat\n")
    with pytest.raises(ValueError, match=r"m.arpa:6: not a number"):
        ArpaLM.load(path)
    path.write_text("\\data\\\nngram 1=3\n\n\\1-grams:\n-0.3\t</s>\n-0.2\tcat\n")
    with pytest.raises(ValueError, match=r"header's n-gram counts differ from the file's .*\{1: \(3, 2\)\}"):
        ArpaLM.load(path)
    path.write_text("just text\n")
    with pytest.raises(ValueError, match="expected a log10 probability"):
        ArpaLM.load(path)
