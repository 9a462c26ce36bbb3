"""``nlp-jax prefer`` end to end on tiny JSONL files over a tiny ``nlp-jax lm`` policy: each kind of loss
trains and exports, the reward model's export scores alike in transformers, and bad rows are named."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from nlp_jax.cli import main

ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "docs" / "examples"
QUICK = ["--set", "train.steps=2", "--set", "train.progress=false", "--batch-size", "4"]


@pytest.fixture(scope="module")
def policy(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("policy") / "lm"
    assert main(["lm", str(EX / "stories.txt"), "--out", str(out), "--steps", "2", "--set", "train.eval_every=0",
                 "--set", "train.progress=false", "--set", "gpt.n_layer=1", "--set", "gpt.n_embd=16", "--set",
                 "gpt.n_head=2", "--set", "gpt.block_size=48"]) == 0
    return out / "export"


@pytest.mark.parametrize("loss", ["sigmoid", "simpo", "kto"])
def test_each_kind_of_preference_loss_trains_the_policy_and_exports_it(loss, policy, tmp_path):
    data = EX / ("kto.jsonl" if loss == "kto" else "prefs.jsonl")
    valid = [] if loss == "kto" else ["--valid", str(EX / "prefs_valid.jsonl")]
    extra = ["--set", "gamma=0.5"] if loss == "simpo" else []
    out = tmp_path / loss
    assert main(["prefer", str(policy), str(data), "--loss", loss, "--out", str(out), *valid, *QUICK, *extra]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "finished" and s["train"]["examples"] == (120 if loss == "kto" else 240)
    assert s["train"]["rows_cut"] > 0  # the policy's context of 48 cuts some rows: counted, not hidden
    assert ("log_ratio_gap" in s) if loss == "kto" else (0.0 <= s["preference_accuracy"] <= 1.0)
    assert (out / "export" / "model.safetensors").exists() and (out / "export" / "tokenizer.json").exists()
    if loss != "simpo":  # the reference's log-probs were cached beside the run (SimPO has no reference)
        with np.load(out / "reference_logprobs.npz") as cached:
            assert len(cached["ref_completion" if loss == "kto" else "ref_chosen"]) == s["train"]["examples"]


def test_a_reward_model_exports_a_sequence_classifier_transformers_scores_alike(policy, tmp_path):
    out = tmp_path / "rm"
    assert main(["prefer", str(policy), str(EX / "prefs.jsonl"), "--loss", "reward", "--out", str(out), *QUICK,
                 "--set", "train_eval_examples=50"]) == 0  # no --valid: scored on the training data's first 50
    s = json.loads((out / "summary.json").read_text())
    assert s["valid"] == "the first 50 training examples" and 0.0 <= s["preference_accuracy"] <= 1.0
    transformers, torch = pytest.importorskip("transformers"), pytest.importorskip("torch")
    from nlp_jax.models.gpt2_hf import load_hf_reward_model

    hf = transformers.GPT2ForSequenceClassification.from_pretrained(str(out / "export")).eval()
    ours = load_hf_reward_model(out / "export")
    ids = np.asarray([[1, 20, 21, 22, 23, 24], [1, 10, 11, 12, 0, 0]])  # (the stories' 28 characters)
    ids[1, 4:] = hf.config.pad_token_id  # right padding: HF reads the last token that is not padding
    mask = ids != hf.config.pad_token_id
    mask[:, 0] = True
    with torch.no_grad():
        theirs = hf(torch.tensor(ids), attention_mask=torch.tensor(mask.astype(np.int64))).logits[:, 0].numpy()
    np.testing.assert_allclose(np.asarray(ours(ids, attention_mask=mask)[0]), theirs, atol=1e-5)


def test_bad_rows_are_refused_naming_the_file_the_example_and_the_fix(policy, tmp_path, refusal):
    def jsonl(name, *rows):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
        return str(tmp_path / name)

    ok = {"prompt": "the cat", "chosen": " sat", "rejected": " ran"}
    cases = [
        (["--loss", "sigmoid"], jsonl("same.jsonl", ok, {**ok, "rejected": " sat"}),
         r"same.jsonl: pair 2 has identical chosen and rejected responses"),
        (["--loss", "sigmoid"], jsonl("cols.jsonl", {"prompt": "a", "good": "b", "bad": "c"}),
         r"no column 'chosen', 'rejected'; its columns are bad, good, prompt"),
        (["--loss", "sigmoid"], jsonl("chat.jsonl", {**ok, "chosen": [{"role": "assistant", "content": "hi"}]}),
         r"example 1's 'chosen' is list, not text \(the conversational format"),
        (["--loss", "kto"], jsonl("label.jsonl", {"prompt": "a", "completion": " b", "label": "yes"}),
         r"example 1's label is 'yes'; KTO's label is true"),
        (["--loss", "sigmoid", "--beta", "0"], jsonl("fine.jsonl", ok), r"beta must be > 0"),
    ]
    for options, path, message in cases:
        shown = refusal(["prefer", str(policy), path, "--out", str(tmp_path / "o"), *QUICK, *options])
        assert re.search(message, shown), (message, shown)
