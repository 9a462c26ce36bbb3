import itertools

import numpy as np
import pytest

from nlp_jax.data.ptb import load_ptb
from nlp_jax.data.synthetic import MarkovSource
from nlp_jax.models.ngram import AddKLM, KneserNeyLM
from nlp_jax.ops.ngram import count_ngrams

# ids: 0 = <s>, 1 = </s>, 2.. words
BOS, EOS = 0, 1
SENTS = [[2, 3, 4], [2, 3, 3, 5], [4, 2, 3], [5, 5, 2, 4, 3]]
STREAM = np.array([t for s in SENTS for t in [BOS, *s, EOS]])


def test_counts_match_hand_counts_and_respect_sentence_boundaries():
    levels = count_ngrams(STREAM, 3, vocab=6, bos=BOS, eos=EOS)
    expected = {}
    for s in SENTS:
        padded = [BOS, *s, EOS]
        for n in (1, 2, 3):
            for i in range(len(padded) - n + 1):
                expected[tuple(padded[i:i + n])] = expected.get(tuple(padded[i:i + n]), 0) + 1
    got = {}
    for n, level in enumerate(levels, start=1):
        # rebuild each n-gram from its key chain
        for idx in range(len(level.keys)):
            gram, j = [], idx
            for m in range(n, 0, -1):
                gram.insert(0, int(levels[m - 1].keys[j] % 6))
                j = int(levels[m - 1].prefix[j])
            got[tuple(gram)] = int(level.counts[idx])
    assert got == expected  # nothing spans "</s> <s>"


def test_kneser_ney_distributions_sum_to_one_for_every_context():
    src = MarkovSource(vocab_size=6, order=1, seed=0)
    toks = src.sample(3000, seed=1) + 2  # words 2..7
    sents = np.array_split(toks, 150)
    stream = np.array([t for s in sents for t in [BOS, *s, EOS]])
    lm = KneserNeyLM(stream, order=3, vocab_size=8, bos=BOS, eos=EOS)
    contexts = [[], [BOS]] + [list(c) for c in itertools.product(range(0, 8), repeat=2) if 1 not in c]
    for ctx in contexts:
        p = lm.next_token_probs(ctx)
        assert p[BOS] == 0 and np.all(np.delete(p, BOS) > 0)
        np.testing.assert_allclose(p.sum(), 1.0, rtol=1e-12, err_msg=str(ctx))
    # the position-wise path agrees with the context-wise one
    lp = lm.token_log_probs(stream[:40])
    predicted = [i for i in range(40) if stream[i] != BOS]
    for k, i in enumerate(predicted[:20]):
        sent_start = max(j for j in range(i + 1) if stream[j] == BOS)
        ctx = list(stream[max(sent_start, i - 2):i])
        np.testing.assert_allclose(lp[k], np.log(lm.next_token_probs(ctx)[stream[i]]), rtol=1e-12)


@pytest.mark.peers
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_an_independent_arpa_reader_scores_our_export_as_the_model_does(tmp_path, order):
    arpa = pytest.importorskip("arpa")  # a backoff-model reader written apart from this package
    src = MarkovSource(vocab_size=7, order=1, seed=3)
    toks = src.sample(2000, seed=5) + 3  # words 3..9; id 2 (<unk>) never occurs in training
    stream = np.array([t for s in np.array_split(toks, 120) for t in [BOS, *s, EOS]])
    words = ["<s>", "</s>", "<unk>", *(f"w{i}" for i in range(3, 10)), "w10"]  # w10: in the vocabulary, unseen
    lm = KneserNeyLM(stream, order=order, vocab_size=len(words), bos=BOS, eos=EOS)
    lm.save_arpa(tmp_path / "lm.arpa", words)
    model = arpa.loadf(str(tmp_path / "lm.arpa"))[0]
    held = MarkovSource(vocab_size=7, order=1, seed=3).sample(300, seed=9) + 3
    held[::37] = 10  # some words the training never saw
    sentences = [list(s) for s in np.array_split(held, 20)]
    test = np.array([t for s in sentences for t in [BOS, *s, EOS]])
    ours = lm.token_log_probs(test) / np.log(10)
    theirs, k = [], 0
    for s in sentences:
        padded = ["<s>", *(words[i] for i in s), "</s>"]
        theirs += [model.log_p(tuple(padded[max(0, i - order + 1):i + 1])) for i in range(1, len(padded))]
        k += len(padded) - 1
    np.testing.assert_allclose(ours, theirs, rtol=1e-8, atol=1e-9)
    assert sum(model.log_s(" ".join(words[i] for i in s)) for s in sentences) == pytest.approx(ours.sum(), rel=1e-9)
    with pytest.raises(ValueError, match="must spell the 11 ids"):
        lm.save_arpa(tmp_path / "bad.arpa", words[:-1])


def test_add_k_and_mle_against_hand_probabilities():
    mle = AddKLM(STREAM, order=2, vocab_size=6, bos=BOS, eos=EOS, k=0.0)
    lp = mle.token_log_probs(STREAM[:5])  # <s> 2 3 4 </s>
    # c(<s> 2)=2 of c(<s>)=4; c(2 3)=3 of c(2 .)=4; c(3 4)=1 of c(3 .)=5; c(4 </s>)=1 of c(4 .)=3
    np.testing.assert_allclose(np.exp(lp), [2 / 4, 3 / 4, 1 / 5, 1 / 3])
    add1 = AddKLM(STREAM, order=2, vocab_size=6, bos=BOS, eos=EOS, k=1.0)
    np.testing.assert_allclose(np.exp(add1.token_log_probs(STREAM[:2])), [(2 + 1) / (4 + 5)])
    with pytest.raises(ValueError, match="k must"):
        AddKLM(STREAM, order=2, vocab_size=6, bos=BOS, eos=EOS, k=-1)


def test_kn_order_matches_entropy_rate_of_a_markov_source():
    src = MarkovSource(vocab_size=10, order=2, concentration=0.3, seed=4)
    toks = src.sample(120_000, seed=2) + 2
    sents = np.array_split(toks, 2000)
    stream = np.array([t for s in sents for t in [BOS, *s, EOS]])
    test_toks = src.sample(20_000, seed=9) + 2
    test = np.array([t for s in np.array_split(test_toks, 1) for t in [BOS, *s, EOS]])
    lm = KneserNeyLM(stream, order=3, vocab_size=12, bos=BOS, eos=EOS)
    ppl = np.exp(-lm.token_log_probs(test)[2:-1].mean())  # skip the first two (no full context) and </s>
    np.testing.assert_allclose(ppl, np.exp(src.entropy_rate()), rtol=0.03)


def test_ptb_kneser_ney_reproduces_published_perplexities():
    ptb = load_ptb()
    assert (ptb.test != ptb.bos).sum() == 82_430
    for order, published in ((3, 148.3), (5, 141.2)):
        lm = KneserNeyLM(ptb.train, order=order, vocab_size=len(ptb.words), bos=ptb.bos, eos=ptb.eos)
        ppl = float(np.exp(-lm.token_log_probs(ptb.test).mean()))
        assert abs(ppl - published) / published < 0.005, (order, ppl)
