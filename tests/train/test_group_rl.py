"""Critic-free RL through the one loop: k completions a prompt from the current policy, the ratio 1 and the
KL 0 at the first update, each method's advantages from the group's rewards, a verifier's reward raised by
GRPO and RLOO, and exact resume mid-rollout."""

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

from nlp_jax.models.gpt2 import GPT2, GPT2Config
from nlp_jax.objectives.group_rl import GroupRLConfig, group_rl_objective
from nlp_jax.train.config import OptimConfig, TrainConfig
from nlp_jax.train.group_rl import GroupRollouts, advantages
from nlp_jax.train.loop import train
from nlp_jax.train.trainer import Trainer

CFG = GPT2Config.tiny(dropout=0.0, block_size=16)
GOOD = 5
OPTIM = OptimConfig(lr=1e-2, warmup_steps=0, schedule="constant")


def _prompts(n=16, t0=4, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, t0 + 1, n)
    mask = np.arange(t0)[None] >= (t0 - lengths)[:, None]  # left-padded
    return np.where(mask, rng.integers(6, 37, (n, t0)), 0).astype(np.int32), mask


def verifier(tokens, mask, rows):
    """A program's reward: 1 when the completion holds token 5 (about 1 in 6 at the start), else 0 (rows: which
    prompt each completion answers; a verifier of answers would read it)."""
    assert len(rows) == len(tokens)
    return ((tokens[:, 4:] == GOOD) & mask[:, 4:]).any(1).astype(np.float32)


def _setup(cfg, seed=0):
    reference = GPT2(CFG, rngs=nnx.Rngs(seed))
    source = GroupRollouts(*_prompts(), reference=reference, reward_fn=verifier, cfg=cfg, seed=3)
    return GPT2(CFG, rngs=nnx.Rngs(seed)), reference, source, group_rl_objective(cfg, 4)


SMALL = GroupRLConfig(prompts_per_rollout=4, samples=4, minibatches=2, epochs=2, max_new_tokens=6, kl_coef=0.05,
                      clip_high=0.28)


def test_each_method_s_advantages_come_from_its_group():
    r = np.array([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]], np.float32)
    np.testing.assert_allclose(advantages(r, "dr_grpo"), [[0.5, -0.5, -0.5, 0.5], [0, 0, 0, 0]], atol=1e-6)
    np.testing.assert_allclose(advantages(r, "rloo"), [[2 / 3, -2 / 3, -2 / 3, 2 / 3], [0, 0, 0, 0]], atol=1e-6)
    std = np.std([1, 0, 0, 1], ddof=1)
    np.testing.assert_allclose(advantages(r, "grpo")[0], np.array([0.5, -0.5, -0.5, 0.5]) / (std + 1e-4), rtol=1e-5)
    pp = advantages(r, "reinforce_pp")  # centred in the group, then standardised over the batch
    assert abs(pp.mean()) < 1e-6 and pp.std() == pytest.approx(1.0, rel=1e-4) and np.all(pp[1] == pp[1, 0])
    with pytest.raises(ValueError, match="method must be one of"):
        advantages(r, "ppo")


def test_the_ratio_is_1_and_the_kl_0_at_the_first_update_and_groups_share_a_prompt():
    policy, _, source, objective = _setup(SMALL)
    trainer = Trainer(policy, objective, OPTIM, 8)
    source.bind(trainer)
    m = jax.device_get(trainer.step(source(0)))
    assert m["clip_ratio"] == 0.0 and abs(m["kl"]) < 1e-6  # the policy is the sampling policy and the reference
    state = trainer.objective_state
    prompts = np.asarray(state["tokens"])[:, :4].reshape(SMALL.prompts_per_rollout, SMALL.samples, 4)
    assert all((group == group[0]).all() for group in prompts)  # k completions of one prompt side by side
    assert 0.0 <= m["reward"] <= 1.0 and 0 < m["completion_length"] <= SMALL.max_new_tokens
    for step in range(1, SMALL.steps_per_rollout + 1):
        m = jax.device_get(trainer.step(source(step)))
    assert int(trainer.objective_state["rollout"]) == 1 and m["clip_ratio"] == 0.0  # a new rollout: ratio 1 again


@pytest.mark.parametrize("method", ["grpo", "rloo"])
def test_a_verifier_s_reward_rises(method):
    cfg = GroupRLConfig(method=method, prompts_per_rollout=4, samples=8, minibatches=2, epochs=2, max_new_tokens=6)
    policy, _, source, objective = _setup(cfg)
    trainer = Trainer(policy, objective, OPTIM, 100)
    source.bind(trainer)
    rewards = []
    for step in range(cfg.steps_per_rollout * 12):
        m = trainer.step(source(step))
        if step % cfg.steps_per_rollout == 0:
            rewards.append(float(m["reward"]))
    assert np.mean(rewards[-3:]) > np.mean(rewards[:2]) + 0.3, rewards


def _run(workdir, source, steps):
    policy, _, _, objective = _setup(SMALL)
    cfg = TrainConfig(steps=steps, log_every=1, eval_every=0, ckpt_every=3, progress=False, seed=1)
    return train(policy, objective, source, train_cfg=cfg, optim_cfg=OPTIM, workdir=workdir)


def test_resume_mid_rollout_is_exact(tmp_path):
    _, _, source, _ = _setup(SMALL)
    model, straight = _run(tmp_path / "a", source, 8)
    _, _, base, _ = _setup(SMALL)
    _, first = _run(tmp_path / "b", base, 5)  # stops after step 5, mid-rollout 1 (4 steps a rollout)
    _, _, fresh, _ = _setup(SMALL)
    resumed, second = _run(tmp_path / "b", fresh, 8)
    assert {**first.losses, **second.losses} == straight.losses  # every step's loss, bit for bit
    for a, b in zip(jax.tree.leaves(nnx.state(model)), jax.tree.leaves(nnx.state(resumed))):
        np.testing.assert_array_equal(a, b)


def test_bad_settings_and_rewards_are_refused():
    with pytest.raises(ValueError, match="must be a multiple of minibatches"):
        GroupRLConfig(prompts_per_rollout=3, samples=3, minibatches=2)
    with pytest.raises(ValueError, match="samples"):
        GroupRLConfig(samples=1)
    with pytest.raises(ValueError, match="method"):
        GroupRLConfig(method="ppo")
    with pytest.raises(ValueError, match="clip_low"):
        GroupRLConfig(clip_low=1.0)
    with pytest.raises(ValueError, match="needs the reference policy"):
        GroupRollouts(*_prompts(), reference=None, reward_fn=verifier, cfg=SMALL)
    policy, reference, _, objective = _setup(SMALL)
    source = GroupRollouts(*_prompts(), reference=reference, reward_fn=lambda t, m, r: np.full(len(t), np.nan),
                           cfg=SMALL)
    source.bind(Trainer(policy, objective, OPTIM, 8))
    with pytest.raises(ValueError, match="16 finite rewards"):
        source(0)

    def broken(tokens, mask, rows):
        raise ZeroDivisionError("the verifier's own bug")

    source.reward_fn = broken
    with pytest.raises(ZeroDivisionError) as err:
        source(0)
    assert "in reward_fn on rollout 0 (steps 0-3) of 16 completions" in "".join(err.value.__notes__)


def test_a_group_of_equal_rewards_has_zero_advantage_and_a_zero_gradient():
    cfg = GroupRLConfig(prompts_per_rollout=4, samples=4, max_new_tokens=6)
    policy, reference, _, objective = _setup(cfg)
    source = GroupRollouts(*_prompts(), reference=reference, reward_fn=lambda t, m, r: np.ones(len(t)), cfg=cfg)
    trainer = Trainer(policy, objective, dataclasses.replace(OPTIM, weight_decay=0.0), 8)  # (decay alone moves them)
    source.bind(trainer)
    before = jax.tree.map(np.asarray, nnx.state(trainer.model, nnx.Param))
    m = jax.device_get(trainer.step(source(0)))
    assert np.all(np.asarray(trainer.objective_state["advantages"]) == 0) and m["reward_std"] == 0
    assert np.isfinite(m["loss"]) and m["loss"] == 0 and m["grad_norm"] == 0  # nothing to learn, and no NaN
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(nnx.state(trainer.model, nnx.Param))):
        np.testing.assert_array_equal(a, b)
