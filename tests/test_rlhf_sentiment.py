import dataclasses

import numpy as np
import pytest

from experiments.rlhf_sentiment.methods import DPOMethod, check_continuations, curve_label, find_method
from nlp_jax.run import main


def test_labels_name_one_curve_per_setting():
    assert DPOMethod(name="a", beta=0.1).label == "DPO"
    assert DPOMethod(name="a", beta=0.1, loss_type="cdpo", label_smoothing=0.1).label == "cDPO"
    assert DPOMethod(name="a", beta=0.5, lr=5e-5, rounds=16).label == "DPO, iterative, beta 0.5, lr 5e-05"
    assert (DPOMethod(name="a", beta=0.5, rounds=6, min_gap=0.3).label
            == "DPO, iterative, beta 0.5, oracle gap > 0.3")
    assert DPOMethod(name="a", beta=1.0, soft_labels=0.1).label == "DPO, beta 1, soft labels tau 0.1"
    assert (DPOMethod(name="a", beta=0.5, rounds=12, samples=8, extremes=True).label
            == "DPO, iterative, beta 0.5, best vs worst of 8 samples")
    assert DPOMethod(name="a", beta=0.5, samples=8).label == "DPO, beta 0.5, 8 samples"


def test_a_method_draws_its_own_pairs_only_when_the_shared_ones_cannot_serve_it():
    plain = DPOMethod(name="a", beta=0.5, lr=5e-5, rounds=16)
    assert not plain.own_pairs
    assert dataclasses.replace(plain, samples=8, extremes=True).own_pairs
    assert dataclasses.replace(plain, soft_labels=0.1).own_pairs and dataclasses.replace(plain, min_gap=0.1).own_pairs
    with pytest.raises(ValueError, match="samples"):
        DPOMethod(name="a", beta=0.5, samples=1)


def test_a_continuation_must_start_from_an_earlier_method_with_fewer_rounds_and_the_same_objective():
    base = DPOMethod(name="base", beta=0.5, rounds=4)
    more = DPOMethod(name="more", beta=0.5, rounds=8, continues="base")
    check_continuations((base, more))
    check_continuations((base, dataclasses.replace(more, lr=1e-4, samples=8, extremes=True)))  # learns otherwise
    for bad in ((more, base), (base, dataclasses.replace(more, rounds=4)), (base, dataclasses.replace(more, beta=1.0)),
                (base, dataclasses.replace(more, loss_type="ipo")), (base, dataclasses.replace(more, continues="x"))):
        with pytest.raises(ValueError, match="more continues=.* must name a method listed before it with fewer "
                                             "rounds and the same beta, loss_type, label_smoothing"):
            check_continuations(bad)
    assert find_method((base, more), "more") is more
    with pytest.raises(KeyError, match="no method named 'x'; the methods are base, more"):
        find_method((base, more), "x")


def test_a_continuation_with_the_same_settings_extends_the_curve_and_one_with_others_starts_its_own():
    base = DPOMethod(name="base", beta=0.5, lr=5e-5, rounds=4)
    same = DPOMethod(name="same", beta=0.5, lr=5e-5, rounds=8, continues="base")
    other = DPOMethod(name="other", beta=0.5, lr=1e-4, rounds=8, samples=8, extremes=True, continues="base")
    methods = (base, same, other)
    assert curve_label(methods, base) == curve_label(methods, same) == "DPO, iterative, beta 0.5, lr 5e-05"
    assert (curve_label(methods, other)
            == "DPO, iterative, beta 0.5, lr 0.0001, best vs worst of 8 samples, after base")


def test_an_online_method_draws_its_own_pairs_and_refuses_the_iterative_fields():
    online = DPOMethod(name="o", beta=0.5, lr=1e-4, online_steps=600, samples=4)
    assert online.label == "DPO, online 600 steps, beta 0.5, lr 0.0001, best vs worst of 4 samples" and online.own_pairs
    longer = dataclasses.replace(online, name="o2", online_steps=1200)  # another schedule: a curve of its own
    assert (curve_label((online, longer), longer)
            == "DPO, online 1,200 steps, beta 0.5, lr 0.0001, best vs worst of 4 samples")
    assert (DPOMethod(name="o", beta=1.0, online_steps=10).label
            == "DPO, online 10 steps, beta 1, best vs worst of 2 samples")
    for bad in (dict(rounds=2), dict(continues="x"), dict(epochs=2), dict(min_gap=0.1)):
        with pytest.raises(ValueError, match="o: online DPO .* rounds, continues, epochs and min_gap do not apply"):
            dataclasses.replace(online, **bad)
    with pytest.raises(ValueError, match="online_steps"):
        DPOMethod(name="o", beta=0.5, online_steps=-1)


def test_the_frontier_table_and_plot(tmp_path):
    from experiments.rlhf_sentiment.report import frontier_table, plot_frontier

    rows = {"sft": {"method": "SFT", "param": 0, "reward/oracle": 0.5, "reward/judge": 0.6, "kl": 0.0},
            "dpo": {"method": "sigmoid", "param": 0.1, "reward/oracle": 0.8, "kl": 2.5, "seconds": 3.0}}
    table = frontier_table(rows).splitlines()
    assert table[0] == "| policy | method | beta / N | judge | oracle | KL (nats) | seconds |"
    assert table[3] == "| dpo | sigmoid | 0.1 | - | 0.800 | 2.50 | 3.0 |"
    assert plot_frontier(rows, tmp_path / "f.png").stat().st_size > 0


def test_rewards_at_a_kl_are_the_best_within_it_along_each_front_from_sft_and_none_beyond_reach():
    from experiments.rlhf_sentiment.report import at_kl_table, rewards_at

    rows = {"sft": {"method": "SFT", "kl": 0.0, "reward/oracle": 0.5},
            "dpo_a": {"method": "DPO", "kl": 1.0, "reward/oracle": 0.6},
            "dpo_b": {"method": "DPO", "kl": 4.0, "reward/oracle": 0.9},
            "ipo": {"method": "IPO", "kl": 6.0, "reward/oracle": 0.8},
            "on_1": {"method": "online", "kl": 3.0, "reward/oracle": 0.85},  # a run's steps: not monotone
            "on_2": {"method": "online", "kl": 3.5, "reward/oracle": 0.80},
            "on_3": {"method": "online", "kl": 8.0, "reward/oracle": 0.84}}
    read = rewards_at(rows)
    assert read["DPO"][2.0] == pytest.approx(0.7) and read["DPO"][5.0] is None  # 0.6 + (2 - 1) / 3 * 0.3
    assert read["IPO"][5.0] == pytest.approx(0.5 + 5 / 6 * 0.3) and read["IPO"]["points"] == 2  # SFT, then IPO
    assert read["online"][5.0] == pytest.approx(0.85) and read["online"][10.0] is None  # its best within 5 nats
    assert read["online"][2.0] == pytest.approx(0.5 + 2 / 3 * 0.35) and "SFT" not in read
    assert "| DPO | 0.700 | - | - | 4.00 | 3 |" in at_kl_table(rows)


@pytest.mark.slow
def test_rlhf_sentiment_runs_every_stage_and_resumes_from_its_results(tmp_path):
    import jax
    from flax import nnx

    from nlp_jax.data.sst2 import read_sst2
    from nlp_jax.data.wordpiece import WordPieceTokenizer
    from nlp_jax.models.bert import BertClassifier, BertConfig
    from nlp_jax.models.bert_hf import save_hf_bert

    tok = WordPieceTokenizer.train(read_sst2("train")[0][:300], 120, max_length=64)  # an untrained tiny oracle
    oracle = BertClassifier(BertConfig.tiny(vocab_size=tok.vocab_size, block_size=64), rngs=nnx.Rngs(0))
    save_hf_bert(oracle, tmp_path / "oracle" / "export", labels=["negative", "positive"], tokenizer=tok)
    args = ["experiments/rlhf_sentiment:smoke", "--set", f"workdir={tmp_path / 'rlhf'}",
            "--set", f"oracle_dir={tmp_path / 'oracle/export'}"]
    summary = main(args)
    assert summary["status"] == "finished"
    for name in ("sft", "bon_1", "bon_2", "dpo_b0.05", "ppo_rm_b0.05", "ppo_oracle_b0.05"):
        row = summary[name]
        assert 0.0 <= row["reward/oracle"] <= 1.0 and 0.0 <= row["reward/tfidf_lr"] <= 1.0
    assert summary["bon_2"]["reward/oracle"] >= summary["bon_1"]["reward/oracle"]  # the oracle picks the better
    assert summary["sft"]["kl"] == pytest.approx(0.0, abs=1e-5)
    assert (tmp_path / "rlhf" / "frontier.png").stat().st_size > 0
    assert "| dpo_b0.05 | DPO |" in (tmp_path / "rlhf" / "results.md").read_text()
    assert "| dpo_iter2 | DPO, iterative, beta 0.05 |" in (tmp_path / "rlhf" / "results.md").read_text()
    assert 0.0 <= summary["dpo_iter2"]["reward/oracle"] <= 1.0  # round 2 trained on its own samples' pairs:
    assert (tmp_path / "rlhf" / "dpo_iter2" / "round2" / "pairs.npz").exists()
    first = summary["dpo_iter2_round1"]  # round 1 is judged too, and is the one-round run of the same beta
    assert first["method"] == summary["dpo_iter2"]["method"]
    measured = ("reward/oracle", "reward/tfidf_lr", "kl")
    assert {k: first[k] for k in measured} == {k: summary["dpo_b0.05"][k] for k in measured}
    assert first["kl"] != summary["dpo_iter2"]["kl"]  # round 2 trained on: its policy is not round 1's
    # dpo_iter3 continues dpo_iter2: only its round 3 is trained here, from dpo_iter2's last policy
    extended = tmp_path / "rlhf" / "dpo_iter3"
    assert (extended / "round3" / "pairs.npz").exists() and not (extended / "round2").exists()
    assert not (extended / "checkpoints").exists() and "dpo_iter3_round2" not in summary
    assert summary["dpo_iter3"]["method"] == summary["dpo_iter2"]["method"]  # one curve
    assert summary["dpo_iter3"]["kl"] != summary["dpo_iter2"]["kl"]
    # dpo_bw3_iter2: 3 samples a prefix, only the best against the worst, in both rounds: one pair a prefix at most
    for r in ("dpo_bw3_iter2", "dpo_bw3_iter2/round2", "dpo_bw3_after_iter3/round4"):
        bw = np.load(tmp_path / "rlhf" / r / "pairs.npz")
        assert 0 < len(bw["chosen"]) <= 4 and (bw["chosen_score"] > bw["rejected_score"]).all()
    assert summary["dpo_bw3_iter2"]["method"] == "DPO, iterative, beta 0.05, best vs worst of 3 samples"
    # dpo_bw3_after_iter3 continues dpo_iter3 with other pairs: round 4 only, a curve of its own
    assert not (tmp_path / "rlhf" / "dpo_bw3_after_iter3" / "round3").exists()
    assert summary["dpo_bw3_after_iter3"]["method"] == ("DPO, iterative, beta 0.05, best vs worst of 3 samples, "
                                                        "after dpo_iter3")
    # min_gap (with soft labels): its round 1 redraws the shared pairs' SFT samples and keeps those pairs apart by more
    shared, strong = ({(tuple(c), tuple(r)) for c, r in zip(p["chosen"], p["rejected"])}
                      for p in (np.load(tmp_path / "rlhf" / d / "pairs.npz") for d in (".", "dpo_gap_soft")))
    assert 0 < len(strong) <= len(shared) and strong <= shared  # (the untrained oracle: scores ~1e-6 apart)
    assert summary["dpo_gap_soft"]["method"] == "DPO, beta 0.05, oracle gap > 1e-07, soft labels tau 0.1"
    assert 0.0 <= summary["reward_model"]["heldout_pair_accuracy"] <= 1.0
    # online DPO: 5 steps, each on pairs of the policy then, judged at steps 2 and 4 and at the end
    assert [k for k in summary if k.startswith("dpo_online_")] == ["dpo_online_step2", "dpo_online_step4"]
    assert summary["dpo_online"]["method"] == summary["dpo_online_step2"]["method"] == (
        "DPO, online 5 steps, beta 0.05, best vs worst of 3 samples")
    assert summary["dpo_online_step2"]["kl"] != summary["dpo_online"]["kl"]
    assert (tmp_path / "rlhf" / "dpo_online" / "export" / "model.safetensors").exists()
    # KTO on the shared pairs' completions, each alone; GRPO on the oracle, judged after each of its 2 rollouts
    assert summary["kto"]["method"] == "KTO" and "| kto | KTO |" in (tmp_path / "rlhf" / "results.md").read_text()
    with np.load(tmp_path / "rlhf" / "kto" / "reference_logprobs.npz") as refs:
        assert {"ref_completion", "ref_kl"} <= set(refs) and len(refs["ref_completion"]) == 2 * len(
            np.load(tmp_path / "rlhf" / "pairs.npz")["chosen"])
    assert [k for k in summary if k.startswith("grpo_")] == ["grpo_b0.05_rollout1", "grpo_b0.05"]
    assert summary["grpo_b0.05"]["method"] == summary["grpo_b0.05_rollout1"]["method"] == "GRPO (oracle)"
    assert summary["grpo_b0.05_rollout1"]["kl"] != summary["grpo_b0.05"]["kl"]
    assert (tmp_path / "rlhf" / "grpo_b0.05" / "export" / "model.safetensors").exists()
    # one stage's change: its runs resume, every other stage is read back, not measured again; a damaged
    # pairs.npz (a crash mid-write of an earlier version) is named and drawn again, the same pairs
    shared = tmp_path / "rlhf" / "pairs.npz"
    with np.load(shared) as stored:
        before = dict(stored)
    shared.write_bytes(shared.read_bytes()[:100])
    ppo_log = tmp_path / "rlhf" / "ppo_rm_b0.05" / "metrics.jsonl"
    trained = len(ppo_log.read_text().splitlines())
    longer = main(args + ["--set", "ppo_rollouts=3"])
    with np.load(shared) as stored:
        assert all(np.array_equal(stored[k], v) for k, v in before.items())
    assert len(ppo_log.read_text().splitlines()) > trained  # PPO resumed and trained on (its seconds may tie)
    kept = [k for k, v in summary.items() if isinstance(v, dict) and not k.startswith("ppo_")]
    assert "reward_model" in kept and all(longer[k] == summary[k] for k in kept)
    # other judge settings: every policy is judged again (2 samples a prefix -> 1), none trained again
    logs = {d: (tmp_path / "rlhf" / d / "metrics.jsonl").read_text()
            for d in ("dpo_b0.05", "dpo_online", "ppo_rm_b0.05")}
    rejudged = main(args + ["--set", "ppo_rollouts=3", "--set", "eval_samples=1"])
    assert rejudged["sft_train"] == summary["sft_train"] and rejudged["bon_2"] == summary["bon_2"]
    for name in ("sft", "dpo_b0.05", "dpo_iter2_round1", "dpo_online", "ppo_rm_b0.05", "ppo_oracle_b0.05"):
        assert rejudged[name]["reward_sem/oracle"] != longer[name]["reward_sem/oracle"], name
    assert rejudged["dpo_online_step2"] == summary["dpo_online_step2"]  # judged during training, kept
    assert all((tmp_path / "rlhf" / d / "metrics.jsonl").read_text() == log for d, log in logs.items())
    from experiments.rlhf_sentiment import stages
    from experiments.rlhf_sentiment.config import get_config

    smoke = get_config("smoke")
    for bad in (dict(continues="dpo_iter9"), dict(beta=0.1), dict(rounds=2)):
        wrong = dataclasses.replace(smoke.method("dpo_iter3"), **bad)
        with pytest.raises(ValueError, match="dpo_iter3 continues=.* must name a method listed before it"):
            dataclasses.replace(smoke, methods=(*smoke.methods[:2], wrong))
    with pytest.raises(KeyError, match="no method named 'dpo_iter9'; the methods are dpo_b0.05, dpo_iter2"):
        smoke.method("dpo_iter9")
    # each round draws its prefixes from the next slice of train_prompts, cyclically past the last one
    prefixes = (np.arange(10)[:, None] * np.ones((1, 3), int), np.arange(10)[:, None] > 4)
    assert [stages.round_prefixes(prefixes, r, 4)[0][:, 0].tolist() for r in (0, 1, 2, 3)] == [
        [0, 1, 2, 3], [4, 5, 6, 7], [0, 1, 2, 3], [4, 5, 6, 7]]
    assert stages.round_prefixes(prefixes, 3, 4)[1][:, 0].tolist() == [False, True, True, True]
    with pytest.raises(ValueError, match="train_prompts=11 is more than the 10 training prefixes"):
        stages.round_prefixes(prefixes, 0, 11)
    # a continuing method starts from the exported last policy of the one it continues, after its rounds
    from nlp_jax.models.gpt2_hf import load_hf_gpt2

    cfg, sft = dataclasses.replace(smoke, workdir=str(tmp_path / "rlhf")), load_hf_gpt2(tmp_path / "rlhf/sft/export")
    assert stages.start_policy(cfg, sft, cfg.method("dpo_iter2"))[0] == 0
    first_round, start = stages.start_policy(cfg, sft, cfg.method("dpo_iter3"))
    last = nnx.state(load_hf_gpt2(tmp_path / "rlhf" / "dpo_iter2" / "export"), nnx.Param)
    assert first_round == 2 and all(np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(nnx.state(start, nnx.Param)), jax.tree.leaves(last), strict=True))
    with pytest.raises(ValueError, match=r"dpo_b0.05 holds a run trained with other settings \(dpo_batch: 4 -> 2\)"):
        main(args + ["--set", "dpo_batch=2"])  # DPO's weights were trained otherwise (SFT still resumed)

    from nlp_jax.cli import main as nlp_jax_main
    from nlp_jax.eval.generation import encode_prompts, generate, load_policy

    rows = generate(tmp_path / "rlhf" / "dpo_b0.05" / "export", ["a fine", "the worst film"], samples=2,
                    max_new_tokens=5)
    assert [r["prompt"] for r in rows] == ["a fine", "a fine", "the worst film", "the worst film"]
    assert all(isinstance(r["completion"], str) and r["logprob"] <= 0 for r in rows)
    (tmp_path / "prompts.txt").write_text("a fine\n\nthe worst film\n")
    assert nlp_jax_main(["generate", str(tmp_path / "rlhf" / "sft" / "export"), str(tmp_path / "prompts.txt"),
                         "--max-new-tokens", "4"]) == 0
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        generate(tmp_path, ["a"])
    _, tok, bos, _ = load_policy(tmp_path / "rlhf" / "sft" / "export")
    long_prompt = "the worst film of the year by far"
    ids, mask = encode_prompts(tok, [long_prompt, "a"], bos, room=4)  # cut: BOS stays, then the last pieces
    assert ids[0].tolist() == [bos, *tok.pieces([long_prompt])[0][-3:]]
    assert mask.tolist() == [[True] * 4, [False, False, True, True]]
