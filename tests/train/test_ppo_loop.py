"""PPO through the one loop: rollouts from the current policy, ratio 1 before the first update, the score
rises on a toy reward, the adaptive KL controller, and exact resume mid-rollout."""

import os
import signal

import jax
import numpy as np
import pytest
from flax import nnx

from nlp_jax.models.gpt2 import GPT2, GPT2Config
from nlp_jax.models.reward import PolicyWithValue
from nlp_jax.objectives import PPOConfig, ppo_objective
from nlp_jax.train.config import OptimConfig, TrainConfig
from nlp_jax.train.loop import train
from nlp_jax.train.ppo import PPORollouts
from nlp_jax.train.trainer import Trainer

CFG = GPT2Config.tiny(dropout=0.0, block_size=16)
GOOD = 5  # the toy reward: the fraction of response tokens equal to 5


def _prompts(n=16, t0=4, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, t0 + 1, n)
    mask = np.arange(t0)[None] >= (t0 - lengths)[:, None]  # left-padded
    return np.where(mask, rng.integers(6, 37, (n, t0)), 0).astype(np.int32), mask


def score(tokens, mask):
    response = mask[:, 4:]
    return ((tokens[:, 4:] == GOOD) & response).sum(1) / np.maximum(response.sum(1), 1)


def _setup(ppo, seed=0):
    reference = GPT2(CFG, rngs=nnx.Rngs(seed))
    policy = PolicyWithValue(GPT2(CFG, rngs=nnx.Rngs(seed)), rngs=nnx.Rngs(seed + 1))
    prompts, mask = _prompts()
    source = PPORollouts(prompts, mask, reference=reference, score_fn=score, cfg=ppo, seed=3)
    return policy, reference, source, ppo_objective(ppo, prompts.shape[1])


PPO = PPOConfig(rollout_size=8, minibatches=2, epochs=2, max_new_tokens=6, kl_coef=0.05)
OPTIM = OptimConfig(lr=3e-3, warmup_steps=0, schedule="constant")


def test_ratio_is_1_and_kl_is_0_before_the_first_update():
    policy, _, source, objective = _setup(PPO)
    trainer = Trainer(policy, objective, OPTIM, 8)
    source.bind(trainer)
    m = jax.device_get(trainer.step(source(0)))
    assert m["val/ratio"] == pytest.approx(1.0, abs=1e-6) and m["policy/approxkl_avg"] < 1e-10
    assert m["policy/clipfrac_avg"] == 0.0 and abs(m["objective/kl"]) < 1e-5  # policy == reference
    assert int(trainer.objective_state["rollout"]) == 0
    for step in range(1, PPO.steps_per_rollout + 1):
        m = jax.device_get(trainer.step(source(step)))
    assert int(trainer.objective_state["rollout"]) == 1  # a new rollout after epochs x minibatches steps
    assert m["val/ratio"] == pytest.approx(1.0, abs=1e-6)  # the new rollout's old log-probs are the policy's


def test_ppo_raises_the_score_and_keeps_the_reference_frozen():
    ppo = PPOConfig(rollout_size=16, minibatches=2, epochs=4, max_new_tokens=6, kl_coef=0.01)
    policy, reference, source, objective = _setup(ppo)
    before = [np.asarray(x) for x in jax.tree.leaves(nnx.state(reference))]
    trainer = Trainer(policy, objective, OptimConfig(lr=1e-2, warmup_steps=0, schedule="constant"), 200)
    source.bind(trainer)
    scores = []
    for step in range(ppo.steps_per_rollout * 14):
        m = trainer.step(source(step))
        if step % ppo.steps_per_rollout == 0:
            scores.append(float(m["objective/scores"]))
    assert np.mean(scores[-3:]) > np.mean(scores[:2]) + 0.3, scores  # (the rise is steep by rollout 12-14)
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(before, jax.tree.leaves(nnx.state(reference))))


def test_the_adaptive_controller_moves_the_kl_coefficient():
    ppo = PPOConfig(rollout_size=8, minibatches=1, epochs=1, max_new_tokens=6, kl_coef=0.2, kl_target=1e-3,
                    kl_horizon=100)
    policy, _, source, objective = _setup(ppo)
    trainer = Trainer(policy, objective, OptimConfig(lr=3e-2, warmup_steps=0, schedule="constant"), 10)
    source.bind(trainer)
    coefs, kls = [], []
    for step in range(4):
        m = jax.device_get(trainer.step(source(step)))
        coefs.append(float(m["objective/kl_coef"]))
        kls.append(float(m["objective/kl"]))
    for i in range(1, 4):  # Ziegler et al.: beta <- beta (1 + clip(KL / target - 1, +-0.2) n / horizon)
        want = coefs[i - 1] * (1 + np.clip(kls[i - 1] / 1e-3 - 1, -0.2, 0.2) * 8 / 100)
        assert coefs[i] == pytest.approx(want, rel=1e-5)
    assert coefs[-1] != coefs[0]


def _run(workdir, source, steps):
    policy, _, _, objective = _setup(PPO)
    cfg = TrainConfig(steps=steps, log_every=1, eval_every=0, ckpt_every=3, progress=False, seed=1)
    return train(policy, objective, source, train_cfg=cfg, optim_cfg=OPTIM, workdir=workdir)


class Interrupting:
    """A bound source that sends this process SIGTERM while batch ``at`` is prepared: the run stops after
    step ``at``."""

    def __init__(self, base, at: int):
        self.base, self.at = base, at

    def bind(self, trainer):
        self.base.bind(trainer)

    def __call__(self, step):
        if step == self.at:
            os.kill(os.getpid(), signal.SIGTERM)
        return self.base(step)


@pytest.mark.slow
def test_resume_mid_rollout_is_exact(tmp_path):
    _, _, source, _ = _setup(PPO)
    model, straight = _run(tmp_path / "a", source, 10)
    _, _, base, _ = _setup(PPO)
    _, first = _run(tmp_path / "b", Interrupting(base, 5), 10)  # stops after step 5, mid-rollout 1
    assert first.status == "interrupted" and first.step == 5 and 5 % PPO.steps_per_rollout != 0
    _, _, fresh, _ = _setup(PPO)
    resumed, second = _run(tmp_path / "b", fresh, 10)
    assert {**first.losses, **second.losses} == straight.losses  # every step's loss, bit for bit
    for a, b in zip(jax.tree.leaves(nnx.state(model)), jax.tree.leaves(nnx.state(resumed))):
        np.testing.assert_array_equal(a, b)


def test_bad_ppo_configs_are_refused():
    with pytest.raises(ValueError, match="must be a multiple of minibatches"):
        PPOConfig(rollout_size=10, minibatches=4)
    with pytest.raises(ValueError, match="max_new_tokens"):
        PPOConfig(max_new_tokens=0)
    policy, reference, _, _ = _setup(PPO)
    with pytest.raises(ValueError, match="fewer than rollout_size"):
        PPORollouts(*_prompts(4), reference=reference, score_fn=score, cfg=PPO)
    with pytest.raises(RuntimeError, match="must be bound"):
        PPORollouts(*_prompts(), reference=reference, score_fn=score, cfg=PPO)(0)
