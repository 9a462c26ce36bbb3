"""A GRPO iteration and a DPO step with cached reference log-probs: ours against TRL's ``GRPOTrainer`` and
``DPOTrainer`` on the same GPT-2 weights (CPU, same threads, one invocation).

    python benchmarks/bench_rl.py [--prompts 16] [--samples 4] [--prompt 16] [--new 24] [--pairs 16]
                                  [--length 64] [--steps 8]

Both sides start from the same GPT-2 (ours saved with ``save_hf_gpt2``; TRL opens the directory) and read the
same token ids (a word-level tokenizer whose words are the ids, so TRL tokenizes the text back to them).

- GRPO iteration: ``--prompts`` prompts of ``--prompt`` tokens x ``--samples`` completions of ``--new``
  tokens from the current policy at temperature 1, a reward computed by a program from the token ids (1 when
  the completion holds id 5), group advantages, the reference's log-probs for a k3 KL (beta 0.04), and one
  clipped policy-gradient step (AdamW, global-norm clip 1). Ours: ``train.group_rl.GroupRollouts`` and the
  ``Trainer`` (``GroupRLConfig(prompts_per_rollout, samples, minibatches=1, epochs=1, kl_coef=0.04)``); TRL:
  ``GRPOTrainer`` with ``per_device_train_batch_size`` = prompts x samples, ``num_generations`` = samples,
  one generation a step, ``loss_type='grpo'``. Completions may end early only at id 1 (both sides).
- DPO step: ``--pairs`` pairs of ``--length`` tokens (a ``--prompt``-token prompt), sigmoid loss, beta 0.1,
  the reference's log-probs computed before the first step (ours: in the batch; TRL:
  ``precompute_ref_log_probs=True``, its precomputation not timed).

Seconds per step are medians of the steady steps (TRL: the intervals between its ``on_step_end`` callbacks,
after ``--warmup`` steps; ours: timed around each step), ours timed before and after TRL so that a drift in
the machine's speed shows.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from bench_dpo import BETA, CONFIG, OPTIM, ours_dpo, pairs
from common import print_table
from flax import nnx

from nlp_jax.models.gpt2 import GPT2
from nlp_jax.models.gpt2_hf import save_hf_gpt2
from nlp_jax.objectives import GroupRLConfig, group_rl_objective
from nlp_jax.train.group_rl import GroupRollouts
from nlp_jax.train.trainer import Trainer

KL = 0.04  # TRL's GRPO beta and ours kl_coef
EOS, PAD, GOOD = 1, 0, 5


def reward_of_ids(completions: list[list[int]]) -> list[float]:
    return [float(GOOD in c) for c in completions]


def ours_grpo(model: GPT2, prompts: np.ndarray, args) -> callable:
    cfg = GroupRLConfig(prompts_per_rollout=args.prompts, samples=args.samples, minibatches=1, epochs=1,
                        max_new_tokens=args.new, kl_coef=KL)
    source = GroupRollouts(prompts, np.ones(prompts.shape, bool), reference=nnx.clone(model), cfg=cfg, eos_id=EOS,
                           pad_id=PAD, reward_fn=lambda t, m, r: np.array(reward_of_ids(
                               [list(row[args.prompt:][mask[args.prompt:]]) for row, mask in zip(t, m)])))
    trainer = Trainer(nnx.clone(model), group_rl_objective(cfg, args.prompt), OPTIM, 10_000)
    source.bind(trainer)
    box = {"step": 0}

    def run(n: int) -> list[float]:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            jax.block_until_ready(trainer.step(source(box["step"])))
            times.append(time.perf_counter() - t0)
            box["step"] += 1
        return times

    return run


def id_tokenizer(directory: Path):
    """A word-level tokenizer whose words are ``t<id>``: TRL reads the text back to exactly our ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(CONFIG.vocab_size)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="t2"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="t0", eos_token="t1", unk_token="t2")
    fast.save_pretrained(directory)
    return fast


def text(ids) -> str:
    return " ".join(f"t{int(i)}" for i in ids)


class StepTimes:
    """A ``TrainerCallback`` keeping the wall time at every step's end."""

    def __new__(cls):
        from transformers import TrainerCallback

        class _Times(TrainerCallback):
            def __init__(self):
                self.ends = []

            def on_step_end(self, args, state, control, **kw):
                self.ends.append(time.perf_counter())

        return _Times()


def trl_args(config_cls, out: str, steps: int, batch: int, **kw):
    return config_cls(output_dir=out, max_steps=steps, per_device_train_batch_size=batch, learning_rate=OPTIM.lr,
                      lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
                      logging_steps=10_000, save_strategy="no", report_to="none", use_cpu=True, bf16=False,
                      dataloader_num_workers=0, disable_dropout=True, seed=0, **kw)


def trl_grpo(path: str, tokenizer, prompts: np.ndarray, args) -> list[float]:
    from datasets import Dataset
    from transformers import GPT2LMHeadModel
    from trl import GRPOConfig, GRPOTrainer

    times = StepTimes()
    steps = args.warmup + args.steps
    data = Dataset.from_dict({"prompt": [text(p) for p in prompts]})
    config = trl_args(GRPOConfig, f"{path}/grpo", steps, args.prompts * args.samples, num_generations=args.samples,
                      max_completion_length=args.new, steps_per_generation=1, num_iterations=1, beta=KL,
                      epsilon=0.2, loss_type="grpo", temperature=1.0)
    model = GPT2LMHeadModel.from_pretrained(path)
    model.generation_config.eos_token_id, model.generation_config.pad_token_id = EOS, PAD
    trainer = GRPOTrainer(model=model, reward_funcs=lambda completion_ids, **kw: reward_of_ids(completion_ids),
                          args=config, train_dataset=data, processing_class=tokenizer, callbacks=[times])
    trainer.train()
    return list(np.diff(times.ends)[args.warmup - 1:])


def trl_dpo(path: str, tokenizer, batch: dict, args) -> list[float]:
    from datasets import Dataset
    from transformers import GPT2LMHeadModel
    from trl import DPOConfig, DPOTrainer

    times = StepTimes()
    steps = args.warmup + args.steps
    rows = {"prompt": [], "chosen": [], "rejected": []}
    for i in range(len(batch["chosen"])):
        rows["prompt"].append(text(batch["chosen"][i, :args.prompt]))
        for side in ("chosen", "rejected"):
            rows[side].append(" " + text(batch[side][i][batch[f"{side}_response"][i]]))  # (TRL joins the texts)
    data = Dataset.from_dict({k: v * steps for k, v in rows.items()})  # every step the same pairs, as ours
    config = trl_args(DPOConfig, f"{path}/dpo", steps, args.pairs, beta=BETA, max_length=args.length,
                      precompute_ref_log_probs=True, loss_type=["sigmoid"])
    trainer = DPOTrainer(model=GPT2LMHeadModel.from_pretrained(path), args=config, train_dataset=data,
                         processing_class=tokenizer, callbacks=[times])
    trainer.train()
    return list(np.diff(times.ends)[args.warmup - 1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--prompt", type=int, default=16)
    parser.add_argument("--new", type=int, default=24)
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    model = GPT2(CONFIG, rngs=nnx.Rngs(0))
    prompts = np.random.default_rng(1).integers(6, CONFIG.vocab_size, (4 * args.prompts, args.prompt)).astype(np.int32)
    batch = pairs(args.pairs, args.length, args.prompt)
    grpo, dpo = ours_grpo(model, prompts, args), ours_dpo(model, batch)

    def ours_dpo_times(n):
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            dpo(1)
            out.append(time.perf_counter() - t0)
        return out

    ours = {"grpo": lambda n: grpo(n), "dpo": ours_dpo_times}
    for run in ours.values():
        run(args.warmup)  # compilation
    before = {k: run(args.steps) for k, run in ours.items()}
    peer = {}
    try:
        with tempfile.TemporaryDirectory() as path:
            save_hf_gpt2(model, path, bos_token_id=EOS, eos_token_id=EOS, pad_token_id=PAD)
            tokenizer = id_tokenizer(Path(path))
            peer = {"grpo": trl_grpo(path, tokenizer, prompts, args), "dpo": trl_dpo(path, tokenizer, batch, args)}
    except ImportError as err:
        print(f"TRL is not installed ({err}): timing ours only (pip install -e '.[peers]')")
    after = {k: run(args.steps) for k, run in ours.items()}
    rows = []
    for name, label in (("grpo", f"GRPO iteration ({args.prompts} prompts x {args.samples} samples x {args.new} "
                                 "new tokens, one update)"),
                        ("dpo", f"DPO step ({args.pairs} pairs x {args.length} tokens, cached reference)")):
        ours_s = statistics.median(before[name] + after[name])
        drift = statistics.median(after[name]) / statistics.median(before[name])
        row = [label, f"{ours_s * 1e3:.1f} ms (after / before {drift:.2f})"]
        if name in peer:
            trl_s = statistics.median(peer[name])
            row += [f"{trl_s * 1e3:.1f} ms", f"{trl_s / ours_s:.2f}x"]
        else:
            row += ["-", "-"]
        rows.append(row)
    print_table(f"GPT-2 {CONFIG.n_layer} layers x {CONFIG.n_embd}, vocabulary {CONFIG.vocab_size}, CPU "
                f"({jax.device_count()} JAX device)", ["workload", "ours (median s/step)", "TRL", "ours faster by"],
                rows)


if __name__ == "__main__":
    main()
