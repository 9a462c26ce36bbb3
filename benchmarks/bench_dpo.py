"""DPO's train step and PPO's rollout sampler: ours vs ``transformers`` GPT-2 in PyTorch (CPU, same
threads, one invocation).

    python benchmarks/bench_dpo.py [--pairs 16] [--length 64] [--prompt 16] [--rollout 64] [--new 24]

Both sides hold the same GPT-2 weights (ours saved with ``save_hf_gpt2``, opened by
``transformers.GPT2LMHeadModel``). Train step: one forward and backward over the chosen and the rejected
rows together, the sigmoid DPO loss (beta 0.1) against precomputed reference log-probs, global-norm clip
and AdamW, the loss read back; tokens/s counts the real tokens of both rows. Sampler: ``--rollout``
prompts of ``--prompt`` tokens, ``--new`` tokens each at temperature 1 with a KV cache (ours: the one
sampler, jitted; torch: ``generate(do_sample=True, use_cache=True)``), new tokens/s. Rounds are
interleaved (ours, torch, ours, ...); rates are medians.
"""

from __future__ import annotations

import argparse
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from common import interleaved_seconds_per_step, print_table
from flax import nnx

from nlp_jax.models.gpt2 import GPT2, GPT2Config
from nlp_jax.models.gpt2_hf import save_hf_gpt2
from nlp_jax.models.sampler import sample
from nlp_jax.objectives import dpo_objective
from nlp_jax.train.config import OptimConfig
from nlp_jax.train.trainer import Trainer

CONFIG = GPT2Config(vocab_size=4096, block_size=128, n_layer=4, n_head=4, n_embd=192)  # the SFT policy's shape
OPTIM = OptimConfig(lr=1e-4, warmup_steps=0, weight_decay=0.0)
BETA = 0.1


def pairs(n: int, length: int, prompt: int, seed: int = 0, vocab_size: int = CONFIG.vocab_size
          ) -> dict[str, np.ndarray]:
    """Random preference pairs: a shared prompt, responses of random lengths, right padding."""
    rng = np.random.default_rng(seed)
    out = {}
    for side in ("chosen", "rejected"):
        lengths = rng.integers(prompt + 4, length + 1, n)
        ids = rng.integers(1, vocab_size, (n, length)).astype(np.int32)
        cols = np.arange(length)[None]
        out[side], out[f"{side}_mask"] = np.where(cols < lengths[:, None], ids, 0), cols < lengths[:, None]
        out[f"{side}_response"] = (cols >= prompt) & (cols < lengths[:, None])
    out["rejected"][:, :prompt] = out["chosen"][:, :prompt]
    out["ref_chosen"] = rng.normal(-300, 10, n).astype(np.float32)
    out["ref_rejected"] = rng.normal(-300, 10, n).astype(np.float32)
    return out


FIRST_LOSS: dict[str, float] = {}  # each side's loss at its first step: equal weights and batch, equal loss


def ours_dpo(model: GPT2, batch: dict):
    trainer = Trainer(nnx.clone(model), dpo_objective(beta=BETA), OPTIM, 10_000)
    device = {k: jnp.asarray(v) for k, v in batch.items()}

    def run(n):
        for _ in range(n):
            FIRST_LOSS.setdefault("nlp_jax", float(trainer.step(device)["loss"]))

    return run


def torch_dpo(path: str, batch: dict):
    import torch
    import transformers

    model = transformers.GPT2LMHeadModel.from_pretrained(path).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
    t = {k: torch.from_numpy(np.asarray(v)) for k, v in batch.items()}
    tokens = torch.cat([t["chosen"], t["rejected"]]).long()
    mask = torch.cat([t["chosen_mask"], t["rejected_mask"]]).long()
    response = torch.cat([t["chosen_response"], t["rejected_response"]])[:, 1:].float()
    ref = torch.cat([t["ref_chosen"], t["ref_rejected"]])

    def run(n):
        for _ in range(n):
            logits = model(input_ids=tokens, attention_mask=mask).logits[:, :-1]
            logp = torch.log_softmax(logits, -1).gather(-1, tokens[:, 1:, None])[..., 0]
            total = (logp * response).sum(-1)
            pw, pl = total.chunk(2)
            rw, rl = ref.chunk(2)
            loss = -torch.nn.functional.logsigmoid(BETA * ((pw - rw) - (pl - rl))).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            FIRST_LOSS.setdefault("torch", loss.item())

    return run, torch.get_num_threads()


def ours_sampler(model: GPT2, prompts: np.ndarray, new: int):
    box = {"i": 0}
    prompts = jnp.asarray(prompts)

    def run(n):
        for _ in range(n):
            s = sample(model, prompts, max_new_tokens=new, key=jax.random.key(box["i"]), temperature=1.0)
            np.asarray(s.tokens)
            box["i"] += 1

    return run


def torch_sampler(path: str, prompts: np.ndarray, new: int):
    import torch
    import transformers

    model = transformers.GPT2LMHeadModel.from_pretrained(path).eval()
    ids = torch.from_numpy(prompts).long()

    def run(n):
        for _ in range(n):
            with torch.inference_mode():
                model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, max_new_tokens=new,
                               min_new_tokens=new, use_cache=True, top_k=0, pad_token_id=0).numpy()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--prompt", type=int, default=16)
    parser.add_argument("--rollout", type=int, default=64)
    parser.add_argument("--new", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    model = GPT2(CONFIG, rngs=nnx.Rngs(0))
    batch = pairs(args.pairs, args.length, args.prompt)
    prompts = np.random.default_rng(1).integers(1, CONFIG.vocab_size, (args.rollout, args.prompt)).astype(np.int32)
    real = int(batch["chosen_mask"].sum() + batch["rejected_mask"].sum())
    rows = []
    with tempfile.TemporaryDirectory() as path:
        save_hf_gpt2(model, path)
        workloads = {"DPO train step (real tokens/s)": (ours_dpo(model, batch), lambda: torch_dpo(path, batch)[0],
                                                        real),
                     "rollout sampler (new tokens/s)": (ours_sampler(model, prompts, args.new),
                                                        lambda: torch_sampler(path, prompts, args.new),
                                                        args.rollout * args.new)}
        for name, (ours, torch_fn, tokens) in workloads.items():
            runners = {"nlp_jax": ours}
            try:
                runners["torch"] = torch_fn()
            except ImportError:
                print("torch/transformers are not installed: timing ours only")
            seconds = interleaved_seconds_per_step(runners, rounds=args.rounds, steps=args.steps)
            rate = {k: tokens / s for k, s in seconds.items()}
            rows.append([name, f"{rate['nlp_jax']:,.0f}", f"{rate['torch']:,.0f}" if "torch" in rate else "-",
                         f"{rate['nlp_jax'] / rate['torch']:.2f}x" if "torch" in rate else "-"])
    print(f"DPO loss at the first step (same weights, same batch): {FIRST_LOSS}")
    if len(FIRST_LOSS) == 2 and abs(FIRST_LOSS["nlp_jax"] - FIRST_LOSS["torch"]) > 1e-4 * abs(FIRST_LOSS["torch"]):
        raise SystemExit("the two sides computed different losses: the timing would not compare like with like")
    print_table(f"GPT-2 {CONFIG.n_layer} layers x {CONFIG.n_embd}, vocabulary {CONFIG.vocab_size}: DPO on {args.pairs} "
                f"pairs x {args.length}; sampling {args.rollout} x ({args.prompt} + {args.new})",
                ["workload", "ours", "transformers (torch)", "ratio"], rows)


if __name__ == "__main__":
    main()
