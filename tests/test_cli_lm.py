"""``nlp-jax lm`` / ``perplexity`` / ``generate`` end to end on a tiny text file: train a few steps, read a
finished run back, score its export alike in every reader (ours, transformers), generate from it."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from nlp_jax.cli import main

ROOT = Path(__file__).resolve().parents[1]
STORIES, VALID = ROOT / "docs/examples/stories.txt", ROOT / "docs/examples/stories_valid.txt"
TINY_GPT = ["--set", "gpt.n_layer=1", "--set", "gpt.n_embd=16", "--set", "gpt.n_head=2", "--set", "gpt.block_size=16"]
QUICK = ["--steps", "3", "--set", "train.eval_every=0", "--set", "train.progress=false"]


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_lm_trains_a_gpt_whose_export_scores_alike_in_perplexity_and_transformers_and_generates(tmp_path, capsys):
    out = tmp_path / "lm"
    assert main(["lm", str(STORIES), "--valid", str(VALID), "--out", str(out), *QUICK, *TINY_GPT]) == 0
    s = _summary(out)
    assert s["status"] == "finished" and s["steps"] == 3 and s["tokenizer"] == "char" and s["arch"] == "gpt"
    assert s["valid_tokens"] == len(VALID.read_text()) + 1 and s["unknown_tokens"] == {"train": 0, "valid": 0}
    capsys.readouterr()
    assert main(["lm", str(STORIES), "--valid", str(VALID), "--out", str(out), *QUICK, *TINY_GPT]) == 0
    assert "holds this run, finished" in capsys.readouterr().out  # read back, not trained again
    assert main(["perplexity", str(out / "export"), str(VALID), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["tokens"] == s["valid_tokens"] - 1 and scored["loss"] == pytest.approx(s["val_loss"], rel=1e-5)
    assert scored["bits_per_byte"] == pytest.approx(s["val_loss"] * scored["tokens"] / np.log(2) / VALID.stat().st_size,
                                                    rel=1e-5)
    assert main(["perplexity", str(out / "export"), str(VALID), "--json", "--stride", "8"]) == 0
    assert json.loads(capsys.readouterr().out)["tokens"] == scored["tokens"]  # every token once, more context
    # the export is a HF GPT-2 directory: transformers gives the same loss on the same ids
    transformers, torch = pytest.importorskip("transformers"), pytest.importorskip("torch")
    hf = transformers.GPT2LMHeadModel.from_pretrained(str(out / "export")).eval()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(out / "export" / "tokenizer.json"))
    ids = [hf.config.bos_token_id, *fast(VALID.read_text()[:15], add_special_tokens=False)["input_ids"]]
    from nlp_jax.models.gpt2_hf import load_hf_gpt2

    ours = np.asarray(load_hf_gpt2(out / "export")(np.asarray([ids]))[0])
    with torch.no_grad():
        np.testing.assert_allclose(hf(torch.tensor([ids])).logits.numpy(), ours, atol=1e-4)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("The king\n")
    assert main(["generate", str(out / "export"), str(prompts), "--max-new-tokens", "6", "--json"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["prompt"] == "The king" and 0 < len(row["completion"]) <= 6 and row["logprob"] < 0


def test_lm_trains_an_lstm_on_bpe_with_a_held_out_tail_and_an_arpa_file_is_scored_too(tmp_path, capsys):
    out = tmp_path / "lstm"
    args = ["lm", str(STORIES), "--out", str(out), "--arch", "lstm", "--tokenizer", "bpe", "--vocab-size", "300",
            "--set", "lstm.hidden=16", "--set", "lstm.layers=1", "--set", "bptt=8", *QUICK]
    assert main(args) == 0
    s = _summary(out)
    total = s["train_tokens"] + s["valid_tokens"]
    assert s["vocab_size"] == 300 and s["valid_tokens"] == total - int(total * 0.9)  # the last 10% held out
    assert (out / "export" / "rnn_lm.json").exists() and (out / "export" / "tokenizer.json").exists()
    capsys.readouterr()
    assert main(["perplexity", str(out / "export"), str(STORIES), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["tokens"] == total - 1 and np.isfinite(scored["loss"]) and scored["unknown"] == 0
    assert main(["ngram", str(STORIES), "--order", "2", "--eval", str(VALID), "--out", str(tmp_path / "kn")]) == 0
    expected = _summary(tmp_path / "kn")["evaluations"][str(VALID)]
    capsys.readouterr()
    assert main(["perplexity", str(tmp_path / "kn" / "model.arpa"), str(VALID), "--json"]) == 0
    arpa = json.loads(capsys.readouterr().out)
    assert arpa["perplexity"] == pytest.approx(expected["perplexity"], rel=1e-9) and arpa["unknown"] == 1


def test_lm_and_perplexity_refuse_bad_input_naming_the_file_and_the_fix(tmp_path, refusal):
    short = tmp_path / "short.txt"
    short.write_text("tiny\n")
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"caf\xe9\n")
    for args, message in [([str(tmp_path / "none.txt")], "no such file: .*none.txt"),
                          ([str(STORIES), "--set", "gpt.widht=3"], "unknown config key"),
                          ([str(STORIES), "--set", "valid_fraction=1.5"], "valid_fraction"),
                          ([str(short), *QUICK], "the training text is .* tokens: too short for a context of 64"),
                          ([str(latin), *QUICK], r"latin.txt:1: not UTF-8 text \(invalid continuation byte at byte 3")]:
        shown = refusal(["lm", *args, "--out", str(tmp_path / "o")])
        assert re.search(message, shown), (args, shown)
    for args, message in [([str(tmp_path / "nowhere"), str(VALID)], "nowhere: no such export directory or .arpa"),
                          ([str(tmp_path), str(tmp_path / "none.txt")], "none.txt: no such file")]:
        with pytest.raises(SystemExit, match=message):
            main(["perplexity", *args])
