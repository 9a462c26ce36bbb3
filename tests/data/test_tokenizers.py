import numpy as np
import pytest

from nlp_jax.data.corpus import RandomBlocks, load_char_corpus
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
