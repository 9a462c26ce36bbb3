"""The verifiable-reward task: problems drawn once each with the held-out set apart, their encoding, and the
verifier's exact match on right, wrong and cut-short completions."""

import numpy as np
import pytest

from nlp_jax.data import arithmetic as A


def test_the_held_out_problems_are_disjoint_from_training_and_do_not_depend_on_its_size():
    train, held = A.split(2, 500, 100, seed=3)
    assert train.shape == (500, 2) and held.shape == (100, 2) and (0 <= train).all() and (train < 100).all()
    codes = lambda p: set(map(tuple, p.tolist()))  # noqa: E731
    assert len(codes(train)) == 500 and len(codes(held)) == 100 and not codes(train) & codes(held)
    more, same = A.split(2, 2000, 100, seed=3)
    np.testing.assert_array_equal(same, held)  # more training problems, the same held-out ones
    np.testing.assert_array_equal(more[:500], train)
    every, _ = A.split(1, 100, 0, seed=0)  # the whole space of 1-digit pairs, each once
    assert sorted(codes(every)) == [(a, b) for a in range(10) for b in range(10)]
    with pytest.raises(ValueError, match="at most the 100 pairs"):
        A.split(1, 90, 11, seed=0)
    with pytest.raises(ValueError, match="digits must be in"):
        A.split(0, 1, 1, seed=0)


def test_prompts_answers_and_the_sft_mask_spell_the_sum():
    pairs = np.array([[42, 317], [999, 999], [0, 5]])
    prompts, answers = A.encode_prompts(pairs, 3), A.encode_answers(pairs, 3)
    assert [A.decode(r) for r in prompts] == ["042+317=", "999+999=", "000+005="]
    assert [A.decode(r) for r in answers] == ["0359$", "1998$", "0005$"]
    arrays = A.sft_arrays(pairs, 3)
    assert A.decode(arrays["inputs"][0]) == "042+317=0359" and A.decode(arrays["targets"][0]) == "42+317=0359$"
    # the loss reads the answer only: the targets after '=' (its 4 digits and the end token)
    assert A.decode(arrays["targets"][0][arrays["mask"][0]]) == "0359$"
    with pytest.raises(ValueError, match="operands in"):
        A.encode_prompts(np.array([[1000, 1]]), 3)


def test_exact_match_needs_every_digit_and_the_end_token():
    pairs = np.array([[42, 317]] * 5)
    prompt = A.encode_prompts(pairs, 3)
    right = A.encode_answers(pairs[:1], 3)[0]
    wrong_digit, no_end, early_end = right.copy(), right.copy(), right.copy()
    wrong_digit[2] = A.DIGIT0 + 4
    no_end[-1] = A.DIGIT0
    early_end[-2:] = [A.EOS, A.PAD]
    completions = np.stack([right, wrong_digit, no_end, early_end, right])
    tokens = np.concatenate([prompt, completions, np.full((5, 2), A.PAD)], 1)  # longer completions: padding after
    mask = tokens != A.PAD
    mask[4, 8 + 3:] = False  # the last one's final answer tokens were never generated
    np.testing.assert_array_equal(A.exact_match(tokens, None, 3), [1, 0, 0, 0, 1])
    np.testing.assert_array_equal(A.exact_match(tokens, mask, 3), [1, 0, 0, 0, 0])
    other = np.concatenate([A.encode_prompts(np.array([[42, 318]]), 3), right[None], np.zeros((1, 2), int)], 1)
    assert A.exact_match(other, None, 3)[0] == 0  # the problem is read from the prompt itself
    with pytest.raises(ValueError, match="completions, got shape"):
        A.exact_match(tokens[:, :10], None, 3)
