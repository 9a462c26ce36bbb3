import numpy as np
import pytest

from nlp_jax.data.lm_tokenizer import LMTokenizer

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.  \nzebra ünïcode 💡\n"


@pytest.mark.parametrize("kind", ["char", "bpe", "gpt2"])
def test_every_kind_round_trips_the_text_and_saves_a_tokenizer_json_that_transformers_reads_alike(kind, tmp_path):
    transformers = pytest.importorskip("transformers")
    tok = LMTokenizer.train([TEXT] * 3, kind, vocab_size=300)
    ids = tok.encode(TEXT)
    assert tok.decode(ids) == TEXT and ids.dtype == np.int32
    assert tok.decode([tok.eot_id, *ids, tok.eot_id]) == TEXT  # the document marker spells nothing
    again = LMTokenizer.from_pretrained(tok.save(tmp_path))
    np.testing.assert_array_equal(again.encode(TEXT), ids)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    assert fast(TEXT, add_special_tokens=False)["input_ids"] == ids.tolist()
    assert fast.decode(ids.tolist()) == TEXT


def test_gpt2_numbers_text_as_tiktoken_does_and_char_marks_unseen_characters_unknown():
    from nlp_jax.data.tokenizers import GPT2Tokenizer

    text = open(__import__("nlp_jax.data.root", fromlist=["resolve"]).resolve("tinyshakespeare/input.txt"),
                encoding="utf-8").read()[:30_000]
    gpt2 = LMTokenizer.train([], "gpt2")
    assert gpt2.vocab_size == 50257 and gpt2.eot_id == 50256 and gpt2.unk_id is None
    np.testing.assert_array_equal(gpt2.encode(text), GPT2Tokenizer().encode(text))
    char = LMTokenizer.train(["abc\n"], "char")
    assert char.vocab_size == 2 + 4 and char.decode(char.encode("cab\n")) == "cab\n"
    assert (char.encode("abz") == char.unk_id).tolist() == [False, False, True]


def test_lines_streamed_in_blocks_number_a_text_as_one_call_does():
    lines = (TEXT * 40).splitlines(keepends=True)
    for kind in ("char", "bpe"):
        tok = LMTokenizer.train([TEXT], kind, vocab_size=280)
        streamed = np.concatenate(list(tok.encode_lines(iter(lines), block=7, parallel=3)))
        np.testing.assert_array_equal(streamed, tok.encode("".join(lines)))


def test_bad_kinds_sizes_and_files_are_named(tmp_path):
    with pytest.raises(ValueError, match="tokenizer kind 'wordpiece' unknown; choose from char, bpe, gpt2"):
        LMTokenizer.train([TEXT], "wordpiece")
    with pytest.raises(ValueError, match="vocab_size=100: a byte-level BPE needs at least 257"):
        LMTokenizer.train([TEXT], "bpe", vocab_size=100)
    with pytest.raises(FileNotFoundError, match="no tokenizer file"):
        LMTokenizer.from_pretrained(tmp_path)
    from nlp_jax.data.bpe import BPETokenizer

    BPETokenizer.train([TEXT], 50).save(tmp_path)  # a translation vocabulary: no <|endoftext|>
    with pytest.raises(ValueError, match=r"no <\|endoftext\|> token: not a tokenizer of `nlp-jax lm`"):
        LMTokenizer.from_pretrained(tmp_path)
