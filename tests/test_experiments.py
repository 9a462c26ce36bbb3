"""Every experiment runs end to end for 2 steps with its ``:smoke`` config, through the real launcher."""

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from nlp_jax.run import load_experiment, main

ROOT = Path(__file__).resolve().parents[1]
OWN_TESTS = {"rlhf_sentiment", "preferences_hh", "translate", "verifiable_rl"}  # tested below and in their own files
EXPERIMENTS = sorted(p for p in [*ROOT.glob("experiments/*.py"), *ROOT.glob("experiments/*/__init__.py")]
                     if p.stem != "__init__" and p.stem not in OWN_TESTS)
GPT = Path(__file__).resolve().parents[1] / "experiments" / "gpt_shakespeare_char.py"


@pytest.mark.slow
@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_smoke(path, tmp_path, request):
    tiny = ["--set", f"init_dir={request.getfixturevalue('tiny_bert_dir')}"] if path.stem == "bert_sst2" else []
    summary = main([f"{path}:smoke", "--set", f"workdir={tmp_path}", *tiny])
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


def test_an_experiment_is_a_file_or_a_package_and_a_study_imports_the_experiment_it_varies(tmp_path):
    module, arg = load_experiment("experiments/rlhf_sentiment:smoke")  # a package, by its dotted name
    assert module.__name__ == "experiments.rlhf_sentiment" and arg == "smoke"
    study, arg = load_experiment("studies/rlhf_sentiment/study.py:online")
    assert study.run is module.run and type(study.get_config(arg)) is module.Config
    package = tmp_path / "mine"  # your own experiment package elsewhere: loaded from its location
    package.mkdir()
    (package / "helper.py").write_text("ANSWER = 42\n")
    (package / "__init__.py").write_text("from .helper import ANSWER\n\n\ndef get_config(arg=None):\n"
                                         "    return ANSWER\n\n\ndef run(cfg):\n    return {}\n")
    module, arg = load_experiment(f"{package}:x")
    assert module.get_config(arg) == 42 and arg == "x"
    with pytest.raises(FileNotFoundError, match="experiment not found: .*nowhere"):
        load_experiment(str(tmp_path / "nowhere"))


def test_a_block_size_longer_than_the_validation_split_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="model.block_size=200,000 does not fit the validation split"):
        main([f"{GPT}:smoke", "--set", f"workdir={tmp_path}", "--set", "model.block_size=200000"])
    assert not (tmp_path / "checkpoints").exists()


def test_print_config(capsys):
    main([f"{GPT}:cpu", "--print-config", "--set", "train.steps=5"])
    assert json.loads(capsys.readouterr().out)["train"]["steps"] == 5


@pytest.mark.slow
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


@pytest.mark.slow
def test_frozen_minilm_features_with_logistic_regression_beat_chance_and_random_weights(tmp_path, capsys):
    args = [f"{SST2}:smoke", "--set", "init=frozen", "--set", "max_train=256", "--set", "max_dev=128"]
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


@pytest.mark.slow
def test_task_adaptive_pretraining_continues_from_an_export(tmp_path):
    import jax
    from flax import nnx

    from nlp_jax.models.bert_hf import load_hf_bert

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
    # SST-2 from random weights at that pretraining's shape (a config field) and vocabulary (its tokenizer)
    tiny = ["--set", "model.n_layer=2", "--set", "model.n_embd=16", "--set", "model.n_head=2", "--set",
            "model.n_inner=32", "--set", "model.block_size=32", "--set", "max_length=32"]
    scratch = [f"{SST2}:smoke", "--set", "init=scratch", "--set", f"init_dir={first / 'export'}"]
    summary = main([*scratch, *tiny, "--set", f"workdir={tmp_path / 'scratch'}"])
    assert summary["status"] == "finished" and summary["init"] == "scratch"
    assert summary["parameters"] == sum(  # the tiny shape with the export's vocabulary and a 2-way head
        p.size for p in jax.tree.leaves(nnx.state(load_hf_bert(first / "export", head="classifier",
                                                               num_labels=2), nnx.Param)))
    with pytest.raises(ValueError, match=r"model= has another shape .*'n_layer': \(2, 4\)"):
        main([*scratch, "--set", f"workdir={tmp_path / 'scratch_mini'}"])


@pytest.mark.slow
@pytest.mark.parametrize("config", ["smoke", "smoke_dpo"])
def test_hh_preferences_score_every_curve_point_beside_the_baselines(config, tmp_path, tiny_bert_dir):
    hh = Path(__file__).resolve().parents[1] / "experiments" / "preferences_hh.py"
    tiny = ["--set", f"encoder_dir={tiny_bert_dir}"]  # the reward models' encoder (MiniLM in the real runs)
    summary = main([f"{hh}:{config}", "--set", f"workdir={tmp_path}", *tiny])
    assert summary["status"] == "finished" and summary["train_pairs"] == 24
    names = ["random", "longer", "shorter"] + (["linear_8", "linear_16", "fine_tuned_8", "fine_tuned_16"]
                                               if config == "smoke" else ["reference", "dpo_8", "dpo_16"])
    for name in names:
        assert 0.0 <= summary[name]["accuracy"] <= 1.0 and summary[name]["held_out"] == 24, name
    assert summary["longer"]["accuracy"] + summary["shorter"]["accuracy"] == pytest.approx(1.0)
    table = (tmp_path / "results.md").read_text()
    assert all(f"| {name} " in table for name in names)
    assert main([f"{hh}:{config}", "--set", f"workdir={tmp_path}", *tiny])[names[-1]] == summary[names[-1]]
    if config == "smoke":  # a changed setting measures again the rows that depend on it, and only those
        changed = main([f"{hh}:{config}", "--set", f"workdir={tmp_path}", *tiny, "--set", "linear_l2=0.5"])
        assert changed["linear_8"]["settings"] != summary["linear_8"]["settings"]
        assert changed["fine_tuned_16"] == summary["fine_tuned_16"]


@pytest.mark.slow
@pytest.mark.parametrize("config", ["smoke", "smoke_transformer"])
def test_translation_trains_scores_exports_and_translates_a_file(config, tmp_path, capsys, refusal):
    import json as json_

    from nlp_jax.cli import main as nlp_jax_main
    from nlp_jax.models.translator import load_export

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
        assert sum(r["sentences"] for r in summary[name]["by_length"]) == 64  # the smoke's max_val
        assert len((tmp_path / f"val.{name}.de").read_text(encoding="utf-8").splitlines()) == 64
    assert (tmp_path / "attention.png").stat().st_size > 0
    assert "| words from |" in (tmp_path / "by_length.md").read_text()
    # one output line per input line: a form feed or U+2028 stays inside its line, an empty line stays empty
    (tmp_path / "in.txt").write_text("A man rides\x0ca bike.\n\nA dog\u2028runs.\n" + "very " * 200 + "long\n",
                                     encoding="utf-8")
    capsys.readouterr()
    assert nlp_jax_main(["translate", str(tmp_path / "export"), str(tmp_path / "in.txt"), "--beam", "2"]) == 0
    out = capsys.readouterr().out.split("\n")
    assert len(out) == 5 and out[1] == "" and out[0] and out[2] and out[4] == ""
    for bad in (["--beam", "0"], ["--batch-size", "0"], ["--length-penalty", "nan"]):  # refused before any load
        assert "must be" in refusal(["translate", str(tmp_path / "nowhere"), str(tmp_path / "in.txt"), *bad])
    assert "nowhere: no such directory" in refusal(["translate", str(tmp_path / "nowhere"), str(tmp_path / "in.txt")])
    # a run directory, not its export
    assert "has no model.json" in refusal(["translate", str(tmp_path), str(tmp_path / "in.txt")])
    (tmp_path / "latin1.txt").write_bytes("A man\nin a caf\xe9.\n".encode("latin-1"))
    assert re.search("latin1.txt:2: not UTF-8 text .* at byte 14",
                     refusal(["translate", str(tmp_path / "export"), str(tmp_path / "latin1.txt")]))
    spec = json_.loads((tmp_path / "export" / "model.json").read_text())
    key = "hidden" if spec["arch"] == "lstm" else "d_model"
    spec["config"][key] *= 2  # a checkpoint of another config
    (tmp_path / "export" / "model.json").write_text(json_.dumps(spec))
    with pytest.raises(ValueError, match="model.json does not match its checksum"):  # a changed byte is named
        load_export(tmp_path / "export")
    (tmp_path / "export" / "checksums.sha256").unlink()  # without checksums the loader still names the misfit
    with pytest.raises(ValueError, match="does not fit model.json|has shape"):
        load_export(tmp_path / "export")
    spec["arch"] = "transformer" if spec["arch"] == "lstm" else "lstm"  # the other kind's name on this config
    (tmp_path / "export" / "model.json").write_text(json_.dumps(spec))
    with pytest.raises(ValueError, match="model.json: its config is not a (lstm|transformer) model's"):
        load_export(tmp_path / "export")
    with pytest.raises(ValueError, match="holds a run trained with other settings"):
        main([f"{exp}:{config}", "--set", f"workdir={tmp_path}", "--set", "vocab_size=400"])
