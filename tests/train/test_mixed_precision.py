"""Mixed precision by config (``compute_dtype='bfloat16'``): the matmuls run in bfloat16 while the parameters,
the AdamW moments and the loss stay float32, and a bfloat16 run's loss tracks the float32 run's over a few
hundred Trainer steps of a tiny GPT-2 (language modelling), a tiny BERT (classification) and a tiny LSTM LM
(truncated BPTT, its float32 state carried from step to step).

Tolerance: the 25-step mean losses of the two runs differ at every window by at most 0.01 nats for GPT-2
(measured on the 2-core AMD EPYC: 4e-5; both settle on the chain's noise floor) and 0.1 for BERT (measured:
0.047, where its loss falls steeply towards 0 and a few steps' spikes land in different windows), and both
runs learn (their last window is well below their first). The LSTM LM is compared on its per-token loss,
within 0.01 nats (measured: 0.0026)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nlp_jax.models.bert import BertClassifier, BertConfig
from nlp_jax.models.gpt2 import GPT2, GPT2Config
from nlp_jax.models.rnn_lm import RNNLM, RNNLMConfig
from nlp_jax.objectives import Objective, bptt_loss, classification_loss, lm_loss
from nlp_jax.train.config import OptimConfig
from nlp_jax.train.trainer import Trainer

STEPS, WINDOW = 300, 25
TOLERANCE = {"gpt2": 0.01, "bert": 0.1, "lstm": 0.01}  # nats, between 25-step mean losses
OPTIM = OptimConfig(lr=3e-3, min_lr=3e-4, warmup_steps=20, weight_decay=0.0)


def _markov_batches(vocab: int, b: int, t: int, seed: int = 0):
    """Sequences of a fixed noisy Markov chain (next = 7 x + 3 mod V, 1 in 5 a random token): learnable."""
    r = np.random.default_rng(seed)
    for _ in range(STEPS):
        x = np.empty((b, t + 1), np.int32)
        x[:, 0] = r.integers(0, vocab, b)
        for i in range(t):
            noise = r.random(b) < 0.2
            x[:, i + 1] = np.where(noise, r.integers(0, vocab, b), (7 * x[:, i] + 3) % vocab)
        yield {"inputs": jnp.asarray(x[:, :-1]), "targets": jnp.asarray(x[:, 1:])}


def _sentiment_batches(vocab: int, b: int, t: int, seed: int = 0):
    """Label 1 when token 5 outnumbers token 6 among random tokens, with padding at the end of each row."""
    r = np.random.default_rng(seed)
    for _ in range(STEPS):
        ids = r.integers(7, vocab, (b, t))
        ids = np.where(r.random((b, t)) < 0.3, r.choice([5, 6], (b, t)), ids)
        lengths = r.integers(t // 2, t + 1, b)
        mask = np.arange(t)[None] < lengths[:, None]
        ids = np.where(mask, ids, 0)
        labels = ((ids == 5).sum(1) > (ids == 6).sum(1)).astype(np.int32)
        yield {"input_ids": jnp.asarray(ids), "token_type_ids": jnp.zeros((b, t), jnp.int32),
               "attention_mask": jnp.asarray(mask.astype(np.int32)), "labels": jnp.asarray(labels)}


def _run(model, loss_fn, batches, metric="loss"):
    trainer = Trainer(model, loss_fn, OPTIM, STEPS)
    losses = [trainer.step(batch)[metric] for batch in batches]
    losses = np.asarray(jax.device_get(losses))
    return trainer, losses.reshape(-1, WINDOW).mean(1), losses.dtype


def _float_dtypes(trainer) -> set:
    return {x.dtype for x in jax.tree.leaves(trainer.state) if jnp.issubdtype(x.dtype, jnp.floating)}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gpt2", "bert", "lstm"])
def test_bfloat16_loss_tracks_float32_over_300_steps(name):
    metric = "loss"
    if name == "lstm":
        cfg = RNNLMConfig.tiny(vocab_size=31, hidden=32)
        build = lambda c: RNNLM(c, rngs=nnx.Rngs(0))  # noqa: E731
        loss_fn = lambda m: Objective(bptt_loss, init_state=lambda: m.init_carry(16))  # noqa: E731
        data, metric = lambda: _markov_batches(31, 16, 32), "token_nll"
    elif name == "gpt2":
        cfg = GPT2Config.tiny(vocab_size=31, block_size=32, n_embd=32, dropout=0.0)
        build = lambda c: GPT2(c, rngs=nnx.Rngs(0))  # noqa: E731
        loss_fn, data = lm_loss, lambda: _markov_batches(31, 16, 32)
    else:
        cfg = BertConfig.tiny(n_embd=32, n_inner=64, dropout=0.0)
        build = lambda c: BertClassifier(c, rngs=nnx.Rngs(0))  # noqa: E731
        loss_fn, data = classification_loss, lambda: _sentiment_batches(50, 16, 24)
    runs = []
    for c in (cfg, dataclasses.replace(cfg, compute_dtype="bfloat16")):
        model = build(c)
        runs.append(_run(model, loss_fn(model) if name == "lstm" else loss_fn, data(), metric))
    (full, full_curve, full_dtype), (half, half_curve, half_dtype) = runs

    assert full_dtype == half_dtype == np.float32
    assert _float_dtypes(full) == _float_dtypes(half) == {jnp.dtype(jnp.float32)}  # params and AdamW moments
    for curve in (full_curve, half_curve):
        assert curve[-1] < 0.75 * curve[0], curve  # both learn
    gap = np.abs(full_curve - half_curve)
    assert gap.max() <= TOLERANCE[name], (full_curve, half_curve)
    assert not np.array_equal(full_curve, half_curve)  # bfloat16 really ran: the curves are not identical
