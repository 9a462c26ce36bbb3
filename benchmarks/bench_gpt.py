"""GPT train step on nanoGPT's shakespeare_char CPU config: ours vs nanoGPT's own model and optimizer.

    NANOGPT_DIR=/path/to/nanoGPT python benchmarks/bench_gpt.py [--rounds 5] [--steps 20]

Both run the same step as their training loops do (host batch sampling, forward, backward, global-norm
clip, AdamW, reading the loss), in the same process, in interleaved rounds (ours, nanoGPT, ours, ...);
the median ms/iter per side is reported. nanoGPT is imported from the checkout that ``NANOGPT_DIR``
names (never vendored); without it, only ours is timed.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
from common import interleaved_seconds_per_step, print_table
from flax import nnx

from nlp_jax.data.corpus import RandomBlocks, load_char_corpus
from nlp_jax.models.gpt2 import GPT2
from nlp_jax.objectives import Objective, lm_loss
from nlp_jax.run import load_experiment
from nlp_jax.train.trainer import Trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ours(cfg, data):
    """``Trainer.step`` as ``train`` runs it, plus reading the loss back every step (as nanoGPT's loop does)."""
    trainer = Trainer(GPT2(cfg.model, rngs=nnx.Rngs(0)), Objective.of(lm_loss), cfg.optim, cfg.train.steps)
    source = RandomBlocks(data, cfg.data.batch_size, cfg.model.block_size, seed=0)

    def run(n):
        for _ in range(n):
            float(trainer.step(source(trainer.step_count))["loss"])

    return run


def nanogpt(cfg, data, nanogpt_dir):
    sys.path.insert(0, nanogpt_dir)
    import torch
    from model import GPT, GPTConfig  # nanoGPT's model.py

    m = cfg.model
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=m.block_size, vocab_size=m.vocab_size, n_layer=m.n_layer, n_head=m.n_head,
                          n_embd=m.n_embd, dropout=m.dropout, bias=m.bias))
    optimizer = model.configure_optimizers(cfg.optim.weight_decay, cfg.optim.lr,
                                           (cfg.optim.beta1, cfg.optim.beta2), "cpu")
    data_t = torch.from_numpy(data.astype(np.int64))
    b, t = cfg.data.batch_size, m.block_size

    def get_batch():  # nanoGPT's get_batch
        ix = torch.randint(len(data_t) - t, (b,))
        return (torch.stack([data_t[i:i + t] for i in ix]), torch.stack([data_t[i + 1:i + 1 + t] for i in ix]))

    def run(n):
        for _ in range(n):
            x, y = get_batch()
            _, loss = model(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            loss.item()

    return run, torch.get_num_threads()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="cpu")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed round")
    args = parser.parse_args()
    module, _ = load_experiment(os.path.join(ROOT, "experiments", "gpt_shakespeare_char.py"))
    cfg = module.get_config(args.config)
    data = load_char_corpus(cfg.data.path).train
    runners = {"nlp_jax": ours(cfg, data)}
    nano_dir = os.environ.get("NANOGPT_DIR")
    if nano_dir:
        runners["nanoGPT"], threads = nanogpt(cfg, data, nano_dir)
        print(f"nanoGPT from {nano_dir}, torch threads {threads}")
    else:
        print("NANOGPT_DIR is not set: timing ours only (clone https://github.com/karpathy/nanoGPT to compare)")
    seconds = interleaved_seconds_per_step(runners, rounds=args.rounds, steps=args.steps, warmup=5)
    tokens = cfg.data.batch_size * cfg.model.block_size
    ms = {name: t * 1e3 for name, t in seconds.items()}
    rows = [[name, f"{ms[name]:.1f}", f"{tokens / ms[name] * 1e3:,.0f}",
             f"{ms['nanoGPT'] / ms[name]:.2f}x" if "nanoGPT" in ms else "-"] for name in runners]
    print_table(f"GPT train step, shakespeare_char '{args.config}' config ({tokens} tokens/step), median of "
                f"{args.rounds} rounds x {args.steps} steps", ["impl", "ms/iter", "tokens/s", "speed vs nanoGPT"], rows)


if __name__ == "__main__":
    main()
