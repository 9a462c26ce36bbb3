"""BLEU through sacrebleu: known answers, the two conventions, length buckets."""

import pytest

from nlp_jax.eval.bleu import bleu, bleu_by_length

REFS = ["A man rides a red bike.", "Two dogs play in the snow.", "A woman is singing on stage."]


def test_identical_text_scores_100_and_case_counts_only_in_the_cased_score():
    assert bleu(REFS, REFS)["bleu"] == pytest.approx(100.0)
    upper = [r.upper() for r in REFS]
    scores = bleu(upper, REFS)
    assert scores["bleu"] < 5 and scores["bleu_lc"] == pytest.approx(100.0)
    assert "case:mixed" in scores["signature"] and "tok:13a" in scores["signature"]
    assert "case:lc" in scores["signature_lc"]


def test_a_known_partial_match():
    # hypothesis 4 words, reference 6: precisions 4/4, 3/3, 2/2, 1/1; brevity penalty exp(1 - 6/4)
    import math

    score = bleu(["the cat sat on"], ["the cat sat on the mat"])["bleu"]
    assert score == pytest.approx(100 * math.exp(1 - 6 / 4), rel=1e-6)


def test_length_buckets_score_their_own_sentences_and_bad_input_is_named():
    hyps = [REFS[0], "nothing like it", REFS[2]]
    rows = bleu_by_length(hyps, REFS, [3, 12, 25], edges=[0, 10, 20])
    assert [(r["from"], r["to"], r["sentences"]) for r in rows] == [(0, 10, 1), (10, 20, 1), (20, None, 1)]
    assert rows[0]["bleu"] == pytest.approx(100.0) and rows[1]["bleu"] < 10
    assert len(bleu_by_length(hyps, REFS, [3, 4, 5], edges=[0, 10])) == 1  # empty buckets left out
    with pytest.raises(ValueError, match="2 hypotheses but 3 references"):
        bleu(hyps[:2], REFS)
    with pytest.raises(ValueError, match="no sentences"):
        bleu([], [])
