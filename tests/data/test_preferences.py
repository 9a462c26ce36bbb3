"""Preference pairs as arrays: the stated truncation, masks, the refusals, and seeded batches."""

import numpy as np
import pytest

from nlp_jax.data.corpus import ShuffledBatches
from nlp_jax.data.preferences import encode_pairs


def encode(text):  # one id per character: a..z -> 1..26
    return [ord(c) - 96 for c in text]


def test_rows_masks_and_the_truncation_rule():
    pairs, dropped = encode_pairs(encode, ["abcdef", "xy"], ["ghij", "z"], ["klm", "zz"], max_length=8,
                                  max_prompt_length=4, bos_id=30)
    assert dropped == []
    # pair 0: BOS + the prompt's last 4 ("cdef"), then the response cut to the 3 places left
    np.testing.assert_array_equal(pairs["chosen"][0], [30, 3, 4, 5, 6, 7, 8, 9])
    np.testing.assert_array_equal(pairs["rejected"][0], [30, 3, 4, 5, 6, 11, 12, 13])
    np.testing.assert_array_equal(pairs["chosen_response"][0], [0, 0, 0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(pairs["chosen"][1], [30, 24, 25, 26, 0, 0, 0, 0])
    np.testing.assert_array_equal(pairs["chosen_mask"][1], [1, 1, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(pairs["rejected_response"][1], [0, 0, 0, 1, 1, 0, 0, 0])
    assert not pairs["chosen_response"][:, 0].any()  # a response never starts at position 0


def test_pairs_without_a_preference_are_refused_by_index_or_dropped():
    prompts, chosen, rejected = ["ab", "cd", "ef"], ["x", "", "yy"], ["z", "w", "yy"]
    with pytest.raises(ValueError, match="pair 1 has an empty response"):
        encode_pairs(encode, prompts, chosen, rejected, max_length=8, max_prompt_length=4)
    with pytest.raises(ValueError, match="pair 2 has identical chosen and rejected"):
        encode_pairs(encode, prompts, ["x", "v", "yy"], rejected, max_length=8, max_prompt_length=4)
    pairs, dropped = encode_pairs(encode, prompts, chosen, rejected, max_length=8, max_prompt_length=4,
                                  drop_invalid=True)
    assert dropped == [1, 2] and len(pairs["chosen"]) == 1
    # responses that differ only past the cut become identical: no preference left
    _, dropped = encode_pairs(encode, ["abc", "abc"], ["xyq", "xa"], ["xyr", "xb"], max_length=5,
                              max_prompt_length=3, drop_invalid=True)
    assert dropped == [0]
    with pytest.raises(ValueError, match="no valid preference pair left"):
        encode_pairs(encode, ["abc"], ["xyq"], ["xyr"], max_length=5, max_prompt_length=3, drop_invalid=True)


def test_a_prompt_that_leaves_no_room_for_the_response_is_refused():
    with pytest.raises(ValueError, match="leaves no room for a response"):
        encode_pairs(encode, ["ab"], ["c"], ["d"], max_length=8, max_prompt_length=8)
    with pytest.raises(ValueError, match="leaves no room for a response"):
        encode_pairs(encode, ["ab"], ["c"], ["d"], max_length=8, max_prompt_length=7, bos_id=30)
    with pytest.raises(ValueError, match="differ in length"):
        encode_pairs(encode, ["ab"], ["c", "e"], ["d"], max_length=8, max_prompt_length=4)


def test_shuffled_batches_are_seeded_epochs_trimmed_to_a_multiple():
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 40, 50)
    arrays = {"ids": rng.integers(0, 9, (50, 48)), "ids_mask": np.arange(48)[None] < lengths[:, None],
              "score": np.arange(50.0)}
    source = ShuffledBatches(arrays, 8, seed=3, trim_by=("ids_mask",), multiple=16)
    assert source.steps_per_epoch == 6
    seen = np.concatenate([source(s)["score"] for s in range(6)])
    assert len(set(seen)) == 48  # one epoch: no row twice
    batch = source(7)
    assert batch["ids"].shape[1] % 16 == 0 and batch["ids"].shape[1] >= lengths[batch["score"].astype(int)].max()
    np.testing.assert_array_equal(source(7)["score"], ShuffledBatches(arrays, 8, seed=3)(7)["score"])
    assert not np.array_equal(source(1)["score"], source(7)["score"])  # another epoch, another order


def test_prompt_prefixes_are_seeded_left_padded_and_skip_short_sentences():
    from nlp_jax.data.preferences import prompt_prefixes

    sentences = [[5, 6, 7, 8, 9, 10, 11, 12, 13, 14]] * 30 + [[5, 6]]
    prompts, mask, kept = prompt_prefixes(sentences, min_len=2, max_len=8, seed=1, bos_id=1)
    assert prompts.shape == (30, 9) and list(kept) == list(range(30))  # [5, 6] has nothing to continue
    lengths = mask.sum(1) - 1
    assert lengths.min() >= 2 and lengths.max() <= 8 and len(set(lengths)) > 3
    for row, m, k in zip(prompts, mask, lengths):
        assert not m[:9 - k - 1].any() and m[9 - k - 1:].all()  # left padding, then BOS and the prefix
        assert row[9 - k - 1] == 1 and list(row[9 - k:]) == sentences[0][:k]
    again = prompt_prefixes(sentences, min_len=2, max_len=8, seed=1, bos_id=1)
    np.testing.assert_array_equal(again[0], prompts)


def test_left_pad_right_aligns_rows_of_any_length():
    from nlp_jax.data.preferences import left_pad

    out, mask = left_pad([[7, 8, 9], [5], []], pad_id=0)
    np.testing.assert_array_equal(out, [[7, 8, 9], [0, 0, 5], [0, 0, 0]])
    np.testing.assert_array_equal(mask, [[1, 1, 1], [0, 0, 1], [0, 0, 0]])
    assert left_pad([[1]], pad_id=3, width=4)[0].tolist() == [[3, 3, 3, 1]]


def test_pairs_from_samples_take_every_pair_with_the_higher_score_chosen():
    from nlp_jax.data.preferences import pairs_from_samples

    tokens = np.array([[1, 4, 5], [1, 6, 7], [1, 8, 9], [1, 8, 9],  # prompt 0: the last two identical
                       [1, 4, 4], [1, 5, 5], [1, 6, 6], [1, 7, 7]])
    drawn = {"tokens": tokens, "mask": np.ones_like(tokens, bool),
             "response": np.tile([False, True, True], (8, 1))}
    scores = np.array([0.1, 0.9, 0.5, 0.5, 0.3, 0.3, 0.2, 0.8])
    pairs = pairs_from_samples(drawn, scores, 4)
    # prompt 0: 6 pairs less the identical one; prompt 1: 6 less the tie (rows 4 and 5)
    assert len(pairs["chosen"]) == 10
    lookup = {tuple(t): s for t, s in zip(map(tuple, tokens), scores)}
    assert all(lookup[tuple(c)] > lookup[tuple(r)] for c, r in zip(pairs["chosen"], pairs["rejected"]))
    with pytest.raises(ValueError, match="whole groups of n=3"):
        pairs_from_samples(drawn, scores, 3)
    # min_gap keeps only pairs whose scores differ by more: prompt 0's (0.9, 0.1), prompt 1's three with 0.8
    strong = pairs_from_samples(drawn, scores, 4, min_gap=0.45)
    gaps = [lookup[tuple(c)] - lookup[tuple(r)] for c, r in zip(strong["chosen"], strong["rejected"])]
    assert len(gaps) == 4 and min(gaps) > 0.45
    with pytest.raises(ValueError, match="min_gap must be >= 0"):
        pairs_from_samples(drawn, scores, 4, min_gap=-0.1)
    # extremes: one pair a prompt, its best against its worst: prompt 0's 0.9 over 0.1, prompt 1's 0.8 over 0.2;
    # a prompt whose samples all tie gives none, and of tied best samples the first is chosen
    best = pairs_from_samples(drawn, scores, 4, extremes=True)
    np.testing.assert_array_equal(best["chosen"], tokens[[1, 7]])
    np.testing.assert_array_equal(best["rejected"], tokens[[0, 6]])
    np.testing.assert_allclose(best["chosen_score"] - best["rejected_score"], [0.8, 0.6], rtol=1e-6)
    flat = pairs_from_samples(drawn, np.array([0.5] * 4 + [0.1, 0.9, 0.9, 0.3]), 4, extremes=True)
    np.testing.assert_array_equal(flat["chosen"], tokens[[5]])  # prompt 0 all tied: no pair; the first 0.9 wins
    assert len(pairs_from_samples(drawn, scores, 4, min_gap=0.7, extremes=True)["chosen"]) == 1
    with pytest.raises(ValueError, match="1 of 8 scores are NaN or infinite: the judge"):  # dropped silently before
        pairs_from_samples(drawn, np.where(np.arange(8) == 2, np.nan, scores), 4)


def test_unpaired_examples_from_pairs_keep_each_completion_and_mismatch_the_kl_rows():
    from nlp_jax.data.preferences import unpaired_from_pairs

    # the sampler's layout: 3 prompt columns (left-padded), then 3 response columns
    chosen = np.array([[0, 7, 8, 20, 21, 0], [9, 9, 9, 22, 0, 0]])
    rejected = np.array([[0, 7, 8, 30, 0, 0], [9, 9, 9, 31, 32, 33]])
    pairs = {"chosen": chosen, "rejected": rejected, "chosen_mask": chosen > 0, "rejected_mask": rejected > 0}
    for side, rows in (("chosen", chosen), ("rejected", rejected)):
        pairs[f"{side}_response"] = (np.arange(6)[None] >= 3) & (rows > 0)
    out = unpaired_from_pairs(pairs, seed=0)
    np.testing.assert_array_equal(out["completion"], np.concatenate([chosen, rejected]))
    np.testing.assert_array_equal(out["desirable"], [True, True, False, False])
    for i in range(4):  # each kl row: its own prompt, another example's completion
        np.testing.assert_array_equal(out["kl"][i, :3], out["completion"][i, :3])
        j = [k for k in range(4) if (out["completion"][k, 3:] == out["kl"][i, 3:]).all()]
        assert j and (out["kl_response"][i] == out["completion_response"][j[0]]).all()
    assert sorted(map(tuple, out["kl"][:, 3:].tolist())) == sorted(map(tuple, out["completion"][:, 3:].tolist()))
    shifted = dict(pairs, chosen_response=np.roll(pairs["chosen_response"], 1, axis=1))
    with pytest.raises(ValueError, match="responses all start at one column"):
        unpaired_from_pairs(shifted)
