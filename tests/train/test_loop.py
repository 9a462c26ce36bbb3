import dataclasses
import json
import os
import signal

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nlp_jax.data.corpus import RandomBlocks
from nlp_jax.models.gpt2 import GPT2, GPT2Config, lm_loss
from nlp_jax.train.checkpoint import Checkpointer
from nlp_jax.train.config import OptimConfig, TrainConfig
from nlp_jax.train.loop import Objective, Trainer, TrainingDiverged, train
from nlp_jax.train.optim import learning_rate_schedule

CFG = GPT2Config.tiny(dropout=0.1)  # dropout on: resume must also reproduce the RNG stream
DATA = np.random.default_rng(0).integers(0, 37, 3000).astype(np.int32)
OPTIM = OptimConfig(lr=3e-3, warmup_steps=2)


def run(workdir, steps=6, source=None, loss_fn=lm_loss, **kw):
    train_cfg = TrainConfig(steps=steps, log_every=1, eval_every=0, ckpt_every=kw.pop("ckpt_every", 0),
                            progress=False, seed=7, **kw)
    model = GPT2(CFG, rngs=nnx.Rngs(0))
    return train(model, loss_fn, source or RandomBlocks(DATA, 4, 16, seed=1), train_cfg=train_cfg,
                 optim_cfg=OPTIM, workdir=workdir)


def test_resume_after_sigterm_is_bitwise_identical(tmp_path):
    _, straight = run(tmp_path / "a")
    base = RandomBlocks(DATA, 4, 16, seed=1)

    def interrupting(step):
        if step == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # batch 2 is prepared while step 1 runs: it stops after step 1
        return base(step)

    model, first = run(tmp_path / "b", source=interrupting)
    assert first.status == "interrupted" and first.step == 2
    resumed_model, second = run(tmp_path / "b")
    assert second.status == "finished" and min(second.losses) == 2
    assert {**first.losses, **second.losses} == straight.losses  # exact float equality, every step
    logged = [json.loads(line)["step"] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3, 4, 5, 6]


def test_nan_stops_with_step_and_keeps_last_good_checkpoint(tmp_path):
    base = RandomBlocks(DATA, 4, 16, seed=1)

    def poisoned(step):
        return {**base(step), "poison": np.float32(np.nan if step == 4 else 0.0)}

    def loss_fn(model, batch, key):
        loss, aux = lm_loss(model, batch, key)
        return loss + batch["poison"], aux

    with pytest.raises(TrainingDiverged, match="at step 4") as err:
        run(tmp_path, source=poisoned, loss_fn=loss_fn, ckpt_every=2)
    assert err.value.step == 4
    ckpt = Checkpointer(tmp_path / "checkpoints")
    assert ckpt.latest_step() == 4  # saved after steps 0..3; nothing written after the NaN
    state, meta, _ = ckpt.restore(Trainer(GPT2(CFG, rngs=nnx.Rngs(0)), Objective.of(lm_loss), OPTIM, 6).state)
    assert meta["data_position"] == 4
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state))


def test_train_step_compiles_once_and_keeps_last_n(tmp_path):
    counted = chex.assert_max_traces(lm_loss, n=1)
    _, result = run(tmp_path, steps=5, loss_fn=counted, ckpt_every=1, keep_last=2)
    assert len(result.losses) == 5
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints" / "last").iterdir() if p.name.isdigit())
    assert steps == [4, 5]


def test_best_checkpoint_and_eval_records(tmp_path):
    vals = iter([3.0, 1.0, 2.0])
    model = GPT2(CFG, rngs=nnx.Rngs(0))
    cfg = TrainConfig(steps=6, eval_every=2, log_every=2, ckpt_every=0, progress=False)
    _, result = train(model, lm_loss, RandomBlocks(DATA, 4, 16), train_cfg=cfg, optim_cfg=OPTIM,
                      workdir=tmp_path, eval_fn=lambda m: {"val_loss": next(vals)})
    assert [e["step"] for e in result.evals] == [2, 4, 6] and result.best == 1.0
    ckpt = Checkpointer(tmp_path / "checkpoints")
    assert ckpt.best.latest_step() == 4
    assert (tmp_path / "loss.png").stat().st_size > 0


def test_trained_model_is_returned_updated(tmp_path):
    model = GPT2(CFG, rngs=nnx.Rngs(0))
    before = jax.tree.map(jnp.copy, nnx.state(model, nnx.Param))
    cfg = TrainConfig(steps=3, eval_every=0, ckpt_every=0, progress=False)
    trained, _ = train(model, lm_loss, RandomBlocks(DATA, 4, 16), train_cfg=cfg, optim_cfg=OPTIM, workdir=tmp_path)
    after = nnx.state(trained, nnx.Param)
    assert not np.allclose(before["wte"]["embedding"][...], after["wte"]["embedding"][...])


def test_schedule_warmup_cosine_matches_nanogpt():
    def nanogpt_lr(it, lr=1e-3, min_lr=1e-4, warmup=100, decay=2000):  # nanoGPT's get_lr
        if it < warmup:
            return lr * (it + 1) / (warmup + 1)
        if it > decay:
            return min_lr
        return min_lr + 0.5 * (1.0 + np.cos(np.pi * (it - warmup) / (decay - warmup))) * (lr - min_lr)

    sched = learning_rate_schedule(OptimConfig(lr=1e-3, min_lr=1e-4, warmup_steps=100), 2000)
    steps = [0, 1, 50, 99, 100, 101, 1050, 1999, 2000, 2500]
    np.testing.assert_allclose([float(sched(k)) for k in steps], [nanogpt_lr(k) for k in steps], rtol=1e-5)
    const = learning_rate_schedule(dataclasses.replace(OptimConfig(), schedule="constant", warmup_steps=9), 100)
    np.testing.assert_allclose([float(const(4)), float(const(50))], [5e-4, 1e-3], rtol=1e-6)


def test_epoch_decay_schedule_is_zarembas():
    cfg = OptimConfig(name="sgd", lr=1.0, schedule="epoch_decay", steps_per_epoch=10, decay_start_epoch=4,
                      decay_rate=0.5)
    sched = learning_rate_schedule(cfg, 130)
    for epoch in range(13):
        expected = 1.0 * 0.5 ** max(epoch + 1 - 4, 0)
        for step in (epoch * 10, epoch * 10 + 9):
            np.testing.assert_allclose(float(sched(step)), expected, rtol=1e-6, err_msg=f"epoch {epoch}")
