import numpy as np
import pytest

from nlp_jax.data.corpus import RandomBlocks, SequentialBlocks, load_char_corpus
from nlp_jax.data.root import resolve
from nlp_jax.data.tokenizers import CharTokenizer, GPT2Tokenizer, bpe_reference


@pytest.fixture(scope="module")
def shakespeare():
    return resolve("tinyshakespeare/input.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def gpt2():
    return GPT2Tokenizer()


def test_char_tokenizer_roundtrip_and_vocab(shakespeare):
    tok = CharTokenizer.from_text(shakespeare)
    assert tok.vocab_size == 65 and tok.chars[0] == "\n" and tok.chars[1] == " "
    ids = tok.encode(shakespeare[:1000])
    assert ids.dtype == np.int32 and tok.decode(ids) == shakespeare[:1000]
    with pytest.raises(ValueError, match="not in the vocabulary"):
        tok.encode("caf\u00e9")


def test_char_corpus_uses_nanogpt_split():
    corpus = load_char_corpus()
    assert (len(corpus.train), len(corpus.val)) == (1_003_854, 111_540)


def test_gpt2_known_ids(gpt2):
    assert gpt2.encode("Hello world").tolist() == [15496, 995]
    assert gpt2.vocab_size == 50257 and gpt2.eot_token == 50256
    assert gpt2.encode("a<|endoftext|>b", allow_special=True).tolist()[1] == 50256
    text = "Byte-level BPE: naïve café, 123 tokens!\n\n  x"
    assert gpt2.decode(gpt2.encode(text)) == text


def test_gpt2_on_tiny_shakespeare(gpt2, shakespeare):
    assert len(gpt2.encode(shakespeare)) == 338_025  # = tiktoken's gpt2 / nanoGPT (301,966 + 36,059)


def test_plain_python_bpe_equals_fast_encoder(gpt2, shakespeare):
    text = shakespeare[:5000] + " naïve 'll 've 12345 \u00e9t\u00e9 \t\n  end"
    assert bpe_reference(text) == gpt2.encode(text).tolist()


def test_random_blocks_are_shifted_and_deterministic_per_step():
    data = np.arange(1000, dtype=np.int32)
    source = RandomBlocks(data, batch_size=4, block_size=8, seed=3)
    a, b = source(5), source(5)
    np.testing.assert_array_equal(a["inputs"], b["inputs"])
    np.testing.assert_array_equal(a["targets"], a["inputs"] + 1)
    assert not np.array_equal(source(6)["inputs"], a["inputs"])
    with pytest.raises(ValueError, match="too short"):
        RandomBlocks(data[:5], 2, 8)


def test_no_id_becomes_another_at_the_sources_and_decoders(gpt2):
    """-1 must not decode as the last character, nor ids >= V reach a batch (issue 11, item 5)."""
    tok = CharTokenizer("abc")
    assert tok.decode([0, 2]) == "ac"
    for bad in ([-1], [3], [[0], [7]]):
        with pytest.raises(ValueError, match=r"decode ids must be in \[0, 3\)"):
            tok.decode(bad)
    with pytest.raises(ValueError, match=r"must be in \[0, 50257\)"):
        gpt2.decode([50257])
    with pytest.raises(TypeError, match="integer token ids"):
        tok.decode([0.5])
    data = np.arange(100, dtype=np.int32)
    with pytest.raises(ValueError, match=r"RandomBlocks data must be in \[0, 50\).*index 50"):
        RandomBlocks(data, 2, 8, vocab_size=50)
    with pytest.raises(ValueError, match=r"SequentialBlocks stream must be in \[0, 99\)"):
        SequentialBlocks(data, 2, 8, vocab_size=99)
    RandomBlocks(data, 2, 8, vocab_size=100)
