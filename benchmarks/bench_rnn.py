"""LSTM language-model training step: ours vs ``torch.nn.LSTM`` (same sizes, batch, CPU, same invocation).

    python benchmarks/bench_rnn.py [--configs small medium] [--rounds 5] [--steps 10]

Zaremba et al.'s configs: small (2 x 200, BPTT 35, batch 20), medium (2 x 650); vocabulary 10,000; the
whole step (embedding, LSTM layers with the carried state, 10k-way softmax, loss summed over time,
backward, clip 5, SGD). Rounds are interleaved (ours, torch, ours, ...); tokens/s are medians.
"""

from __future__ import annotations

import argparse

import numpy as np
from common import interleaved_seconds_per_step, print_table
from flax import nnx

from nlp_jax.data.corpus import SequentialBlocks
from nlp_jax.models.rnn_lm import RNNLM, RNNLMConfig
from nlp_jax.objectives import Objective, bptt_loss
from nlp_jax.train.config import OptimConfig
from nlp_jax.train.trainer import Trainer

SIZES = {"small": 200, "medium": 650}
VOCAB, BATCH, BPTT = 10_000, 20, 35


def ours(hidden: int, data: np.ndarray, compute_dtype: str = "float32"):
    """``Trainer.step`` with the carried state, reading the loss back every step (as the torch loop does)."""
    model = RNNLM(RNNLMConfig(vocab_size=VOCAB, hidden=hidden, compute_dtype=compute_dtype), rngs=nnx.Rngs(0))
    optim = OptimConfig(name="sgd", lr=1.0, schedule="constant", warmup_steps=0, grad_clip=5.0)
    objective = Objective(bptt_loss, init_state=lambda: model.init_carry(BATCH))
    trainer = Trainer(model, objective, optim, 1000)
    source = SequentialBlocks(data, BATCH, BPTT)

    def run(n):
        for _ in range(n):
            float(trainer.step(source(trainer.step_count))["loss"])

    return run


def torch_lstm(hidden: int, data: np.ndarray, device: str = "cpu"):
    """The same step in PyTorch on ``device`` ('cuda': cuDNN's LSTM); ``loss.item()`` synchronises."""
    import torch

    torch.manual_seed(0)
    emb, lstm = torch.nn.Embedding(VOCAB, hidden), torch.nn.LSTM(hidden, hidden, num_layers=2, batch_first=True)
    out = torch.nn.Linear(hidden, VOCAB)
    emb, lstm, out = (m.to(device) for m in (emb, lstm, out))
    params = [*emb.parameters(), *lstm.parameters(), *out.parameters()]
    opt = torch.optim.SGD(params, lr=1.0)
    source = SequentialBlocks(data, BATCH, BPTT)
    box = {"state": None, "step": 0}

    def run(n):
        for _ in range(n):
            batch = source(box["step"])
            x, y = (torch.from_numpy(batch[k].astype(np.int64)).to(device) for k in ("inputs", "targets"))
            h, state = lstm(emb(x), box["state"])
            loss = torch.nn.functional.cross_entropy(out(h).reshape(-1, VOCAB), y.reshape(-1)) * BPTT
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            box["state"] = tuple(s.detach() for s in state)
            loss.item()
            box["step"] += 1

    return run, torch.get_num_threads()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["small", "medium"], choices=list(SIZES))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    data = np.random.default_rng(0).integers(0, VOCAB, 200_000)
    rows = []
    for name in args.configs:
        runners = {"nlp_jax": ours(SIZES[name], data)}
        try:
            runners["torch"], threads = torch_lstm(SIZES[name], data)
            print(f"{name}: torch threads {threads}")
        except ImportError:
            print("torch is not installed: timing ours only")
        seconds = interleaved_seconds_per_step(runners, rounds=args.rounds, steps=args.steps)
        tok = {k: BATCH * BPTT / t for k, t in seconds.items()}
        rows.append([name, f"{tok['nlp_jax']:,.0f}", f"{tok['torch']:,.0f}" if "torch" in tok else "-",
                     f"{tok['nlp_jax'] / tok['torch']:.2f}x" if "torch" in tok else "-"])
    print_table(f"LSTM LM train step, batch {BATCH} x BPTT {BPTT}, vocab {VOCAB}, median of {args.rounds} rounds",
                ["config", "ours tokens/s", "torch.nn.LSTM tokens/s", "ratio"], rows)


if __name__ == "__main__":
    main()
