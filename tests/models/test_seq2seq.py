"""The encoder-decoders (models.seq2seq: LSTM with each score; models.transformer_seq2seq) and their
decoding (models.beam): invariants and known answers."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nlp_jax.models.beam import beam_search, greedy
from nlp_jax.models.seq2seq import SCORES, LSTMSeq2Seq, Seq2SeqConfig
from nlp_jax.models.transformer_seq2seq import TransformerSeq2Seq, TransformerSeq2SeqConfig
from nlp_jax.objectives import seq2seq_loss

SRC = jnp.array([[5, 6, 7, 3, 0, 0], [8, 9, 3, 0, 0, 0], [4, 3, 0, 0, 0, 0]])
TGT = jnp.array([[2, 5, 6, 7, 9], [2, 8, 4, 0, 0], [2, 11, 0, 0, 0]])


KINDS = (*SCORES, "transformer")  # the LSTM with each score, and the transformer


def model(attention="additive", **kw):
    if attention == "transformer":
        return TransformerSeq2Seq(TransformerSeq2SeqConfig.tiny(**kw), rngs=nnx.Rngs(1))
    return LSTMSeq2Seq(Seq2SeqConfig.tiny(attention=attention, **kw), rngs=nnx.Rngs(1))


@pytest.mark.parametrize("attention", KINDS)
def test_step_by_step_decoding_equals_teacher_forcing(attention):
    """For the transformer: logits with the KV cache equal the uncached ones."""
    m = model(attention)
    extra = {"attention_weights": True} if attention == "transformer" else {}
    full, aux = m(TGT, source=SRC, source_mask=SRC > 0, **extra)
    cache, steps = m.start(SRC, SRC > 0), []
    decode = nnx.jit(lambda m, token, cache: m(token, cache=cache))  # one program for every step
    for t in range(TGT.shape[1]):
        logits, out = decode(m, TGT[:, t:t + 1], cache)
        cache = out["cache"]
        steps.append(logits[:, 0])
    np.testing.assert_allclose(np.stack(steps, 1), full, rtol=2e-5, atol=2e-6)
    alpha = np.asarray(aux["attention"])  # (B, T, S)
    if attention == "none":
        assert not alpha.any()
    else:  # a distribution over the real source pieces, nothing on padding
        np.testing.assert_allclose(alpha.sum(-1), 1.0, rtol=1e-5)
        assert not alpha[np.broadcast_to(~np.asarray(SRC > 0)[:, None, :], alpha.shape)].any()


@pytest.mark.parametrize("attention", KINDS)
def test_source_padding_changes_nothing(attention):
    m = model(attention)
    wide = jnp.pad(SRC, ((0, 0), (0, 5)))
    a, _ = m(TGT, source=SRC, source_mask=SRC > 0)
    b, _ = m(TGT, source=wide, source_mask=wide > 0)
    alone, _ = m(TGT[1:2], source=SRC[1:2, :3], source_mask=SRC[1:2, :3] > 0)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a[1:2], alone, rtol=1e-5, atol=1e-6)


def test_the_bottleneck_sees_the_source_only_through_its_final_states():
    m = model("none")
    other = SRC.at[0, 0].set(12)  # another first word: the final states change, so the output does
    a, _ = m(TGT, source=SRC, source_mask=SRC > 0)
    b, _ = m(TGT, source=other, source_mask=other > 0)
    assert not np.allclose(a[0], b[0]) and np.allclose(a[1:], b[1:])
    with pytest.raises(ValueError, match="needs source and source_mask"):
        m(TGT)
    with pytest.raises(ValueError, match="attention must be one of"):
        Seq2SeqConfig.tiny(attention="general")


@pytest.mark.slow
def test_beam_of_one_is_greedy_and_scores_are_the_teacher_forced_log_probs():
    m = model(init_scale=0.8)
    m.vocab_b[...] = m.vocab_b[...].at[3].set(0.6)  # </s> likely enough that one row ends early, two do not
    transformer = model("transformer")
    tg, _ = greedy(transformer, SRC, SRC > 0, max_len=7, bos_id=2, eos_id=3)
    tb, _ = beam_search(transformer, SRC, SRC > 0, beam=1, max_len=7, bos_id=2, eos_id=3, length_penalty=0.0)
    np.testing.assert_array_equal(tg, tb)
    g, g_score = greedy(m, SRC, SRC > 0, max_len=7, bos_id=2, eos_id=3)
    b, b_score = beam_search(m, SRC, SRC > 0, beam=1, max_len=7, bos_id=2, eos_id=3, length_penalty=0.0)
    np.testing.assert_array_equal(g, b)
    assert (np.asarray(g) == 3).any(1).tolist() == [True, False, False]
    np.testing.assert_allclose(g_score, b_score, rtol=1e-6)
    # every row teacher-forced in one compiled call: the decoder is causal, so what follows a row's </s> changes
    # nothing before it
    rows = np.asarray(g)
    teacher = nnx.jit(lambda m, t_in: m(t_in, source=SRC, source_mask=SRC > 0)[0])
    logp = np.asarray(jax.nn.log_softmax(teacher(m, jnp.array([[2, *row[:-1]] for row in rows])), -1))
    for i, row in enumerate(rows):
        n = int(np.argmax(row == 3)) + 1 if (row == 3).any() else len(row)
        assert float(sum(logp[i, t, row[t]] for t in range(n))) == pytest.approx(float(g_score[i]), rel=1e-5)
        assert (row[n:] == 0).all()  # padding after </s>


def test_a_wide_beam_finds_the_exhaustive_best():
    """Known answer: with 6 target pieces and at most 3 steps, a beam as wide as every prefix must return
    the best of all hypotheses that end in </s>, by log p / length ** penalty."""
    m = LSTMSeq2Seq(Seq2SeqConfig.tiny(tgt_vocab=6, init_scale=1.5), rngs=nnx.Rngs(3))
    src, mask = SRC[:2], SRC[:2] > 0
    hyps = [(*body, 3) for n in (1, 2, 3) for body in itertools.product((0, 1, 2, 4, 5), repeat=n - 1)]
    t_in = jnp.array([[2, *h[:-1]] + [0] * (3 - len(h)) for h in hyps])  # the decoder is causal: padding after
    for penalty in (0.0, 1.0):
        seq, score = beam_search(m, src, mask, beam=36, max_len=3, bos_id=2, eos_id=3, length_penalty=penalty)
        for i in range(2):
            rows = len(hyps)
            logits, _ = m(t_in, source=jnp.repeat(src[i:i + 1], rows, 0),
                          source_mask=jnp.repeat(mask[i:i + 1], rows, 0))
            logp = np.asarray(jax.nn.log_softmax(logits, -1), np.float64)
            scores = [sum(logp[r, t, tok] for t, tok in enumerate(h)) / len(h) ** penalty for r, h in enumerate(hyps)]
            best = int(np.argmax(scores))
            assert float(score[i]) == pytest.approx(scores[best], rel=1e-5)
            assert tuple(np.asarray(seq[i])[:len(hyps[best])]) == hyps[best]


def test_decoding_refuses_an_empty_source_row_and_bad_widths():
    m = model()
    empty = SRC.at[2].set(0)
    with pytest.raises(ValueError, match="at least one real piece"):
        greedy(m, empty, empty > 0, max_len=4, bos_id=2, eos_id=3)
    with pytest.raises(ValueError, match="beam must be >= 1"):
        beam_search(m, SRC, SRC > 0, beam=0, max_len=4, bos_id=2, eos_id=3)
    with pytest.raises(ValueError, match="max_len must be >= 1"):
        greedy(m, SRC, SRC > 0, max_len=0, bos_id=2, eos_id=3)
    with pytest.raises(ValueError, match="max_len=17 exceeds the model's maximum length 16"):
        beam_search(model("transformer"), SRC, SRC > 0, max_len=17, bos_id=2, eos_id=3)
    with pytest.raises(ValueError, match="source length 20 exceeds max_len 16"):
        model("transformer")(TGT, source=jnp.ones((3, 20), int), source_mask=jnp.ones((3, 20), bool))
    with pytest.raises(ValueError, match="shared_embeddings needs one vocabulary"):
        TransformerSeq2SeqConfig.tiny(shared_embeddings=True)


@pytest.mark.slow
def test_the_loss_masks_target_padding_and_learns_to_copy():
    """Known answer: with attention, a copy task (target = source) is learnt in a few hundred steps."""
    import optax

    rng = np.random.default_rng(0)
    cfg = Seq2SeqConfig.tiny(src_vocab=12, tgt_vocab=12, emb=16, hidden=16, attn_dim=16)
    m = LSTMSeq2Seq(cfg, rngs=nnx.Rngs(0))
    opt = nnx.Optimizer(m, optax.adam(1e-2), wrt=nnx.Param)

    def batch():
        lengths = rng.integers(2, 7, size=32)
        body = [rng.integers(4, 12, size=n) for n in lengths]
        width = 8
        src = np.array([np.pad(np.r_[b, 3], (0, width - len(b) - 1)) for b in body])
        tin = np.array([np.pad(np.r_[2, b], (0, width - len(b) - 1)) for b in body])
        tout = np.array([np.pad(np.r_[b, 3], (0, width - len(b) - 1)) for b in body])
        return {"source": src, "source_mask": src > 0, "target_in": tin, "target_out": tout, "target_mask": tout > 0}

    @nnx.jit
    def step(m, opt, b):
        (loss, aux), grads = nnx.value_and_grad(lambda m: seq2seq_loss(m, b, None), has_aux=True)(m)
        opt.update(m, grads)
        return loss, aux

    b = batch()
    padded = {**b, "target_out": np.where(b["target_mask"], b["target_out"], 7)}  # padding targets ignored
    loss_of = nnx.jit(lambda m, b: seq2seq_loss(m, b, None)[0])  # one program for both (not op by op)
    assert float(loss_of(m, b)) == pytest.approx(float(loss_of(m, padded)), rel=1e-6)
    for _ in range(300):
        loss, aux = step(m, opt, batch())
    assert float(aux["accuracy"]) > 0.95, float(loss)
    test = batch()
    out, _ = greedy(m, test["source"], test["source_mask"], max_len=8, bos_id=2, eos_id=3)
    exact = [(np.asarray(o)[:int(t.sum())] == tt[:int(t.sum())]).all()
             for o, tt, t in zip(out, test["target_out"], test["target_mask"])]
    assert np.mean(exact) > 0.8


@pytest.mark.parametrize("kind", KINDS)
def test_bfloat16_compute_is_close_to_float32_and_decodes(kind):
    """compute_dtype='bfloat16': float32 parameters and logits, logits near the float32 model's, and
    step-by-step decoding from the bfloat16 cache (the transformer's KV cache, the LSTM's encoder states;
    the LSTM's decoder state stays float32) gives the teacher-forced logits."""
    src_mask = SRC > 0
    full = model(kind)
    half = model(kind, compute_dtype="bfloat16")
    a, _ = full(TGT, source=SRC, source_mask=src_mask)
    b, _ = half(TGT, source=SRC, source_mask=src_mask)
    assert b.dtype == jnp.float32
    assert {x.dtype for x in jax.tree.leaves(nnx.state(half, nnx.Param))} == {jnp.dtype(jnp.float32)}
    np.testing.assert_allclose(a, b, atol=0.05)
    cache = half.start(SRC, src_mask)
    if kind == "transformer":
        assert cache["self"][0]["k"].dtype == jnp.bfloat16
    else:
        assert cache["keys"].dtype == jnp.bfloat16 and cache["h"].dtype == cache["c"].dtype == jnp.float32
    decode = nnx.jit(lambda m, token, cache: m(token, cache=cache))  # one program for every step
    for t in range(TGT.shape[1]):
        step, aux = decode(half, TGT[:, t:t + 1], cache)
        cache = aux["cache"]
        np.testing.assert_allclose(step[:, 0], b[:, t], atol=0.05)
    config = TransformerSeq2SeqConfig if kind == "transformer" else Seq2SeqConfig
    with pytest.raises(ValueError, match="compute_dtype must be one of 'float32', 'bfloat16'"):
        config.tiny(compute_dtype="float16")
