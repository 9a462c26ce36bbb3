"""Every experiment runs end to end for 2 steps with its ``:smoke`` config, through the real launcher."""

import dataclasses
import importlib
import json
from pathlib import Path

import numpy as np
import pytest

from nlp_jax.run import load_experiment, main

OWN_TESTS = {"rlhf_sentiment", "preferences_hh", "translate"}  # tested below (rlhf_sentiment's builds its oracle)
EXPERIMENTS = sorted(p for p in Path(__file__).resolve().parents[1].glob("experiments/*.py")
                     if p.stem not in OWN_TESTS and not p.stem.startswith("_"))  # _name.py: an experiment's helpers
GPT = Path(__file__).resolve().parents[1] / "experiments" / "gpt_shakespeare_char.py"


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_smoke(path, tmp_path):
    summary = main([f"{path}:smoke", "--set", f"workdir={tmp_path}"])
    assert summary and (tmp_path / "summary.json").exists()
    if "steps" not in summary:  # not a training experiment
        return
    assert summary["steps"] == 2 and summary["status"] == "finished"
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 2
    assert (tmp_path / "loss.png").exists() and (tmp_path / "config.json").exists()


def test_launcher_rejects_unknown_override(capsys):
    with pytest.raises(SystemExit):
        main([f"{GPT}:smoke", "--set", "optim.learning_rate=1"])
    assert "unknown config key" in capsys.readouterr().err


def test_an_experiment_imports_a_helper_file_beside_it(tmp_path):
    (tmp_path / "_helper_for_test.py").write_text("ANSWER = 42\n")
    (tmp_path / "exp.py").write_text("from _helper_for_test import ANSWER\n\n\ndef get_config(arg=None):\n"
                                     "    return ANSWER\n\n\ndef run(cfg):\n    return {}\n")
    module, arg = load_experiment(f"{tmp_path / 'exp.py'}:x")
    assert module.get_config(arg) == 42 and arg == "x"


def test_print_config(capsys):
    main([f"{GPT}:cpu", "--print-config", "--set", "train.steps=5"])
    assert json.loads(capsys.readouterr().out)["train"]["steps"] == 5


def test_an_interrupted_run_exits_with_the_signal_status_and_resumes(tmp_path):
    """SIGTERM during training: checkpoint saved, no sample, exit status 128 + 15; the rerun finishes."""
    import signal
    import subprocess
    import sys
    import time

    cmd = [sys.executable, "-m", "nlp_jax.run", f"{GPT}:smoke", "--set", f"workdir={tmp_path}",
           "--set", "train.steps=100000", "--set", "train.log_every=1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not (tmp_path / "metrics.jsonl").exists() or not (tmp_path / "metrics.jsonl").read_text():
        assert time.time() < deadline and proc.poll() is None, proc.stdout.read() if proc.poll() is not None else ""
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["signal"] == signal.SIGTERM
    assert not (tmp_path / "sample.txt").exists()
    steps = summary["steps"]
    from nlp_jax.train.checkpoint import Checkpointer

    ckpt = Checkpointer(tmp_path / "checkpoints")  # saved at the step it stopped after, not only periodically
    assert ckpt.latest_step() == steps, (ckpt.latest_step(), steps)
    ckpt.close()
    resumed = main([f"{GPT}:smoke", "--set", f"workdir={tmp_path}", "--set", f"train.steps={steps + 2}"])
    assert resumed["status"] == "finished" and resumed["steps"] == steps + 2


def test_a_finished_run_reports_its_stored_results_and_resume_checks_the_config(tmp_path, capsys):
    first = main([f"{GPT}:smoke", "--set", f"workdir={tmp_path}"])
    stamp = (tmp_path / "summary.json").stat().st_mtime_ns
    again = main([f"{GPT}:smoke", "--set", f"workdir={tmp_path}"])  # `make demo` twice
    assert again == first and (tmp_path / "summary.json").stat().st_mtime_ns == stamp
    assert "its stored results" in capsys.readouterr().out
    with pytest.raises(ValueError, match="model.n_embd: 16 -> 32"):  # a changed shape: named, not a tree dump
        main([f"{GPT}:smoke", "--set", f"workdir={tmp_path}", "--set", "model.n_embd=32", "--set", "train.steps=4"])
    with pytest.raises(ValueError, match="train.seed: 1337 -> 5"):
        main([f"{GPT}:smoke", "--set", f"workdir={tmp_path}", "--set", "train.seed=5", "--set", "train.steps=4"])
    longer = main([f"{GPT}:smoke", "--set", f"workdir={tmp_path}", "--set", "train.steps=4",
                   "--set", "optim.lr=5e-4"])  # what can be honoured is, and recorded
    assert longer["steps"] == 4
    segment = json.loads((tmp_path / "config_segments.jsonl").read_text().splitlines()[-1])
    assert segment["from_step"] == 2 and segment["changes"] == {"optim.lr": 5e-4, "train.steps": 4}
    fresh = main([f"{GPT}:smoke", "--set", f"workdir={tmp_path}", "--set", "train.resume=false"])
    assert fresh["steps"] == 2 and (tmp_path / "previous-1" / "checkpoints" / "best").is_dir()  # moved, kept


def test_kill_9_after_an_evaluation_then_rerun_finishes(tmp_path):
    """The fault of issue 11: kill -9 between an evaluation (best/ written) and the next checkpoint."""
    import signal
    import subprocess
    import sys
    import time

    overrides = ["--set", f"workdir={tmp_path}", "--set", "train.log_every=1", "--set", "train.eval_every=3",
                 "--set", "train.ckpt_every=0", "--set", "data.eval_batch_size=64"]
    proc = subprocess.Popen([sys.executable, "-m", "nlp_jax.run", f"{GPT}:smoke", "--set", "train.steps=100000",
                             *overrides], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics, deadline = tmp_path / "metrics.jsonl", time.time() + 180
    while not (metrics.exists() and '"val_loss"' in metrics.read_text()):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (tmp_path / "checkpoints" / "best").is_dir()
    saved = max(int(p.name) for p in (tmp_path / "checkpoints" / "last").iterdir() if p.name.isdigit())
    summary = main([f"{GPT}:smoke", "--set", f"train.steps={saved + 2}", *overrides])
    assert summary["status"] == "finished" and summary["steps"] == saved + 2


SST2 = Path(__file__).resolve().parents[1] / "experiments" / "bert_sst2.py"


def test_frozen_minilm_features_with_logistic_regression_beat_chance_and_random_weights(tmp_path, capsys):
    args = [f"{SST2}:smoke", "--set", "init=frozen", "--set", "max_train=512", "--set", "max_dev=128"]
    summary = main([*args, "--set", f"workdir={tmp_path / 'trained'}"])
    assert summary["status"] == "finished" and summary["dev_accuracy"] > 0.65 and summary["weights"] == "trained"
    random = main([*args, "--set", f"workdir={tmp_path / 'random'}", "--set", "frozen_weights=random"])
    assert random["weights"] == "random" and random["dev_accuracy"] < summary["dev_accuracy"] - 0.05
    with pytest.raises(SystemExit):
        main([f"{SST2}:smoke", "--set", f"workdir={tmp_path / 'bad'}", "--set", "frozen_weights=random"])
    assert "frozen_weights='random' needs init='frozen'" in capsys.readouterr().err


def test_task_adaptive_pretraining_mixes_sst2_sentences_into_the_batches(tmp_path):
    pretrain = Path(__file__).resolve().parents[1] / "experiments" / "bert_pretrain.py"
    summary = main([f"{pretrain}:smoke", "--set", f"workdir={tmp_path}", "--set", "sst2_rate=0.5"])
    assert summary["status"] == "finished" and summary["steps"] == 2
    vocab = set((tmp_path / "tokenizer" / "vocab.txt").read_text().split())
    assert {",", "?", ";"} <= vocab  # SST-2's punctuation: PTB's text has none, so the vocabulary saw SST-2


def test_pretraining_on_en_corpus_holds_out_whole_documents(tmp_path):
    pretrain = Path(__file__).resolve().parents[1] / "experiments" / "bert_pretrain.py"
    summary = main([f"{pretrain}:smoke", "--set", f"workdir={tmp_path}", "--set", "corpus=en_corpus",
                    "--set", "chunk_words=12"])
    assert summary["status"] == "finished" and np.isfinite(summary["val_mlm_loss"])
    module, _ = load_experiment(str(pretrain))
    cfg = dataclasses.replace(module.get_config("smoke"), corpus="en_corpus", chunk_words=12, max_sentences=0)
    (train, firsts), (held, held_firsts) = module.sentences(cfg, "train"), module.sentences(cfg, "valid")
    assert 0.005 < len(held) / len(train) < 0.02 and max(len(c.split()) for c in train) == 12
    assert len(set(train) & set(held)) < 0.01 * len(held)  # different documents (a few chunks recur verbatim)
    assert len(firsts) < len(train) - 1 and held_firsts.max() < len(held) - 1


def test_task_adaptive_pretraining_continues_from_an_export(tmp_path):
    pretrain = Path(__file__).resolve().parents[1] / "experiments" / "bert_pretrain.py"
    first = tmp_path / "first"
    main([f"{pretrain}:smoke", "--set", f"workdir={first}"])
    summary = main([f"{pretrain}:smoke", "--set", f"workdir={tmp_path / 'next'}", "--set", "sst2_rate=0.5",
                    "--set", f"init_dir={first / 'export'}"])
    assert summary["status"] == "finished" and summary["steps"] == 2
    # the continued run keeps the export's vocabulary (not one retrained on SST-2 as well)
    assert (tmp_path / "next" / "export" / "vocab.txt").read_text() == (first / "export" / "vocab.txt").read_text()
    with pytest.raises(ValueError, match="init_dir=.*another architecture.*num_hidden_layers"):
        main([f"{pretrain}:smoke", "--set", f"workdir={tmp_path / 'bad'}", "--set", f"init_dir={first / 'export'}",
              "--set", "model.n_layer=3"])


def test_rlhf_sentiment_runs_every_stage_and_resumes_from_its_results(tmp_path):
    import jax
    from flax import nnx

    from nlp_jax.data.sst2 import read_sst2
    from nlp_jax.data.wordpiece import WordPieceTokenizer
    from nlp_jax.models.bert import BertClassifier, BertConfig
    from nlp_jax.models.bert_hf import save_hf_bert

    tok = WordPieceTokenizer.train(read_sst2("train")[0][:300], 120, max_length=64)  # an untrained tiny oracle
    oracle = BertClassifier(BertConfig.tiny(vocab_size=tok.vocab_size, block_size=64), rngs=nnx.Rngs(0))
    tok.save(save_hf_bert(oracle, tmp_path / "oracle" / "export", labels=["negative", "positive"]))
    rlhf = Path(__file__).resolve().parents[1] / "experiments" / "rlhf_sentiment.py"
    args = [f"{rlhf}:smoke", "--set", f"workdir={tmp_path / 'rlhf'}", "--set", f"oracle_dir={tmp_path / 'oracle/export'}"]
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
    again = main(args)  # every stage is read back, nothing is measured twice
    assert again["sft"]["seconds"] == summary["sft"]["seconds"]
    longer = main(args + ["--set", "ppo_rollouts=3"])  # one stage's change: its runs resume, the rest is kept
    assert longer["ppo_rm_b0.05"]["seconds"] != summary["ppo_rm_b0.05"]["seconds"]
    assert all(longer[k] == summary[k] for k in ("sft", "bon_2", "dpo_b0.05", "reward_model"))
    # other judge settings: every policy is judged again (2 samples a prefix -> 1), none trained again
    logs = {d: (tmp_path / "rlhf" / d / "metrics.jsonl").read_text()
            for d in ("dpo_b0.05", "dpo_online", "ppo_rm_b0.05")}
    rejudged = main(args + ["--set", "ppo_rollouts=3", "--set", "eval_samples=1"])
    assert rejudged["sft_train"] == summary["sft_train"] and rejudged["bon_2"] == summary["bon_2"]
    for name in ("sft", "dpo_b0.05", "dpo_iter2_round1", "dpo_online", "ppo_rm_b0.05", "ppo_oracle_b0.05"):
        assert rejudged[name]["reward_sem/oracle"] != longer[name]["reward_sem/oracle"], name
    assert rejudged["dpo_online_step2"] == summary["dpo_online_step2"]  # judged during training, kept
    assert all((tmp_path / "rlhf" / d / "metrics.jsonl").read_text() == log for d, log in logs.items())
    module, _ = load_experiment(str(rlhf))
    stages = importlib.import_module("_rlhf_stages")  # its helper file, importable beside it
    smoke = module.get_config("smoke")
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
    with pytest.raises(ValueError, match=r"dpo_b0.05 holds a run trained with other settings \(batch: 4 -> 2\)"):
        main(args + ["--set", "dpo_batch=2"])  # DPO's weights were trained otherwise (SFT still resumed)

    from nlp_jax.generate import generate, main as generate_main

    rows = generate(tmp_path / "rlhf" / "dpo_b0.05" / "export", ["a fine", "the worst film"], samples=2,
                    max_new_tokens=5)
    assert [r["prompt"] for r in rows] == ["a fine", "a fine", "the worst film", "the worst film"]
    assert all(isinstance(r["completion"], str) and r["logprob"] <= 0 for r in rows)
    (tmp_path / "prompts.txt").write_text("a fine\n\nthe worst film\n")
    generate_main([str(tmp_path / "rlhf" / "sft" / "export"), str(tmp_path / "prompts.txt"), "--max-new-tokens", "4"])
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        generate(tmp_path, ["a"])
    from nlp_jax.generate import encode_prompts, load_policy

    _, tok, bos, _ = load_policy(tmp_path / "rlhf" / "sft" / "export")
    long_prompt = "the worst film of the year by far"
    ids, mask = encode_prompts(tok, [long_prompt, "a"], bos, room=4)  # cut: BOS stays, then the last pieces
    assert ids[0].tolist() == [bos, *tok.pieces([long_prompt])[0][-3:]]
    assert mask.tolist() == [[True] * 4, [False, False, True, True]]


@pytest.mark.parametrize("config", ["smoke", "smoke_dpo"])
def test_hh_preferences_score_every_curve_point_beside_the_baselines(config, tmp_path):
    hh = Path(__file__).resolve().parents[1] / "experiments" / "preferences_hh.py"
    summary = main([f"{hh}:{config}", "--set", f"workdir={tmp_path}"])
    assert summary["status"] == "finished" and summary["train_pairs"] == 24
    names = ["random", "longer", "shorter"] + (["linear_8", "linear_16", "fine_tuned_8", "fine_tuned_16"]
                                               if config == "smoke" else ["reference", "dpo_8", "dpo_16"])
    for name in names:
        assert 0.0 <= summary[name]["accuracy"] <= 1.0 and summary[name]["held_out"] == 24, name
    assert summary["longer"]["accuracy"] + summary["shorter"]["accuracy"] == pytest.approx(1.0)
    table = (tmp_path / "results.md").read_text()
    assert all(f"| {name} " in table for name in names)
    assert main([f"{hh}:{config}", "--set", f"workdir={tmp_path}"])[names[-1]] == summary[names[-1]]  # read back


@pytest.mark.parametrize("config", ["smoke", "smoke_transformer"])
def test_translation_trains_scores_exports_and_translates_a_file(config, tmp_path, capsys):
    import json as json_

    from nlp_jax.translate import load_export, main as translate_main

    exp = Path(__file__).resolve().parents[1] / "experiments" / "translate.py"
    averaging = ["--set", "average_last=2"] if config == "smoke_transformer" else []  # both final-model choices
    summary = main([f"{exp}:{config}", "--set", f"workdir={tmp_path}", *averaging])
    assert summary["status"] == "finished" and summary["steps"] == 2
    assert summary["averaged_steps"] == [1, 2] if averaging else summary["best_step"] in (1, 2)
    if averaging:  # more checkpoints averaged than kept: refused before any work, naming the fix
        with pytest.raises(SystemExit):
            main([f"{exp}:{config}", "--set", f"workdir={tmp_path / 'x'}", "--set", "average_last=3"])
        assert "set train.keep_last >= 3" in capsys.readouterr().err
    for name in ("greedy", "beam2"):
        assert 0 <= summary[name]["bleu"] <= 100 and "case:mixed" in summary[name]["signature"]
        assert sum(r["sentences"] for r in summary[name]["by_length"]) == 1014
        assert len((tmp_path / f"val.{name}.de").read_text(encoding="utf-8").splitlines()) == 1014
    assert (tmp_path / "attention.png").stat().st_size > 0 and "| words from |" in (tmp_path / "by_length.md").read_text()
    (tmp_path / "in.txt").write_text("A man rides a bike.\n\n" + "very " * 200 + "long\n", encoding="utf-8")
    capsys.readouterr()
    translate_main([str(tmp_path / "export"), str(tmp_path / "in.txt"), "--beam", "2"])
    assert len(capsys.readouterr().out.split("\n")) == 4  # one line per input line (the empty one too)
    spec = json_.loads((tmp_path / "export" / "model.json").read_text())
    key = "hidden" if spec["arch"] == "lstm" else "d_model"
    spec["config"][key] *= 2  # a checkpoint of another config
    (tmp_path / "export" / "model.json").write_text(json_.dumps(spec))
    with pytest.raises(ValueError, match="does not fit model.json|has shape"):
        load_export(tmp_path / "export")
    with pytest.raises(ValueError, match="holds a run trained with other settings"):
        main([f"{exp}:{config}", "--set", f"workdir={tmp_path}", "--set", "vocab_size=400"])
