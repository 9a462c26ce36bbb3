"""API edge cases get a clear error or a documented result (issue 11, item 7)."""

import numpy as np
import pytest
from flax import nnx

from nlp_jax.eval.perplexity import perplexity
from nlp_jax.eval.word_vectors import evaluate_word_pairs, read_analogies
from nlp_jax.models.gpt2 import GPT2, GPT2Config
from nlp_jax.models.ngram import AddKLM, KneserNeyLM
from nlp_jax.models.tfidf import Tfidf, TfidfConfig
from nlp_jax.models.word_vectors import WordVectors


@pytest.fixture(scope="module")
def gpt():
    return GPT2(GPT2Config.tiny(), rngs=nnx.Rngs(0))


def test_perplexity_of_an_empty_stream_and_a_zero_stride_are_refused(gpt):
    with pytest.raises(ValueError, match="at least 2 tokens"):
        perplexity(gpt, np.array([], np.int32), context=8)
    with pytest.raises(ValueError, match="stride must be in"):
        perplexity(gpt, np.arange(20) % 37, context=8, stride=0)


def test_word_vectors_nearest_on_unknown_words_and_large_k():
    wv = WordVectors(["a", "b", "c"], np.eye(3, dtype=np.float32) + 0.1)
    with pytest.raises(KeyError, match="'zebra' is not in the vocabulary of 3 words"):
        wv.nearest("zebra")
    assert [w for w, _ in wv.nearest("a", k=10)] in (["b", "c"], ["c", "b"])  # never the query itself


def test_malformed_evaluation_files_name_the_file_and_line(tmp_path):
    bad = tmp_path / "analogies.txt"
    bad.write_text(": capital\nathens greece baghdad iraq\nparis france rome\n")
    with pytest.raises(ValueError, match=f"{bad}: line 3 is not an analogy"):
        read_analogies(bad)
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("a\tb\t1.0\nc\td\tlots\n")
    wv = WordVectors(["a", "b", "c", "d"], np.eye(4, dtype=np.float32))
    with pytest.raises(ValueError, match=f"{pairs}: line 2 is not"):
        evaluate_word_pairs(wv, pairs)
    pairs.write_text("a\tb\t1.0\nx\ty\t2.0\n")
    with pytest.raises(ValueError, match="only 1 of 2 pairs"):
        evaluate_word_pairs(wv, pairs)


def test_tfidf_refuses_one_string():
    with pytest.raises(TypeError, match="one string"):
        Tfidf(TfidfConfig()).fit_transform("the cat sat")


@pytest.mark.parametrize("cls", [KneserNeyLM, AddKLM])
def test_ngram_models_refuse_order_0_empty_streams_and_ids_out_of_range(cls):
    kw = dict(vocab_size=5, bos=0, eos=1)
    with pytest.raises(ValueError, match="order must be >= 1"):
        cls(np.array([0, 2, 3, 1]), order=0, **kw)
    with pytest.raises(ValueError, match="non-empty"):
        cls(np.array([], np.int64), order=2, **kw)
    with pytest.raises(ValueError, match="ids must be in \\[0, vocab_size=5\\), got ids from 0 to 7"):
        cls(np.array([0, 2, 7, 1]), order=2, **kw)
