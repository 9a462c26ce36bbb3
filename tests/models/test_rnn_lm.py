import os
import signal

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nlp_jax.data.corpus import SequentialBlocks
from nlp_jax.models.rnn_lm import RNNLM, RNNLMConfig
from nlp_jax.objectives import Objective, bptt_loss
from nlp_jax.train.config import OptimConfig, TrainConfig
from nlp_jax.train.loop import train


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_carry_continues_a_sequence_exactly(cell):
    model = RNNLM(RNNLMConfig.tiny(cell=cell), rngs=nnx.Rngs(0))
    x = jax.random.randint(jax.random.key(1), (3, 12), 0, 23)
    full, _ = model(x)
    first, aux = model(x[:, :5])
    second, _ = model(x[:, 5:], cache=aux["cache"])
    np.testing.assert_allclose(jnp.concatenate([first, second], 1), full, atol=1e-6)
    chex.assert_shape(full, (3, 12, 23))


def test_rnn_output_layer_is_the_embedding():
    model = RNNLM(RNNLMConfig.tiny(cell="rnn", layers=1), rngs=nnx.Rngs(0))
    names = {"/".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    assert not any("out_w" in n for n in names)


def test_sequential_blocks_continue_rows_and_reset_each_epoch():
    src = SequentialBlocks(np.arange(103), batch_size=2, bptt=10)  # rows of 51, 5 steps per epoch
    assert src.steps_per_epoch == 5
    a, b = src(0), src(1)
    np.testing.assert_array_equal(a["inputs"][1], np.arange(51, 61))
    np.testing.assert_array_equal(b["inputs"][0], np.arange(10, 20))
    np.testing.assert_array_equal(a["targets"], a["inputs"] + 1)
    assert a["reset_state"] and not b["reset_state"] and src(5)["reset_state"]


def run(workdir, source):
    model = RNNLM(RNNLMConfig.tiny(dropout=0.2), rngs=nnx.Rngs(0))
    cfg = TrainConfig(steps=8, log_every=1, eval_every=0, ckpt_every=0, progress=False)
    optim = OptimConfig(name="sgd", lr=1.0, schedule="epoch_decay", steps_per_epoch=4, decay_start_epoch=1,
                        grad_clip=5.0)
    return train(model, Objective(bptt_loss, init_state=lambda: model.init_carry(2)), source, train_cfg=cfg,
                 optim_cfg=optim, workdir=workdir)


def test_truncated_bptt_resume_is_bitwise_identical(tmp_path):
    data = np.random.default_rng(0).integers(0, 23, 200)
    base = SequentialBlocks(data, batch_size=2, bptt=10)  # 9 steps per epoch: the carry flows throughout
    _, straight = run(tmp_path / "a", base)

    def interrupting(step):
        if step == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return base(step)

    _, first = run(tmp_path / "b", interrupting)
    assert first.status == "interrupted" and first.step == 5  # batch 5 is prepared while step 4 runs
    _, second = run(tmp_path / "b", base)
    assert {**first.losses, **second.losses} == straight.losses


def test_an_export_loads_back_with_equal_logits_and_a_damaged_one_is_named(tmp_path):
    from safetensors.numpy import load_file, save_file

    from nlp_jax.models.rnn_lm import load_rnn_lm, save_rnn_lm

    model = RNNLM(RNNLMConfig.tiny(cell="lstm"), rngs=nnx.Rngs(3))
    save_rnn_lm(model, tmp_path / "e", eot_id=1)
    back, extra = load_rnn_lm(tmp_path / "e")
    x = jnp.arange(12).reshape(2, 6) % 23
    np.testing.assert_array_equal(np.asarray(back(x)[0]), np.asarray(model(x)[0]))
    assert extra == {"eot_id": 1} and back.config == model.config
    tensors = load_file(str(tmp_path / "e" / "model.safetensors"))
    save_file({k: v for k, v in tensors.items() if k != "out_b"}, str(tmp_path / "e" / "model.safetensors"))
    with pytest.raises(ValueError, match="does not match its checksum"):
        load_rnn_lm(tmp_path / "e")
    (tmp_path / "e" / "checksums.sha256").unlink()
    with pytest.raises(ValueError, match=r"out_b should be \(23,\), found no tensor"):
        load_rnn_lm(tmp_path / "e")
