"""DPO, KTO and the reward model through the one Trainer: log 2 at the start, learning a synthetic preference,
the frozen reference untouched and gradient-free, and the reference cache reused only while valid."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nlp_jax.data.corpus import ShuffledBatches
from nlp_jax.data.preferences import encode_pairs, encode_unpaired
from nlp_jax.models.gpt2 import GPT2, GPT2Config
from nlp_jax.models.reward import RewardModel, pair_batch
from nlp_jax.objectives import Objective, dpo_objective, kto_objective, reward_loss
from nlp_jax.train.config import OptimConfig
from nlp_jax.train.preference import reference_logprobs
from nlp_jax.train.trainer import Trainer

CFG = GPT2Config.tiny(dropout=0.0, block_size=24)


def _pairs(n=32, seed=0):
    """Prompts of random letters; the chosen response repeats 'a', the rejected one 'b' (ids 1 and 2)."""
    rng = np.random.default_rng(seed)
    prompts = ["".join(rng.choice(list("cdefgh"), rng.integers(1, 6))) for _ in range(n)]
    lengths = rng.integers(2, 8, n)
    pairs, _ = encode_pairs(lambda s: [ord(c) - 96 for c in s], prompts, ["a" * k for k in lengths],
                            ["b" * k for k in lengths], max_length=16, max_prompt_length=6, bos_id=30)
    return pairs


def _policy(seed=0):
    return GPT2(CFG, rngs=nnx.Rngs(seed))


def _jitted(objective):
    """``objective``'s (loss, aux) as one compiled program of (model, batch, frozen models)."""
    return nnx.jit(lambda m, batch, frozen: objective.loss(m, batch, None, None, frozen)[:2])


def _leaves(model):
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]


def test_dpo_starts_at_log2_learns_the_preference_and_never_touches_the_reference():
    pairs = _pairs()
    reference = _policy()
    before = _leaves(reference)
    trainer = Trainer(_policy(), dpo_objective(beta=0.5), OptimConfig(lr=1e-2, warmup_steps=0), 40,
                      frozen={"reference": reference})
    source = ShuffledBatches(pairs, 8, seed=1)
    first = trainer.step(source(0))
    assert abs(float(first["loss"]) - np.log(2)) < 1e-6  # policy == reference at step 0
    for step in range(1, 40):
        metrics = trainer.step(source(step))
    assert float(metrics["rewards/accuracies"]) == 1.0 and float(metrics["loss"]) < 0.3
    assert float(metrics["rewards/margins"]) > 0
    assert all(np.array_equal(a, b) for a, b in zip(before, _leaves(reference)))


def test_the_reference_receives_no_gradient():
    batch = {k: jnp.asarray(v[:4]) for k, v in _pairs().items()}
    objective = dpo_objective(beta=0.1)
    policy, reference = _policy(0), _policy(1)
    grads = nnx.jit(nnx.grad(lambda ref: objective.loss(policy, batch, None, None, {"reference": ref})[0]))(reference)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads))


def test_soft_labels_come_from_the_batch_scores():
    from nlp_jax.models.reward import response_logprobs

    batch = {k: jnp.asarray(v[:4]) for k, v in _pairs().items()}
    scores = {"chosen_score": jnp.array([0.9, 0.6, 0.5, 0.99]), "rejected_score": jnp.array([0.1, 0.55, 0.5, 0.0])}
    policy, reference = _policy(0), _policy(1)
    soft, _, _ = dpo_objective(beta=0.5, soft_labels=0.2).loss(policy, {**batch, **scores}, None, None,
                                                              {"reference": reference})
    total = [response_logprobs(m, *pair_batch(batch))[0] for m in (policy, reference)]
    (pw, pl), (rw, rl) = (jnp.split(t, 2) for t in total)
    q = jax.nn.sigmoid((scores["chosen_score"] - scores["rejected_score"]) / 0.2)
    h, q = np.float64(pw - rw) - np.float64(pl - rl), np.float64(q)
    logsig = lambda x: -np.logaddexp(0.0, -x)  # noqa: E731
    assert float(soft) == pytest.approx(np.mean(-q * logsig(0.5 * h) - (1 - q) * logsig(-0.5 * h)), rel=1e-5)
    with pytest.raises(ValueError, match="soft_labels needs each pair's scores: put chosen_score"):
        dpo_objective(beta=0.5, soft_labels=0.2).loss(policy, batch, None, None, {"reference": reference})
    with pytest.raises(ValueError, match="preference \\(soft labels\\) applies to loss_type 'sigmoid'"):
        dpo_objective(beta=0.5, loss_type="ipo", soft_labels=0.2)


def test_cached_reference_logprobs_equal_the_frozen_model_and_are_reused_only_while_valid(tmp_path, capsys):
    pairs = _pairs(12)
    reference = _policy()
    cache = tmp_path / "ref.npz"
    ref = reference_logprobs(reference, pairs, cache, batch_size=5)
    batch = {k: jnp.asarray(v[:4]) for k, v in pairs.items()}
    loss = _jitted(dpo_objective(beta=0.1))
    from_cache = loss(_policy(2), {**batch, **{k: v[:4] for k, v in ref.items()}}, {})
    from_model = loss(_policy(2), batch, {"reference": reference})
    assert abs(float(from_cache[0]) - float(from_model[0])) < 1e-5
    stamp = cache.stat().st_mtime_ns
    np.testing.assert_array_equal(reference_logprobs(reference, pairs, cache)["ref_chosen"], ref["ref_chosen"])
    assert cache.stat().st_mtime_ns == stamp  # read, not recomputed
    other = reference_logprobs(_policy(5), pairs, cache)
    assert "made for another reference model" in capsys.readouterr().out
    assert not np.allclose(other["ref_chosen"], ref["ref_chosen"])


def test_dpo_without_a_reference_is_a_clear_error():
    batch = {k: jnp.asarray(v[:4]) for k, v in _pairs().items()}
    with pytest.raises(ValueError, match="DPO needs the reference log-probs"):
        dpo_objective(beta=0.1).loss(_policy(), batch, None, None, {})
    with pytest.raises(ValueError, match="beta must be > 0"):
        dpo_objective(beta=0.0)
    free, _, _ = dpo_objective(beta=0.1, loss_type="simpo", gamma=0.5).loss(_policy(), batch, None, None, {})
    assert np.isfinite(float(free))


def test_reward_model_learns_to_prefer_the_chosen_response():
    pairs = _pairs()
    rm = RewardModel(_policy(), rngs=nnx.Rngs(3))
    trainer = Trainer(rm, Objective.of(reward_loss), OptimConfig(lr=1e-2, warmup_steps=0), 30)
    source = ShuffledBatches(pairs, 8, seed=2)
    for step in range(30):
        metrics = trainer.step(source(step))
    assert float(metrics["accuracy"]) == 1.0 and float(metrics["margin"]) > 1.0


@pytest.mark.parametrize("loss_type", ["ipo", "simpo", "cdpo", "orpo"])
def test_the_objective_compares_the_log_probs_each_loss_is_defined_on(loss_type):
    """ipo, simpo and orpo on per-token means (simpo and orpo with no reference), cdpo on sums: the
    objective's mean loss equals the float64 formula on the log-probs it should use."""
    from nlp_jax.models.reward import response_logprobs

    batch = {k: jnp.asarray(v[:4]) for k, v in _pairs().items()}
    policy, reference = _policy(0), _policy(1)
    kw = {"ipo": {}, "simpo": {"gamma": 0.3}, "cdpo": {"label_smoothing": 0.1}, "orpo": {}}[loss_type]
    value, aux, _ = dpo_objective(beta=0.5, loss_type=loss_type, **kw).loss(policy, batch, None, None,
                                                                            {"reference": reference})
    tokens, mask, response = pair_batch(batch)
    (pw, pl), (rw, rl) = (np.split(np.float64(response_logprobs(m, tokens, mask, response)[0]), 2)
                          for m in (policy, reference))
    nw, nl = np.split(np.float64(np.asarray(response)[:, 1:].sum(-1)), 2)
    logsig = lambda x: -np.logaddexp(0.0, -x)  # noqa: E731
    if loss_type == "ipo":
        want = np.mean(((pw / nw - rw / nw) - (pl / nl - rl / nl) - 1 / (2 * 0.5)) ** 2)
    elif loss_type == "simpo":
        want = np.mean(-logsig(0.5 * (pw / nw - pl / nl) - 0.3))
    elif loss_type == "orpo":  # the chosen's per-token NLL + lambda (beta) x the log odds ratio
        log_odds = lambda lp: lp - np.log1p(-np.exp(lp))  # noqa: E731
        want = np.mean(-pw / nw - 0.5 * logsig(log_odds(pw / nw) - log_odds(pl / nl)))
    else:
        h = (pw - rw) - (pl - rl)
        want = np.mean(-0.9 * logsig(0.5 * h) - 0.1 * logsig(-0.5 * h))
    assert float(value) == pytest.approx(want, rel=1e-4)
    assert float(aux["logps/chosen"]) == pytest.approx(np.mean(pw), rel=1e-5)



def _unpaired(n=32, seed=0):
    """KTO's examples: a completion of 'a's is desirable, one of 'b's undesirable (ids 1 and 2)."""
    rng = np.random.default_rng(seed)
    prompts = ["".join(rng.choice(list("cdefgh"), rng.integers(1, 6))) for _ in range(n)]
    labels = rng.random(n) < 0.5
    completions = [("a" if good else "b") * k for good, k in zip(labels, rng.integers(2, 8, n))]
    return encode_unpaired(lambda s: [ord(c) - 96 for c in s], prompts, completions, labels, max_length=16,
                           max_prompt_length=6, bos_id=30)[0]


def test_kto_starts_at_half_its_weights_and_learns_unpaired_labels():
    examples = _unpaired()
    reference = _policy()
    before = _leaves(reference)
    trainer = Trainer(_policy(), kto_objective(beta=0.5, undesirable_weight=1.5), OptimConfig(lr=1e-2, warmup_steps=0),
                      40, frozen={"reference": reference})
    source = ShuffledBatches(examples, 8, seed=1)
    batch = source(0)
    first = trainer.step(dict(batch))  # policy == reference: z0 = 0 and every value is sigma(0) = 1/2
    weights = np.where(batch["desirable"], 1.0, 1.5)
    assert float(first["loss"]) == pytest.approx(np.mean(weights) / 2, rel=1e-6) and float(first["kl"]) == 0.0
    for step in range(1, 40):
        metrics = trainer.step(source(step))
    assert float(metrics["rewards/desirable"]) > 0 > float(metrics["rewards/undesirable"])
    assert float(metrics["loss"]) < float(first["loss"])
    assert all(np.array_equal(a, b) for a, b in zip(before, _leaves(reference)))
    with pytest.raises(KeyError, match="a KTO batch needs"):
        kto_objective(beta=0.1).loss(_policy(), {"completion": batch["completion"]}, None, None, {})


def test_unpaired_examples_pair_each_prompt_with_the_next_completion_and_refuse_one_sided_labels():
    encode = lambda s: [ord(c) - 96 for c in s]  # noqa: E731
    out, dropped = encode_unpaired(encode, ["c", "d", "e"], ["aa", "", "bbb"], [True, False, False], max_length=8,
                                   max_prompt_length=4, bos_id=30, drop_invalid=True)
    assert dropped == [1] and out["desirable"].tolist() == [True, False]
    assert out["completion"][:, :4].tolist() == [[30, 3, 1, 1], [30, 5, 2, 2]]
    assert out["kl"][:, :5].tolist() == [[30, 3, 2, 2, 2], [30, 5, 1, 1, 0]]  # each prompt, the other's completion
    assert out["kl_response"][1].tolist()[:5] == [False, False, True, True, False]
    with pytest.raises(ValueError, match="example 1 has an empty completion"):
        encode_unpaired(encode, ["c", "d", "e"], ["aa", "", "bbb"], [True, False, False], max_length=8,
                        max_prompt_length=4)
    with pytest.raises(ValueError, match="desirable and undesirable examples both"):
        encode_unpaired(encode, ["c", "d"], ["aa", "bb"], [True, True], max_length=8, max_prompt_length=4)


def test_kto_s_reference_log_probs_are_cached_like_the_pairs_and_never_served_for_other_data(tmp_path):
    examples, reference, cache = _unpaired(12), _policy(), tmp_path / "kto_ref.npz"
    ref = reference_logprobs(reference, examples, cache, batch_size=5, sides=("completion", "kl"))
    assert set(ref) == {"ref_completion", "ref_kl"}
    batch = {k: jnp.asarray(v[:4]) for k, v in examples.items()}
    loss = _jitted(kto_objective(beta=0.1))
    from_cache = loss(_policy(2), {**batch, **{k: v[:4] for k, v in ref.items()}}, {})
    from_model = loss(_policy(2), batch, {"reference": reference})
    assert abs(float(from_cache[0]) - float(from_model[0])) < 1e-6
    assert abs(float(from_cache[1]["kl"]) - float(from_model[1]["kl"])) < 1e-6
    changed = {**examples, "completion": np.where(examples["completion_response"], 1, examples["completion"])}
    again = reference_logprobs(reference, changed, cache, sides=("completion", "kl"))  # other data: recomputed
    assert not np.allclose(again["ref_completion"], ref["ref_completion"])
    np.testing.assert_array_equal(again["ref_kl"], ref["ref_kl"])
