"""The Trainer as an outer loop drives it: frozen models, objective state, wrt, donation safety; and the
driver's best-metric direction and TensorBoard writer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nlp_jax.data.corpus import RandomBlocks
from nlp_jax.models.gpt2 import GPT2, GPT2Config
from nlp_jax.objectives import Objective, lm_loss
from nlp_jax.train.checkpoint import Checkpointer
from nlp_jax.train.config import OptimConfig, TrainConfig
from nlp_jax.train.loop import Trainer, train

CFG = GPT2Config.tiny()
DATA = np.random.default_rng(0).integers(0, 37, 3000).astype(np.int32)
OPTIM = OptimConfig(lr=3e-3, warmup_steps=0)
SOURCE = RandomBlocks(DATA, 4, 16, seed=1)


def kl_to_reference(model, batch, key, beta, frozen):
    """LM loss + beta * KL(policy || reference) per token; beta is the objective state, halved each step."""
    loss, aux = lm_loss(model, batch, key)
    logp = jax.nn.log_softmax(model(batch["inputs"])[0])
    ref = jax.nn.log_softmax(frozen["reference"](batch["inputs"])[0])
    kl = jnp.mean(jnp.sum(jnp.exp(logp) * (logp - ref), -1))
    return loss + beta * kl, {**aux, "objective/kl": kl, "beta": beta}, beta * 0.5


def test_frozen_models_objective_state_and_the_callers_arrays():
    policy, reference = GPT2(CFG, rngs=nnx.Rngs(0)), GPT2(CFG, rngs=nnx.Rngs(0))
    before = jax.tree.map(np.asarray, nnx.state(reference, nnx.Param))
    trainer = Trainer(policy, Objective(kl_to_reference, init_state=lambda: jnp.float32(1.0)), OPTIM, 10,
                      frozen={"reference": reference})
    kls, betas = [], []
    for _ in range(3):  # an outer loop drives the steps
        m = trainer.step(SOURCE(trainer.step_count))
        kls.append(float(m["objective/kl"]))
        betas.append(float(m["beta"]))
    assert kls[0] == 0.0 and kls[-1] > 0.0  # policy == reference at the start, then it moves away
    assert betas == [1.0, 0.5, 0.25] and float(trainer.objective_state) == 0.125
    # neither the frozen model nor the caller's model was donated or changed
    jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.asarray, nnx.state(reference, nnx.Param)))
    jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.asarray, nnx.state(policy, nnx.Param)))
    assert not np.allclose(nnx.state(trainer.model, nnx.Param)["wte"]["embedding"][...], before["wte"]["embedding"])


def test_objective_state_is_checkpointed_and_restored(tmp_path):
    objective = Objective(kl_to_reference, init_state=lambda: jnp.float32(1.0))
    frozen = {"reference": GPT2(CFG, rngs=nnx.Rngs(1))}
    a = Trainer(GPT2(CFG, rngs=nnx.Rngs(0)), objective, OPTIM, 10, frozen=frozen)
    for _ in range(2):
        a.step(SOURCE(a.step_count))
    ckpt = Checkpointer(tmp_path)
    a.save(ckpt, {"data_position": 2, "best": None})
    b = Trainer(GPT2(CFG, rngs=nnx.Rngs(5)), objective, OPTIM, 10, frozen=frozen)
    assert b.restore(ckpt)["step"] == 2 and float(b.objective_state) == 0.25
    np.testing.assert_array_equal(float(a.step(SOURCE(2))["loss"]), float(b.step(SOURCE(2))["loss"]))
    ckpt.close()


def test_wrt_trains_only_the_selected_parameters():
    model = GPT2(CFG, rngs=nnx.Rngs(0))
    trainer = Trainer(model, Objective.of(lm_loss), OPTIM, 5, wrt=nnx.All(nnx.Param, nnx.PathContains("ln_f")))
    trainer.step(SOURCE(0))
    old, new = nnx.state(model, nnx.Param), nnx.state(trainer.model, nnx.Param)
    np.testing.assert_array_equal(old["wte"]["embedding"][...], new["wte"]["embedding"][...])
    assert not np.allclose(old["ln_f"]["scale"][...], new["ln_f"]["scale"][...])


def test_best_metric_direction_and_tensorboard(tmp_path):
    accs = iter([0.5, 0.9, 0.7])
    cfg = TrainConfig(steps=6, eval_every=2, log_every=2, ckpt_every=0, progress=False, tensorboard=True)
    _, result = train(GPT2(CFG, rngs=nnx.Rngs(0)), lm_loss, SOURCE, train_cfg=cfg, optim_cfg=OPTIM, workdir=tmp_path,
                      eval_fn=lambda m: {"accuracy": next(accs)}, best_metric="accuracy", best_mode="max")
    assert result.best == 0.9
    assert Checkpointer(tmp_path / "checkpoints").best.latest_step() == 4
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    assert result.tokens_per_second > 0  # counted by the objective (aux 'tokens')
    assert 0 < result.startup_seconds < result.seconds


def test_trainers_of_one_objective_and_settings_share_one_compiled_step():
    traces = []

    def loss_fn(model, batch, key):
        traces.append(key)
        return lm_loss(model, batch, key)

    batch = SOURCE(0)
    first, second = (Trainer(GPT2(CFG, rngs=nnx.Rngs(seed)), loss_fn, OPTIM, 10) for seed in (0, 1))
    losses = [float(t.step(dict(batch))["loss"]) for t in (first, second)]
    assert len(traces) == 1 and Objective.of(loss_fn) is first.objective  # traced once for both trainers
    assert first._compiled is second._compiled and len(first._compiled) == 1  # and compiled once
    assert losses[1] == np.float32(lm_loss(GPT2(CFG, rngs=nnx.Rngs(1)), batch, None)[0])  # with its own weights
    assert losses[0] != losses[1]
    Trainer(GPT2(CFG, rngs=nnx.Rngs(0)), loss_fn, OptimConfig(lr=1e-3, warmup_steps=0), 10).step(dict(batch))
    assert len(traces) == 2  # other optimizer settings: a program of their own
    Trainer(GPT2(CFG, rngs=nnx.Rngs(0)), Objective(lambda m, b, k, s, f: (*loss_fn(m, b, k), s)), OPTIM, 10).step(
        dict(batch))
    assert len(traces) == 3  # another objective: its own program


def test_an_objective_factory_gives_one_objective_per_setting_so_its_trainers_share_a_step():
    from nlp_jax.objectives import PPOConfig, dpo_objective, kto_objective, ppo_objective

    assert dpo_objective(beta=0.1) is dpo_objective(beta=0.1, loss_type="sigmoid")  # defaults filled in
    assert dpo_objective(beta=0.1) is not dpo_objective(beta=0.2)
    assert dpo_objective(beta=0.1) is not dpo_objective(beta=0.1, soft_labels=0.5)
    assert kto_objective(beta=0.1) is kto_objective(beta=0.1, desirable_weight=1.0)
    assert ppo_objective(PPOConfig(), 4) is ppo_objective(PPOConfig(), prompt_len=4)
    assert ppo_objective(PPOConfig(), 4) is not ppo_objective(PPOConfig(clip=0.1), 4)
    with pytest.raises(ValueError, match="beta must be > 0"):  # a refused setting is refused every time
        dpo_objective(beta=0.0)
    with pytest.raises(ValueError, match="beta must be > 0"):
        dpo_objective(beta=0.0)
