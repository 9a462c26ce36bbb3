"""BERT: bidirectional encoder invariants, heads, bad input, the pretraining loss against float64."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nlp_jax import ops
from nlp_jax.models.bert import BertClassifier, BertConfig, BertEncoder, BertForPreTraining, mean_pool
from nlp_jax.nn import SelfAttention
from nlp_jax.objectives import classification_loss, pretraining_loss

CFG = BertConfig.tiny(dropout=0.0)


@nnx.jit
def run(model, tokens, segments=None, mask=None):
    """One compiled forward (eager calls would compile every op for every shape)."""
    return model(tokens, segments=segments, attention_mask=mask)


def _batch(b=3, t=10, seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(5, CFG.vocab_size, (b, t)).astype(np.int32)
    lengths = np.array([t, t // 2, 3][:b])
    mask = np.arange(t)[None, :] < lengths[:, None]
    segments = (np.arange(t)[None, :] >= lengths[:, None] // 2).astype(np.int32) * mask
    return jnp.asarray(np.where(mask, tokens, 0)), jnp.asarray(segments), jnp.asarray(mask)


def test_padding_never_changes_the_real_positions_and_every_position_sees_both_sides():
    enc = BertEncoder(CFG, rngs=nnx.Rngs(0))
    tokens, segments, mask = _batch()
    h, aux = run(enc, tokens, segments, mask)
    assert h.shape == (3, 10, 16) and len(aux["hidden_states"]) == CFG.n_layer + 1 and aux["pooled"].shape == (3, 16)
    pad = lambda x: jnp.pad(x, ((0, 0), (0, 6)))  # noqa: E731
    h_more, _ = run(enc, pad(tokens), pad(segments), pad(mask))
    m = np.asarray(mask)
    np.testing.assert_allclose(np.asarray(h_more)[:, :10][m], np.asarray(h)[m], atol=1e-6)
    changed = tokens.at[0, -1].set(7)  # bidirectional: the first position sees a change at the last
    assert not np.allclose(run(enc, changed, None, mask)[0][0, 0], run(enc, tokens, None, mask)[0][0, 0])


def test_bad_input_all_padding_rows_long_sequences_and_out_of_range_ids():
    enc = BertEncoder(CFG, rngs=nnx.Rngs(0))
    tokens, _, mask = _batch()
    h, aux = run(enc, tokens, None, mask.at[1].set(False))
    assert np.isfinite(np.asarray(h)).all() and np.isfinite(np.asarray(aux["pooled"])).all()
    with pytest.raises(ValueError, match="exceeds block_size 24; truncate"):
        enc(jnp.zeros((1, 25), jnp.int32))
    h, _ = run(enc, tokens.at[0, 2].set(CFG.vocab_size))
    assert np.isnan(np.asarray(h)[0]).all() and np.isfinite(np.asarray(h)[1:]).all()  # no id becomes another
    with pytest.raises(ValueError, match="pooling must be one of"):
        BertClassifier(CFG, pooling="max", rngs=nnx.Rngs(0))


def test_classifier_pools_cls_or_the_masked_mean():
    tokens, segments, mask = _batch()
    for pooling in ("cls", "mean"):
        model = BertClassifier(CFG, num_labels=3, pooling=pooling, rngs=nnx.Rngs(1))
        logits, aux = run(model, tokens, segments, mask)
        expected = aux["pooled"] if pooling == "cls" else mean_pool(aux["hidden"], mask)
        np.testing.assert_allclose(aux["sentence"], expected, atol=1e-6)
        np.testing.assert_allclose(logits, model.head(expected), atol=1e-6)
    h = np.asarray(aux["hidden"], np.float64)
    np.testing.assert_allclose(aux["sentence"][1], h[1, :5].mean(0), atol=1e-6)
    batch = {"input_ids": tokens, "token_type_ids": segments, "attention_mask": mask, "labels": jnp.array([0, 2, 1])}
    loss, aux = classification_loss(model, batch, None)
    assert np.isfinite(float(loss)) and int(aux["tokens"]) == int(mask.sum())


def test_the_last_block_at_chosen_rows_equals_those_rows_of_the_full_encoder_and_keeps_the_gradient():
    tokens, segments, mask = _batch()
    enc = BertEncoder(CFG, rngs=nnx.Rngs(3))
    rows = jnp.array([[0, 4], [1, 0], [2, 2]])
    full, _ = run(enc, tokens, segments, mask)
    part, aux = nnx.jit(lambda m: m(tokens, segments=segments, attention_mask=mask, last_rows=rows))(enc)
    np.testing.assert_allclose(part, np.take_along_axis(np.asarray(full), np.asarray(rows)[..., None], 1), atol=1e-6)
    assert aux["hidden_states"][-1].shape == (3, 2, 16) and aux["hidden_states"][-2].shape == (3, 10, 16)
    model = BertClassifier(CFG, num_labels=3, rngs=nnx.Rngs(4))
    batch = {"input_ids": tokens, "token_type_ids": segments, "attention_mask": mask, "labels": jnp.array([0, 2, 1])}
    grads = [nnx.jit(nnx.grad(lambda m, a=a: classification_loss(m, batch, None, all_hidden=a)[0]))(model)
             for a in (False, True)]
    leaves = [jax.tree.leaves(g) for g in grads]
    assert max(float(jnp.max(jnp.abs(a))) for a in leaves[1]) > 0
    for a, b in zip(*leaves):  # [CLS]-only last block: the same loss gradient for every parameter
        np.testing.assert_allclose(a, b, atol=1e-6)
    with pytest.raises(ValueError, match="rows= is for bidirectional attention"):
        SelfAttention(16, 2, causal=True, bias=True, dropout=0.0, proj_std=0.02, implementation=None,
                      dtype=jnp.float32, rngs=nnx.Rngs(0))(jnp.zeros((1, 4, 16)), rows=jnp.zeros((1, 1), jnp.int32))


def test_pretraining_loss_equals_a_float64_reference_of_its_two_heads():
    model = BertForPreTraining(CFG, rngs=nnx.Rngs(2))
    tokens, segments, mask = _batch()
    tokens = tokens.at[:, 0].set(2)
    batch = {"input_ids": tokens, "token_type_ids": segments, "attention_mask": mask,
             "nsp_labels": jnp.array([0, 1, 1]), "mlm_seed": jnp.int32(11)}
    loss_fn = functools.partial(pretraining_loss, mask_id=4, special_ids=(0, 2, 3), rate=0.4)
    loss, aux = jax.jit(lambda m, b: loss_fn(m, b, None))(model, batch)
    inputs, chosen = ops.mlm_mask(tokens, jax.random.fold_in(jax.random.key(0), 11), vocab_size=CFG.vocab_size,
                                  mask_id=4, special_ids=(0, 2, 3), attention_mask=mask, rate=0.4)
    logits, out = run(model, inputs, segments, mask)

    def nll(z, y):
        z = np.asarray(z, np.float64)
        log_p = z - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)) - z.max(-1, keepdims=True)
        return -np.take_along_axis(log_p, np.asarray(y)[..., None], -1)[..., 0]

    c = np.asarray(chosen)
    assert c.sum() > 0 and not c[:, 0].any()
    mlm, nsp = nll(logits, tokens)[c].mean(), nll(out["nsp_logits"], batch["nsp_labels"]).mean()
    np.testing.assert_allclose([float(aux["mlm_loss"]), float(aux["nsp_loss"]), float(loss)], [mlm, nsp, mlm + nsp],
                               rtol=1e-5)
    assert int(aux["masked"]) == c.sum() and logits.shape == (3, 10, CFG.vocab_size)
    weighted = {**batch, "nsp_weight": jnp.array([0.0, 1.0, 1.0])}  # row 0: MLM only
    _, aux_w = jax.jit(lambda m, b: loss_fn(m, b, None))(model, weighted)
    assert abs(float(aux_w["nsp_loss"]) - nll(out["nsp_logits"], batch["nsp_labels"])[1:].mean()) < 1e-5
    assert abs(float(aux_w["mlm_loss"]) - mlm) < 1e-5


def test_mlm_decoder_is_tied_to_the_word_embeddings():
    model = BertForPreTraining(CFG, rngs=nnx.Rngs(3))
    grads = nnx.jit(nnx.grad(lambda m: jnp.sum(m(jnp.ones((1, 4), jnp.int32))[0][..., 9])))(model)
    word_grad = np.asarray(grads.bert.embeddings.word.embedding[...])
    assert np.abs(word_grad[9]).sum() > 0  # row 9 gets gradient through the decoder although never an input


def test_save_and_load_round_trip_every_head_in_hugging_face_format(tmp_path):
    from nlp_jax.models.bert_hf import load_hf_bert, save_hf_bert

    tokens, segments, mask = _batch()
    for head, model in (("encoder", BertEncoder(CFG, rngs=nnx.Rngs(4))),
                        ("pretraining", BertForPreTraining(CFG, rngs=nnx.Rngs(5))),
                        ("classifier", BertClassifier(CFG, num_labels=3, pooling="mean", rngs=nnx.Rngs(6)))):
        back = load_hf_bert(save_hf_bert(model, tmp_path / head, labels=None), head=head, dropout=0.0)
        assert back.fresh_heads == ()
        for a, b in zip(run(model, tokens, segments, mask), run(back, tokens, segments, mask)):
            for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
                np.testing.assert_array_equal(x, y)
    assert back.pooling == "mean" and back.head.kernel.shape == (16, 3)
    encoder = load_hf_bert(tmp_path / "classifier")  # the encoder of a classifier checkpoint
    np.testing.assert_array_equal(encoder.pooler.kernel[...], back.bert.pooler.kernel[...])


def test_the_mlm_head_on_gathered_positions_gives_the_full_loss():
    model = BertForPreTraining(CFG, rngs=nnx.Rngs(7))
    tokens, segments, mask = _batch()
    batch = {"input_ids": tokens.at[:, 0].set(2), "token_type_ids": segments, "attention_mask": mask,
             "nsp_labels": jnp.array([1, 0, 1]), "mlm_seed": jnp.int32(5)}
    kw = dict(mask_id=4, special_ids=(0, 2, 3), rate=0.3)
    step = nnx.jit(lambda m, b, k: pretraining_loss(m, b, None, **kw, max_predictions=k), static_argnums=2)
    full, aux_full = step(model, batch, None)
    gathered, aux = step(model, batch, 10)
    np.testing.assert_allclose(float(gathered), float(full), rtol=1e-6)
    assert int(aux["masked"]) == int(aux_full["masked"]) > 0 and int(aux["mlm_dropped"]) == 0
    _, few = step(model, batch, 1)  # at most one prediction a row: the rest are counted as dropped
    assert int(few["masked"]) <= 3 and int(few["masked"]) + int(few["mlm_dropped"]) == int(aux_full["masked"])
