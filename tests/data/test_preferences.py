"""Preference pairs as arrays: the stated truncation, masks, the refusals, and seeded batches."""

import numpy as np
import pytest

from nlp_jax.data.preferences import ArrayBatches, encode_pairs


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


def test_array_batches_are_seeded_epochs_trimmed_to_a_multiple():
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 40, 50)
    arrays = {"ids": rng.integers(0, 9, (50, 48)), "ids_mask": np.arange(48)[None] < lengths[:, None],
              "score": np.arange(50.0)}
    source = ArrayBatches(arrays, 8, seed=3, trim_by=("ids_mask",), multiple=16)
    assert source.steps_per_epoch == 6
    seen = np.concatenate([source(s)["score"] for s in range(6)])
    assert len(set(seen)) == 48  # one epoch: no row twice
    batch = source(7)
    assert batch["ids"].shape[1] % 16 == 0 and batch["ids"].shape[1] >= lengths[batch["score"].astype(int)].max()
    np.testing.assert_array_equal(source(7)["score"], ArrayBatches(arrays, 8, seed=3)(7)["score"])
    assert not np.array_equal(source(1)["score"], source(7)["score"])  # another epoch, another order
