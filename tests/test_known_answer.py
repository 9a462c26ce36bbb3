"""Known-answer tests: language models trained on a Markov source must approach its entropy rate.

An order-2 chain over 6 symbols: no model can beat perplexity exp(H); a model that has learned the
source gets within a few percent of it.
"""

import dataclasses

import numpy as np
import pytest
from flax import nnx

from nlp_jax.data.corpus import RandomBlocks, SequentialBlocks
from nlp_jax.data.synthetic import MarkovSource
from nlp_jax.eval.perplexity import perplexity, recurrent_perplexity
from nlp_jax.models.gpt2 import GPT2, GPT2Config
from nlp_jax.models.rnn_lm import RNNLM, RNNLMConfig
from nlp_jax.objectives import Objective, bptt_loss, lm_loss
from nlp_jax.train.config import OptimConfig, TrainConfig
from nlp_jax.train.loop import train


@pytest.fixture(scope="module")
def source():
    src = MarkovSource(vocab_size=6, order=2, concentration=0.5, seed=11)
    return src, src.sample(200_000, seed=1), src.sample(20_000, seed=2), float(np.exp(src.entropy_rate()))


FAST = TrainConfig(steps=400, log_every=100, eval_every=0, ckpt_every=0, progress=False)
ADAM = OptimConfig(lr=1e-2, min_lr=1e-3, warmup_steps=20, weight_decay=0.0)


def test_gpt_reaches_the_entropy_rate(source, tmp_path):
    _, train_ids, test_ids, target = source
    model = GPT2(GPT2Config.tiny(vocab_size=6, n_embd=32, block_size=16, bias=True), rngs=nnx.Rngs(0))
    model, _ = train(model, lm_loss, RandomBlocks(train_ids, 32, 16), train_cfg=FAST, optim_cfg=ADAM,
                     workdir=tmp_path)
    ppl = perplexity(model, test_ids, context=16, stride=8, batch_size=256)["ppl"]
    assert ppl == pytest.approx(target, rel=0.03)


def test_lstm_reaches_the_entropy_rate(source, tmp_path):
    _, train_ids, test_ids, target = source
    model = RNNLM(RNNLMConfig(vocab_size=6, hidden=32, layers=1, init_scale=0.3), rngs=nnx.Rngs(0))
    optim = dataclasses.replace(ADAM, grad_clip=5.0)
    objective = Objective(bptt_loss, init_state=lambda: model.init_carry(32))
    model, _ = train(model, objective, SequentialBlocks(train_ids, 32, 16), train_cfg=FAST, optim_cfg=optim,
                     workdir=tmp_path)
    ppl = recurrent_perplexity(model, test_ids, bptt=64)["ppl"]
    assert ppl == pytest.approx(target, rel=0.03)
