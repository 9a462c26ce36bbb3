"""Translation data: Multi30k, the reversible BPE tokenizer, the truncation rule and token-budget batches."""

import numpy as np
import pytest

from nlp_jax.data.bpe import BOS, EOS, PAD, UNK, BPETokenizer
from nlp_jax.data.multi30k import read_pairs
from nlp_jax.data.translation import TokenBudgetBatches, pair_batch, with_end


@pytest.fixture(scope="module")
def multi30k():
    return read_pairs("train"), read_pairs("val")


@pytest.fixture(scope="module")
def tok(multi30k):
    (src, tgt), _ = multi30k
    return BPETokenizer.train(src[:5000] + tgt[:5000], 2000)


def test_multi30k_is_aligned_and_names_bad_arguments(multi30k):
    (src, tgt), (vsrc, vtgt) = multi30k
    assert (len(src), len(tgt), len(vsrc), len(vtgt)) == (29000, 29000, 1014, 1014)
    assert src[0] == "Two young, White males are outside near many bushes."
    assert tgt[0] == "Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche."
    with pytest.raises(ValueError, match="split must be one of"):
        read_pairs("test")
    with pytest.raises(ValueError, match="different languages"):
        read_pairs("val", "de", "de")


def test_bpe_is_reversible_on_held_out_text_and_unknown_characters_become_unk(tok, multi30k, tmp_path):
    _, (vsrc, vtgt) = multi30k
    texts = vsrc[:300] + vtgt[:300]
    encoded = tok.encode(texts)
    known = [(ids, text) for ids, text in zip(encoded, texts) if UNK not in ids]
    assert len(known) >= len(texts) - 2  # (one line has a no-break space the 10,000 training lines lack)
    assert [tok.decode(ids) for ids, _ in known] == [text for _, text in known]  # exact, case kept
    assert tok.tokens("A man.")[-1] == "."  # punctuation split off
    ids = tok.encode(["a dog \u2603 runs"])[0]
    assert UNK in ids and tok.decode(ids) == "a dog  runs"  # the snowman is unknown: it decodes to nothing
    assert tok.encode([""]) == [[]]
    again = BPETokenizer.from_pretrained(tok.save(tmp_path / "t"))
    assert again.encode(texts[:20]) == tok.encode(texts[:20]) and again.vocab_size == tok.vocab_size
    with pytest.raises(FileNotFoundError, match="no tokenizer file"):
        BPETokenizer.from_pretrained(tmp_path / "none")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "tokenizer.json").write_text("{nope")
    with pytest.raises(ValueError, match="tokenizer.json: not a valid tokenizer.json .*delete it"):
        BPETokenizer.from_pretrained(tmp_path / "bad")
    with pytest.raises(TypeError, match="list of texts"):
        tok.encode("one text")


def test_trained_once_trains_a_missing_vocabulary_and_then_only_reads_it(multi30k, tmp_path):
    (src, tgt), _ = multi30k
    first = BPETokenizer.trained_once(tmp_path / "run", src[:2000], 600)
    assert (tmp_path / "run" / "tokenizer.json").is_file() and first.vocab_size == 600
    # other texts and another size: the saved vocabulary is read back, not retrained (a resumed run's weights
    # learnt those pieces)
    again = BPETokenizer.trained_once(tmp_path / "run", tgt[:2000], 900)
    assert again.vocab_size == 600 and again.tokens(src[5]) == first.tokens(src[5])
    assert again.encode(src[:50]) == first.encode(src[:50])


def test_long_rows_keep_their_first_pieces_and_end_and_targets_shift_by_one():
    rows = with_end([[7, 8, 9, 10, 11], [], [5]], max_len=4)
    assert [r.tolist() for r in rows] == [[7, 8, 9, EOS], [EOS], [5, EOS]]
    b = pair_batch(rows, rows, width=6)
    assert b["target_in"][0].tolist() == [BOS, 7, 8, 9, PAD, PAD]
    assert b["target_out"][0].tolist() == [7, 8, 9, EOS, PAD, PAD]
    assert b["target_mask"].sum(1).tolist() == [4, 1, 2] and b["source_mask"].sum(1).tolist() == [4, 1, 2]
    with pytest.raises(ValueError, match="max_len must be >= 2"):
        with_end([[1]], 1)


def test_token_budget_batches_are_seeded_fixed_shape_and_cover_every_row():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 30, size=500)
    src = [np.r_[100 + i, np.full(n - 1, 7), EOS].astype(np.int32) for i, n in enumerate(lengths)]  # row i: 100 + i
    tgt = [np.r_[np.full(max(1, n - 2), 9), EOS].astype(np.int32) for n in lengths]
    batches = TokenBudgetBatches(src, tgt, 256, seed=3)
    widths, firsts = set(), []
    for step in range(batches.steps_per_epoch):
        b = batches(step)
        w = b["source"].shape[1]
        widths.add(w)
        assert w % 8 == 0 and b["source"].shape[0] == 256 // w and b["target_mask"].any(1).all()
        assert (b["source_mask"].sum(1) > w - 8).any()  # the bucket's width is needed by one of its rows
        firsts += (b["source"][:, 0] - 100).tolist()
    assert widths == {8, 16, 24, 32}
    assert len(set(firsts)) == len(firsts)  # an epoch draws a row at most once ...
    left = 500 - len(firsts)  # ... and leaves out less than one batch per bucket
    assert 0 <= left < sum(batches.rows.values())
    assert batches(batches.steps_per_epoch)["source"].tolist() != batches(0)["source"].tolist()  # reshuffled
    again = TokenBudgetBatches(src, tgt, 256, seed=3)
    for step in (0, 5, batches.steps_per_epoch + 2):  # a resumed run reads the same batch at the same step
        np.testing.assert_array_equal(again(step)["source"], batches(step)["source"])
    with pytest.raises(ValueError, match="less than one row"):
        TokenBudgetBatches(src, tgt, 16)


def test_rows_padded_for_a_mesh_are_masked_and_leave_the_loss_and_gradient_unchanged():
    import jax
    from flax import nnx

    from nlp_jax.models.transformer_seq2seq import TransformerSeq2Seq, TransformerSeq2SeqConfig
    from nlp_jax.objectives import seq2seq_loss

    rng = np.random.default_rng(0)
    src = with_end([rng.integers(4, 31, rng.integers(2, 9)) for _ in range(18)], 16)
    tgt = with_end([rng.integers(4, 29, rng.integers(2, 9)) for _ in range(18)], 16)
    plain, padded = (TokenBudgetBatches(src, tgt, 6 * 16, seed=3, multiple=16, rows_multiple=m) for m in (1, 8))
    a, b = plain(0), padded(0)
    assert len(a["source"]) == 6 and len(b["source"]) == 8
    assert not b["target_mask"][6:].any() and (b["source_mask"][6:].sum(1) == 1).all()  # one </s>, no target
    model = TransformerSeq2Seq(TransformerSeq2SeqConfig.tiny(), rngs=nnx.Rngs(0))

    loss_and_grad = nnx.jit(nnx.value_and_grad(lambda m, batch: seq2seq_loss(m, batch, None)[0]))
    (la, ga), (lb, gb) = loss_and_grad(model, a), loss_and_grad(model, b)
    np.testing.assert_allclose(float(lb), float(la), rtol=1e-6)
    for x, y in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)):
        np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="rows_multiple must be >= 1"):
        TokenBudgetBatches(src, tgt, 96, rows_multiple=0)
