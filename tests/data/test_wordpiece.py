"""WordPiece tokenisation (HF tokenizers) and BERT's pretraining batches."""

import numpy as np
import pytest

from nlp_jax.data.pretraining import PretrainingBatches, SentenceBatches, document_chunks, nsp_pairs
from nlp_jax.data.sst2 import read_sst2
from nlp_jax.data.wordpiece import SPECIALS, WordPieceTokenizer

TEXT = ["the cat sat on the mat .", "the dog sat on the log !", "cats and dogs are unaffable , said nobody .",
        "a mat , a log , and a cat ."] * 20


@pytest.fixture(scope="module")
def trained():
    return WordPieceTokenizer.train(TEXT, 80, min_frequency=1)


def test_training_a_vocabulary_reserves_the_specials_and_round_trips_through_save(trained, tmp_path):
    assert trained.vocab_size <= 80 and trained.special_ids == (0, 1, 2, 3, 4)
    assert trained.tokens("The CAT sat.") == ["[CLS]", "the", "cat", "sat", ".", "[SEP]"]
    again = WordPieceTokenizer.from_pretrained(trained.save(tmp_path / "tok"))
    from_vocab = WordPieceTokenizer.from_vocab(tmp_path / "tok" / "vocab.txt")
    for tok in (again, from_vocab):
        np.testing.assert_array_equal(tok.encode(TEXT[:4])["input_ids"], trained.encode(TEXT[:4])["input_ids"])
    assert trained.decode(trained.encode(["the dog sat"])["input_ids"][0]) == "the dog sat"


def test_training_numbers_the_same_texts_the_same_way_and_splits_as_the_trainer_learnt():
    from tokenizers.models import WordPiece
    from tokenizers.trainers import WordPieceTrainer

    from nlp_jax.data.wordpiece import _pipeline

    texts = read_sst2("train")[0][:5000]
    vocabs = [WordPieceTokenizer.train(texts, 1000)._tok.get_vocab() for _ in range(4)]
    # HF's trainer alone numbers its pieces in hash-map order (tokenizers#1794): 4 trainings rarely agree
    assert all(v == vocabs[0] for v in vocabs) and len(vocabs[0]) == 1000
    ordered = sorted(vocabs[0], key=vocabs[0].get)
    assert tuple(ordered[:5]) == SPECIALS and ordered[5:] == sorted(ordered[5:])
    continuations = sorted(t for t in ordered if t.startswith("##") and len(t) == 3)  # the "##c" pieces, first
    raw = _pipeline(WordPiece(unk_token="[UNK]"), lowercase=True, strip_accents=None)
    raw.train_from_iterator(texts, trainer=WordPieceTrainer(vocab_size=1000, min_frequency=2, show_progress=False,
                                                             special_tokens=[*SPECIALS, *continuations]))
    assert set(raw.get_vocab()) == set(ordered)
    ours = WordPieceTokenizer.train(texts, 1000)
    sample = read_sst2("dev")[0][:200]  # the renumbered vocabulary splits text into the trainer's pieces
    assert [ours.tokens(t)[1:-1] for t in sample] == [e.tokens for e in raw.encode_batch(sample)]


def test_a_small_vocabulary_is_the_same_in_every_process():
    """Frequency ties at a small vocabulary were broken in hash order: three smoke runs could not reproduce
    one another (issue 40, cause 8). Each process has its own hash seeds."""
    import hashlib
    import subprocess
    import sys

    code = ("import hashlib; from nlp_jax.data.sst2 import read_sst2; from nlp_jax.data.wordpiece import "
            "WordPieceTokenizer; v = WordPieceTokenizer.train(read_sst2('train')[0][:300], 300)._tok.get_vocab(); "
            "print(hashlib.sha256(repr(sorted(v.items())).encode()).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
               for _ in range(3)}
    here = WordPieceTokenizer.train(read_sst2("train")[0][:300], 300)._tok.get_vocab()
    assert digests == {hashlib.sha256(repr(sorted(here.items())).encode()).hexdigest() + "\n"}


def test_pieces_are_the_encoding_without_specials_never_truncated_and_a_kept_vocabulary_is_reused(tmp_path):
    short = WordPieceTokenizer.train(TEXT, 80, min_frequency=1, max_length=8)
    long_text = " ".join(TEXT[:3])
    # the same vocabulary without the limit (training twice can break merge ties differently)
    unlimited = WordPieceTokenizer.from_pretrained(short.save(tmp_path / "short"), max_length=512)
    full = unlimited.encode([long_text, TEXT[0]])
    expected = [row[1:n - 1].tolist() for row, n in zip(full["input_ids"], full["attention_mask"].sum(1))]
    assert short.pieces([long_text, TEXT[0]]) == expected and len(expected[0]) > 8
    assert short.encode([long_text])["input_ids"].shape[1] == 8  # encode still truncates afterwards
    kept = WordPieceTokenizer.trained_once(tmp_path / "tok", TEXT, 80)
    again = WordPieceTokenizer.trained_once(tmp_path / "tok", ["other words entirely"] * 50, 30)
    assert again.vocab_size == kept.vocab_size and again.pieces(TEXT[:2]) == kept.pieces(TEXT[:2])


def test_batches_pad_to_a_multiple_of_8_and_truncate_longest_first(trained):
    batch = trained.encode(["the cat", "the cat sat on the mat . the dog sat"], ["on the mat", "log"])
    assert batch["input_ids"].shape == (2, 16)  # longest row 14 -> 16, never a fixed 128
    assert batch["attention_mask"].sum(1).tolist() == [8, 14]
    row = batch["input_ids"][0][:8].tolist()
    assert row[0] == trained.cls_id and row[3] == row[7] == trained.sep_id
    assert batch["token_type_ids"][0][:8].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    short = trained.encode(["the cat sat on the mat . the dog sat"], ["on the mat"], max_length=8)
    ids = short["input_ids"][0].tolist()  # longest-first: A (10 pieces) shrinks to B's 3, then they alternate
    assert len(ids) == 8 and trained.decode(ids) == "the cat sat on the"
    assert short["token_type_ids"][0].tolist() == [0, 0, 0, 0, 0, 1, 1, 1]


def test_missing_files_and_special_tokens_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no vocabulary file .*vocab.txt"):
        WordPieceTokenizer.from_pretrained(tmp_path)
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the"]) + "\n")
    with pytest.raises(ValueError, match=r"vocab.txt: the vocabulary has no \[MASK\] token"):
        WordPieceTokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match="tokenizer.json: not a valid tokenizer.json"):
        WordPieceTokenizer.from_pretrained(tmp_path)


def test_nsp_pairs_are_half_true_next_half_random_other(trained):
    rng = np.random.default_rng(0)
    first = rng.integers(0, 99, 20_000)
    second, labels = nsp_pairs(100, first, rng)
    assert abs(labels.mean() - 0.5) < 5 * 0.5 / np.sqrt(len(labels))
    assert (second[labels == 0] == first[labels == 0] + 1).all()
    assert (second[labels == 1] != first[labels == 1] + 1).all() and second.max() == 99 and second.min() == 0
    with pytest.raises(ValueError, match="each needs a next one"):
        nsp_pairs(100, np.array([99]), rng)
    source = PretrainingBatches(TEXT, trained, batch_size=6, max_length=32, seed=1)
    a, b = source(3), source(3)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])  # a pure function of the step
    assert set(a) == {"input_ids", "token_type_ids", "attention_mask", "nsp_labels", "nsp_weight", "mlm_seed"}
    assert (a["token_type_ids"].max(1) == 1).all() and (a["nsp_weight"] == 1).all()


def test_single_texts_fill_their_share_of_a_batch_for_the_mlm_loss_only(trained):
    singles = ["a film about nothing", "the best of the year"]
    source = PretrainingBatches(TEXT, trained, batch_size=8, max_length=32, seed=1, singles=singles,
                                single_rate=0.25)
    batch = source(4)
    np.testing.assert_array_equal(batch["nsp_weight"], [0, 0, 1, 1, 1, 1, 1, 1])
    assert (batch["token_type_ids"][:2] == 0).all() and (batch["token_type_ids"][2:].max(1) == 1).all()
    assert batch["input_ids"].shape[1] % 8 == 0 and batch["attention_mask"][:2].sum() > 0
    with pytest.raises(ValueError, match="needs singles"):
        PretrainingBatches(TEXT, trained, batch_size=8, max_length=32, single_rate=0.5)


def test_document_chunks_pair_true_next_sentences_only_within_a_document(trained):
    docs = ["a b c d e f g", "h i", "j k l m"]
    chunks, firsts = document_chunks(docs, 3)
    assert chunks == ["a b c", "d e f", "g", "h i", "j k l", "m"]
    np.testing.assert_array_equal(firsts, [0, 1, 4])  # never 2 -> 3 ("g" then "h i") or 3 -> 4
    with pytest.raises(ValueError, match="words must be >= 1"):
        document_chunks(docs, 0)
    source = PretrainingBatches(TEXT, trained, batch_size=64, max_length=32, seed=2, firsts=np.array([5, 40]))
    rows = source(0)["input_ids"]
    firsts_seen = {tuple(row[:list(row).index(trained.sep_id) + 1]) for row in rows}
    expected = {tuple(ids[ids > 0]) for ids in trained.encode([TEXT[5], TEXT[40]])["input_ids"]}
    assert firsts_seen == expected
    with pytest.raises(ValueError, match="firsts must be non-empty indices"):
        PretrainingBatches(TEXT, trained, batch_size=8, max_length=32, firsts=np.array([len(TEXT) - 1]))


def test_sentence_batches_visit_each_example_once_per_epoch(trained):
    labels = np.arange(len(TEXT)) % 2
    source = SentenceBatches(TEXT, labels, trained, batch_size=8, max_length=16, seed=0)
    seen = np.concatenate([source(k)["labels"] for k in range(source.steps_per_epoch)])
    assert len(seen) == 80 and seen.sum() == 40


@pytest.mark.peers
def test_ids_equal_bert_tokenizer_fast_on_every_sst2_dev_sentence_and_on_pairs():
    transformers = pytest.importorskip("transformers")
    from nlp_jax.models.bert_hf import minilm_dir

    d = minilm_dir()
    hf = transformers.BertTokenizerFast.from_pretrained(str(d))
    texts, _ = read_sst2("dev")
    for ours in (WordPieceTokenizer.from_pretrained(d), WordPieceTokenizer.from_vocab(d / "vocab.txt")):
        for kw, args in ((dict(), (texts,)), (dict(max_length=24), (texts[:-1], texts[1:]))):
            got = ours.encode(*args, **kw)
            want = hf(*args, padding="longest", pad_to_multiple_of=8, truncation=True, return_tensors="np", **kw)
            for name in ("input_ids", "token_type_ids", "attention_mask"):
                np.testing.assert_array_equal(got[name], want[name])
    assert SPECIALS == ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
