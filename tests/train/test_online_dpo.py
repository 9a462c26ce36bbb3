"""Online DPO through the one loop: each step's pairs come from the current policy (best against worst by
the scorer, the reference's log-probs beside them), one batch shape, the score rises on a toy reward, and
a resumed run draws the same batches (exact resume)."""

import jax
import numpy as np
import pytest
from flax import nnx
from test_ppo_loop import CFG, Interrupting, _prompts, score

from nlp_jax.models.gpt2 import GPT2
from nlp_jax.models.reward import response_logprobs
from nlp_jax.objectives import dpo_objective
from nlp_jax.train.config import OptimConfig, TrainConfig
from nlp_jax.train.loop import train
from nlp_jax.train.online_dpo import OnlinePairs
from nlp_jax.train.preference import pair_logprobs
from nlp_jax.train.stages import train_stage
from nlp_jax.train.trainer import Trainer

OPTIM = OptimConfig(lr=3e-3, warmup_steps=0, schedule="constant")


def _source(samples=4, batch_size=8, score_fn=score, seed=3):
    return OnlinePairs(*_prompts(), reference=GPT2(CFG, rngs=nnx.Rngs(0)), score_fn=score_fn, batch_size=batch_size,
                       samples=samples, max_new_tokens=6, seed=seed)


def _bound(source, lr=3e-3):
    trainer = Trainer(GPT2(CFG, rngs=nnx.Rngs(0)), dpo_objective(beta=0.1),
                      OptimConfig(lr=lr, warmup_steps=0, schedule="constant"), 100)
    source.bind(trainer)
    return trainer


def test_a_batch_pairs_each_prompts_best_against_its_worst_sample_of_the_current_policy():
    source = _source()
    trainer = _bound(source)
    batch = source(0)
    assert {k: v.shape for k, v in batch.items()} == {
        **{f"{side}{k}": (8, 10) for side in ("chosen", "rejected") for k in ("", "_mask", "_response")},
        "chosen_score": (8,), "rejected_score": (8,), "ref_chosen": (8,), "ref_rejected": (8,)}
    drawn = source.draw(trainer.model, 0)
    scores = score(drawn["tokens"], drawn["mask"]).reshape(-1, 4)
    np.testing.assert_allclose(batch["chosen_score"], scores.max(1), rtol=1e-6)  # one pair a prompt, in order
    np.testing.assert_allclose(batch["rejected_score"], scores.min(1), rtol=1e-6)
    assert 0 < (scores.max(1) > scores.min(1)).sum() < 8  # (this draw has prompts with and without a preference)
    ref = response_logprobs(source.reference, batch["chosen"], batch["chosen_mask"], batch["chosen_response"])[0]
    np.testing.assert_allclose(batch["ref_chosen"], ref, rtol=1e-5, atol=1e-5)
    for k, v in source(0).items():  # the same step and policy: the same batch
        np.testing.assert_array_equal(v, batch[k])
    assert not np.array_equal(source(1)["chosen"], batch["chosen"])


def test_the_samples_follow_the_policy_being_trained():
    source = _source()
    trainer = _bound(source, lr=3e-2)
    before = source(5)
    trainer.step(source(0))
    assert not np.array_equal(source(5)["chosen"], before["chosen"])  # step 5's prompts, new parameters


def test_a_prompt_without_a_preference_is_paired_with_itself_and_gives_no_gradient():
    def one_prompt(tokens, mask):  # only the first prompt's samples can differ: every other one scores 0
        out = score(tokens, mask)
        out[4:] = 0.0
        return out

    source = _source(score_fn=one_prompt)
    trainer = _bound(source)
    batch = source(0)
    for k in ("", "_mask", "_response"):
        np.testing.assert_array_equal(batch[f"chosen{k}"][1:], batch[f"rejected{k}"][1:])
    flat = _source(score_fn=lambda tokens, mask: np.zeros(len(tokens)))  # a policy that states no preference
    _bound(flat)
    real = _source()  # the toy score: prompts with a preference
    _bound(real)
    largest = {}
    loss_and_grad = nnx.jit(nnx.value_and_grad(lambda m, b: trainer.objective.loss(m, b, None, None, {})[:2],
                                               has_aux=True))
    for name, batch in (("none", flat(0)), ("some", real(0))):
        (loss, aux), grads = loss_and_grad(trainer.model, batch)
        largest[name] = max(float(np.abs(g).max()) for g in jax.tree.leaves(grads))
        if name == "none":  # the two sides' log-ratios cancel exactly; the gradient's sums only round
            assert float(loss) == pytest.approx(np.log(2), abs=1e-6) and float(aux["rewards/margins"]) == 0.0
    assert largest["none"] < 1e-6 * largest["some"], largest


def test_soft_labels_read_each_pairs_scores_from_the_online_batch():
    source = _source()
    trainer = _bound(source, lr=3e-2)
    trainer.step(source(0))  # the policy moves away from the reference: margins other than 0
    batch = source(1)
    soft = dpo_objective(beta=0.1, soft_labels=0.1)
    loss, _, _ = soft.loss(trainer.model, batch, None, None, {})
    # the same loss by hand: q = sigma((s_w - s_l) / tau) against the policy's margins
    h = np.float64(0.1) * (np.asarray(pair_logprobs(trainer.model, batch), np.float64)
                           - np.stack([batch["ref_chosen"], batch["ref_rejected"]]))
    margin, q = h[0] - h[1], 1 / (1 + np.exp(-(batch["chosen_score"] - batch["rejected_score"]) / 0.1))
    want = np.mean(q * np.logaddexp(0, -margin) + (1 - q) * np.logaddexp(0, margin))
    assert float(loss) == pytest.approx(want, rel=1e-4)
    assert float(loss) != pytest.approx(float(dpo_objective(beta=0.1).loss(trainer.model, batch, None, None, {})[0]))


def _mean_score(source, model):
    return np.mean([score(d["tokens"], d["mask"]) for d in (source.draw(model, s) for s in range(3))])


def test_online_dpo_raises_the_score(tmp_path):
    source = _source(samples=4, batch_size=16)
    start = _mean_score(source, GPT2(CFG, rngs=nnx.Rngs(0)))
    model, result = train_stage(GPT2(CFG, rngs=nnx.Rngs(0)), dpo_objective(beta=0.1), source,
                                train_cfg=TrainConfig(steps=40, log_every=20, ckpt_every=0, progress=False),
                                optim_cfg=OptimConfig(lr=1e-2, warmup_steps=0, schedule="constant"),
                                workdir=tmp_path, config={"test": 1})
    end = _mean_score(source, model)
    assert result.step == 40 and end > start + 0.2, (start, end)


def _run(workdir, source, steps=6):
    cfg = TrainConfig(steps=steps, log_every=1, eval_every=0, ckpt_every=2, progress=False, seed=1)
    return train(GPT2(CFG, rngs=nnx.Rngs(0)), dpo_objective(beta=0.1), source, train_cfg=cfg, optim_cfg=OPTIM,
                 workdir=workdir)


@pytest.mark.slow
def test_resume_is_exact(tmp_path):
    model, straight = _run(tmp_path / "a", _source())
    _, first = _run(tmp_path / "b", Interrupting(_source(), 3))
    assert first.status == "interrupted" and first.step == 3
    resumed, second = _run(tmp_path / "b", _source())
    assert {**first.losses, **second.losses} == straight.losses  # every step's loss, bit for bit
    for a, b in zip(jax.tree.leaves(nnx.state(model)), jax.tree.leaves(nnx.state(resumed))):
        np.testing.assert_array_equal(a, b)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="samples must be >= 2"):
        _source(samples=1)
    with pytest.raises(ValueError, match=r"batch_size=17 must be in \[1, 16\]"):
        _source(batch_size=17)
    with pytest.raises(RuntimeError, match="must be bound"):
        _source()(0)
