"""``nlp-jax prefer``: learn from your preference data, on a GPT-2 policy of your own or GPT-2's.

    nlp-jax prefer runs/my_lm/export pairs.jsonl --out runs/my_dpo                  # DPO, beta 0.1
    nlp-jax prefer runs/my_lm/export pairs.jsonl --loss ipo --beta 0.5 --valid held.jsonl --out runs/my_ipo
    nlp-jax prefer runs/my_lm/export labelled.jsonl --loss kto --out runs/my_kto       # unpaired examples
    nlp-jax prefer runs/my_lm/export pairs.jsonl --loss reward --out runs/my_rm        # a Bradley-Terry reward model

Data: JSONL in TRL's standard formats, one example a line: ``prompt`` / ``chosen`` / ``rejected`` (texts)
for the pairwise losses and the reward model, ``prompt`` / ``completion`` / ``label`` (true: desirable) for
KTO. A row is ``<bos> prompt + response`` (the prompt's last ``max_prompt_length`` tokens, the row cut at
``max_length``; rows cut short are counted in the summary); ``response`` is appended to the prompt as
written, so put the space or newline between them where the text has one.

``--loss``: ``sigmoid`` (DPO), ``ipo``, ``cdpo`` / ``robust`` (``--set label_smoothing=0.1``), ``hinge``,
``sigmoid_norm``, ``simpo`` (``--set gamma=1``, no reference), ``orpo`` (beta is its lambda, no reference),
``kto`` or ``reward``. The reference is the starting policy; its log-probs are computed once and cached in
``--out`` with a fingerprint of the model and the data. Training runs ``epochs`` passes through the one loop
(checkpoints, resume, ``loss.png``). Reported on the ``--valid`` file (or, without one, on the training data's
first ``train_eval_examples``, 10,000 by default): the preference accuracy (the share of pairs whose chosen
response gains more log-probability over the reference than the rejected one; for the reward model, whose
chosen scores higher) and the mean margin.
Output in ``--out``: ``summary.json`` and ``export/``, the trained policy as a GPT-2 directory
(``nlp-jax generate`` samples from it) or, for ``reward``, the reward model as a one-label
``GPT2ForSequenceClassification`` directory (``transformers`` scores alike; ``models.gpt2_hf``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from nlp_jax.cli import add_run_options, launch_training
from nlp_jax.data.files import read_records
from nlp_jax.data.preferences import encode_pairs, encode_unpaired
from nlp_jax.eval.generation import load_policy
from nlp_jax.models.gpt2_hf import save_hf_gpt2, save_hf_reward_model
from nlp_jax.models.reward import RewardModel
from nlp_jax.objectives import dpo_objective, kto_objective, reward_loss
from nlp_jax.ops.preference import DPO_LOSSES
from nlp_jax.train.config import OptimConfig, TrainConfig
from nlp_jax.train.preference import pair_logprobs, reference_logprobs, train_on_pairs
from nlp_jax.train.records import write_summary
from nlp_jax.validate import at_least, check_fields

LOSSES = (*DPO_LOSSES, "kto", "reward")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    model_dir: str  # the starting policy: a GPT-2 export directory with its tokenizer
    train_file: str
    valid_file: str = ""
    loss: str = "sigmoid"
    beta: float = 0.1  # the KL strength (ORPO: its lambda; SimPO: its scale)
    label_smoothing: float = 0.0  # cdpo / robust
    gamma: float = 0.0  # simpo's target margin
    epochs: int = 1
    batch_size: int = 8
    max_length: int = 0  # tokens a row (0: the model's context)
    max_prompt_length: int = 0  # the prompt's last tokens kept (0: half of max_length)
    optim: OptimConfig = OptimConfig(lr=5e-5, min_lr=5e-6, warmup_steps=10, weight_decay=0.0)
    train: TrainConfig = TrainConfig(steps=0, log_every=10, eval_every=0, ckpt_every=100)
    train_eval_examples: int = 10_000  # without --valid: the first this many training examples are scored (0: all)
    workdir: str = "runs/prefer"

    def __post_init__(self):
        check_fields(self, loss=((lambda v: v in LOSSES), f"one of {LOSSES}"), epochs=at_least(1),
                     batch_size=at_least(2), max_length=at_least(0), max_prompt_length=at_least(0),
                     train_eval_examples=at_least(0))
        if self.loss in DPO_LOSSES:
            from nlp_jax.ops.preference import check_dpo_arguments

            check_dpo_arguments(loss_type=self.loss, beta=self.beta, label_smoothing=self.label_smoothing,
                                gamma=self.gamma)
        elif not self.beta > 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")


def parser() -> argparse.ArgumentParser:
    d = Config(model_dir="x", train_file="x")
    p = argparse.ArgumentParser(prog="nlp-jax prefer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir", help="the starting policy: a GPT-2 export directory with its tokenizer.json")
    p.add_argument("train_file", help="JSONL: prompt/chosen/rejected (kto: prompt/completion/label)")
    p.add_argument("--out", required=True, help="the run directory (created; a rerun resumes it)")
    p.add_argument("--valid", default="", help="held-out examples, the same format (default: none)")
    p.add_argument("--loss", choices=LOSSES, default=d.loss, help=f"(default: {d.loss})")
    p.add_argument("--beta", type=float, default=d.beta, help=f"(default: {d.beta})")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"(default: {d.epochs})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"(default: {d.batch_size})")
    p.add_argument("--lr", type=float, default=d.optim.lr, help=f"peak learning rate (default: {d.optim.lr})")
    p.add_argument("--seed", type=int, default=d.train.seed, help=f"(default: {d.train.seed})")
    add_run_options(p, "max_length=128, gamma=1, label_smoothing=0.1")
    return p


def config_from_args(a: argparse.Namespace) -> Config:
    cfg = Config(model_dir=a.model_dir, train_file=a.train_file, valid_file=a.valid, loss=a.loss, beta=a.beta,
                 epochs=a.epochs, batch_size=a.batch_size, workdir=a.out)
    return dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, lr=a.lr),
                               train=dataclasses.replace(cfg.train, seed=a.seed))


def main(argv: list[str] | None = None) -> dict:
    p = parser()
    a = p.parse_args(argv)
    return launch_training(p, a, [a.train_file, a.valid], config_from_args, sys.modules[__name__])


def encode_file(cfg: Config, path: str, encode, bos: int, pad: int, context: int) -> tuple[dict, dict]:
    """(the examples of ``path`` as arrays, {'examples', 'cut': rows cut at max_length}); a row whose chosen
    equals its rejected, an empty response, a missing field or a label that is not true/false is named."""
    max_length = min(cfg.max_length or context, context)
    max_prompt = cfg.max_prompt_length or max_length // 2
    kto = cfg.loss == "kto"
    fields = ["prompt", "completion", "label"] if kto else ["prompt", "chosen", "rejected"]
    records = read_records(path, fields)
    for i, r in enumerate(records):
        bad = [f for f in fields if f != "label" and not isinstance(r[f], str)]
        if bad:
            raise ValueError(f"{path}: example {i + 1}'s {bad[0]!r} is {type(r[bad[0]]).__name__}, not text (the "
                             f"conversational format, lists of messages, is not read: flatten it to text)")
        if kto and not isinstance(r["label"], bool):
            raise ValueError(f"{path}: example {i + 1}'s label is {r['label']!r}; KTO's label is true (desirable) "
                             "or false")
    prompts = [r["prompt"] for r in records]
    responses = [fields[1], fields[2]] if not kto else ["completion"]
    cut = sum(len(encode(r["prompt"])) > max_prompt or 1 + min(len(encode(r["prompt"])), max_prompt)
              + len(encode(r[side])) > max_length for r in records for side in responses)
    kw = dict(max_length=max_length, max_prompt_length=max_prompt, pad_id=pad, bos_id=bos)
    try:
        if kto:
            arrays, _ = encode_unpaired(encode, prompts, [r["completion"] for r in records],
                                        [r["label"] for r in records], **kw)
        else:
            arrays, _ = encode_pairs(encode, prompts, [r["chosen"] for r in records], [r["rejected"] for r in records],
                                     **kw)
    except ValueError as err:  # "pair i has ...": name the file and its line (1-based)
        raise ValueError(f"{path}: {_one_based(str(err))}") from None
    return arrays, {"examples": len(records), "rows_cut": int(cut)}


def _one_based(message: str) -> str:
    for word in ("pair ", "example "):
        if message.startswith(word):
            number, _, rest = message[len(word):].partition(" ")
            if number.isdigit():
                return f"{word}{int(number) + 1}{' ' + rest if rest else ''}"
    return message


def accuracy(cfg: Config, model, reference, arrays: dict, cache: Path) -> dict:
    """The preference accuracy and mean margin of ``model`` on ``arrays`` (see the module docstring); KTO's:
    the mean log-ratio to the reference of the desirable completions minus the undesirable ones'."""
    if cfg.loss == "reward":
        chosen, rejected = _scores(model, arrays)
    else:
        sides = ("completion", "kl") if cfg.loss == "kto" else ("chosen", "rejected")
        ref = reference_logprobs(reference, arrays, cache, sides=sides)
        chosen, rejected = _logps(model, arrays, sides)
        chosen, rejected = chosen - ref[f"ref_{sides[0]}"], rejected - ref[f"ref_{sides[1]}"]
        if cfg.loss == "kto":
            d = arrays["desirable"]
            return {"log_ratio_gap": float(chosen[d].mean() - chosen[~d].mean())}
    margin = chosen - rejected
    return {"preference_accuracy": float((margin > 0).mean()), "margin": float(margin.mean())}


def _logps(model, arrays: dict, sides, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    keys = [f"{s}{x}" for s in sides for x in ("", "_mask", "_response")]
    parts = [pair_logprobs(model, {k: jnp.asarray(arrays[k][i:i + batch]) for k in keys}, sides)
             for i in range(0, len(arrays[sides[0]]), batch)]
    return tuple(np.concatenate([np.asarray(p[j]) for p in parts]) for j in (0, 1))


@nnx.jit
def _reward(model, tokens, mask):
    return model(tokens, attention_mask=mask)[0]


def _scores(model, arrays: dict, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    return tuple(np.concatenate([np.asarray(_reward(model, jnp.asarray(arrays[s][i:i + batch]),
                                                    jnp.asarray(arrays[f"{s}_mask"][i:i + batch])))
                                 for i in range(0, len(arrays[s]), batch)]) for s in ("chosen", "rejected"))


def run(cfg: Config) -> dict:
    t0 = time.perf_counter()
    policy, tok, bos, eos = load_policy(cfg.model_dir)  # (HF GPT-2's dropout is off as loaded: the reference's is)
    encode = lambda text: tok.pieces([text])[0]  # noqa: E731
    context = policy.config.block_size
    arrays, counts = encode_file(cfg, cfg.train_file, encode, bos, tok.pad_id, context)
    if cfg.valid_file:
        valid, valid_counts = encode_file(cfg, cfg.valid_file, encode, bos, tok.pad_id, context)
    else:  # the training data, or its first train_eval_examples: a million pairs need not all be scored again
        n = min(cfg.train_eval_examples or counts["examples"], counts["examples"])
        valid = {k: v[:n] for k, v in arrays.items()}
        valid_counts = f"the training data ({n:,} examples)" if n == counts["examples"] else (
            f"the first {n:,} training examples")
    print(f"{counts['examples']:,} training examples ({counts['rows_cut']:,} rows cut at the length limits); "
          f"{cfg.loss}, beta {cfg.beta}")
    workdir = Path(cfg.workdir)
    sides = ("completion", "kl") if cfg.loss == "kto" else ("chosen", "rejected")
    if cfg.loss == "reward":
        model, objective = RewardModel(policy, rngs=nnx.Rngs(cfg.train.seed)), reward_loss
    else:  # the loop trains a copy: ``policy`` stays the reference
        model = policy
        objective = (kto_objective(beta=cfg.beta) if cfg.loss == "kto" else
                     dpo_objective(beta=cfg.beta, loss_type=cfg.loss, label_smoothing=cfg.label_smoothing,
                                   gamma=cfg.gamma))
        arrays = {**arrays, **reference_logprobs(policy, arrays, workdir / "reference_logprobs.npz", sides=sides)}
    trained = train_on_pairs(model, objective, arrays, epochs=cfg.epochs, batch_size=cfg.batch_size,
                             optim_cfg=cfg.optim, workdir=workdir, config=cfg, train_cfg=cfg.train, sides=sides)
    cache = workdir / "valid_reference_logprobs.npz"  # (the training data's first examples: their own cache)
    scores = accuracy(cfg, trained, policy, valid, cache)
    ids = {"bos_token_id": bos, "eos_token_id": eos}
    export = (save_hf_reward_model(trained, workdir / "export", pad_token_id=tok.pad_id, tokenizer=tok, **ids)
              if cfg.loss == "reward" else save_hf_gpt2(trained, workdir / "export", tokenizer=tok, **ids))
    summary = {"status": "finished", "loss": cfg.loss, "beta": cfg.beta, "train": counts,
               "valid": valid_counts, **scores, "export": str(export),
               "wall_seconds": round(time.perf_counter() - t0, 1)}
    print(f"{'valid' if cfg.valid_file else valid_counts}: {scores}; exported to {export}")
    return write_summary(workdir, summary)
