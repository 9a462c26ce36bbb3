"""Encoder-decoder training step: ours vs the same architecture in PyTorch (same sizes, batch, optimizer,
CPU, one invocation), and beam search's sentences/s.

    python benchmarks/bench_seq2seq.py [--rounds 5] [--steps 5] [--batch 64] [--length 24]

- ``lstm``: ``translate.py:lstm_additive``'s model (embeddings 256, a bidirectional LSTM of 2 x 128, an LSTM
  decoder of 256 with Bahdanau's additive attention of width 128, dropout 0.2 on the embeddings and before
  the tanh output layer tied to the target embedding, vocabulary 8,000) against ``nn.LSTM(bidirectional=True)``
  + an ``nn.LSTMCell`` loop with the same attention, dropout and output layers.
- ``transformer``: ``translate.py:transformer``'s (4 + 4 pre-LN layers, 128 wide, 4 heads, feed-forward
  512, dropout 0.1, tied output) against ``nn.Transformer(norm_first=True)`` with the same embeddings.

Each step: forward on a (batch, length) source and target, cross-entropy, backward, clip 1, Adam, the
loss read back. Rounds are interleaved (ours, torch, ours, ...); tokens/s count target tokens (medians).
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
from common import interleaved_seconds_per_step, print_table
from flax import nnx

from nlp_jax.models.beam import beam_search
from nlp_jax.models.seq2seq import LSTMSeq2Seq, Seq2SeqConfig
from nlp_jax.models.transformer_seq2seq import TransformerSeq2Seq, TransformerSeq2SeqConfig
from nlp_jax.objectives import seq2seq_loss
from nlp_jax.train.config import OptimConfig
from nlp_jax.train.trainer import Trainer

VOCAB = 8000
LSTM = Seq2SeqConfig(src_vocab=VOCAB, tgt_vocab=VOCAB, hidden=128, attn_dim=128, dropout=0.2)  # translate.py's
TRANSFORMER = TransformerSeq2SeqConfig(src_vocab=VOCAB, tgt_vocab=VOCAB, d_model=128, d_ff=512)  # and its


def batch_of(b: int, t: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    src, tgt = rng.integers(4, VOCAB, (b, t)).astype(np.int32), rng.integers(4, VOCAB, (b, t)).astype(np.int32)
    target_in = np.concatenate([np.full((b, 1), 2, np.int32), tgt[:, :-1]], axis=1)
    return {"source": src, "source_mask": np.ones((b, t), bool), "target_in": target_in, "target_out": tgt,
            "target_mask": np.ones((b, t), bool)}


def ours(model, batch):
    trainer = Trainer(model, seq2seq_loss, OptimConfig(lr=1e-3, warmup_steps=0, schedule="constant",
                                                       weight_decay=0.0, grad_clip=1.0), 10_000)

    def run(n):
        for _ in range(n):
            float(trainer.step(dict(batch))["loss"])

    return run


def torch_lstm(batch):
    import torch
    from torch import nn

    class Model(nn.Module):
        def __init__(self, e=LSTM.emb, h=LSTM.hidden, a=LSTM.attn_dim):
            super().__init__()
            self.drop = nn.Dropout(LSTM.dropout)
            self.src, self.tgt = nn.Embedding(VOCAB, e), nn.Embedding(VOCAB, e)
            self.enc = nn.LSTM(e, h, batch_first=True, bidirectional=True)
            self.init = nn.Linear(2 * h, 2 * h)
            self.dec = nn.LSTMCell(e + 2 * h, 2 * h)
            self.w_q, self.w_k = nn.Linear(2 * h, a, bias=False), nn.Linear(2 * h, a, bias=False)
            self.v = nn.Linear(a, 1, bias=False)
            self.out, self.vocab_b = nn.Linear(4 * h + e, e), nn.Parameter(torch.zeros(VOCAB))

        def forward(self, src, tgt_in):
            states, (h_n, _) = self.enc(self.drop(self.src(src)))  # (B, S, 2H)
            h = torch.tanh(self.init(torch.cat([h_n[0], h_n[1]], -1)))
            c, keys = torch.zeros_like(h), self.w_k(states)
            e = self.drop(self.tgt(tgt_in))
            outs = []
            for i in range(tgt_in.shape[1]):
                alpha = torch.softmax(self.v(torch.tanh(self.w_q(h)[:, None] + keys))[..., 0], -1)
                ctx = torch.einsum("bs,bsd->bd", alpha, states)
                h, c = self.dec(torch.cat([e[:, i], ctx], -1), (h, c))
                outs.append(torch.cat([h, ctx, e[:, i]], -1))
            return torch.tanh(self.out(self.drop(torch.stack(outs, 1)))) @ self.tgt.weight.T + self.vocab_b

    return _torch_runner(Model(), batch)


def torch_transformer(batch):
    import torch
    from torch import nn

    class Model(nn.Module):
        def __init__(self, d=TRANSFORMER.d_model, max_len=TRANSFORMER.max_len):
            super().__init__()
            self.src, self.tgt = nn.Embedding(VOCAB, d), nn.Embedding(VOCAB, d)
            self.src_pos, self.tgt_pos = nn.Embedding(max_len, d), nn.Embedding(max_len, d)
            cfg = TRANSFORMER
            self.core = nn.Transformer(d, cfg.n_head, cfg.enc_layers, cfg.dec_layers, cfg.d_ff, dropout=cfg.dropout,
                                       batch_first=True, norm_first=True)

        def forward(self, src, tgt_in):
            pos_s, pos_t = torch.arange(src.shape[1]), torch.arange(tgt_in.shape[1])
            causal = nn.Transformer.generate_square_subsequent_mask(tgt_in.shape[1])
            h = self.core(self.src(src) + self.src_pos(pos_s), self.tgt(tgt_in) + self.tgt_pos(pos_t), tgt_mask=causal,
                          tgt_is_causal=True)
            return h @ self.tgt.weight.T

    return _torch_runner(Model(), batch)


def _torch_runner(model, batch):
    import torch

    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    src, tin = (torch.from_numpy(batch[k].astype(np.int64)) for k in ("source", "target_in"))
    tout = torch.from_numpy(batch["target_out"].astype(np.int64))

    def run(n):
        for _ in range(n):
            loss = torch.nn.functional.cross_entropy(model(src, tin).reshape(-1, VOCAB), tout.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            loss.item()

    return run


def beam_rate(model, b: int, t: int) -> float:
    batch = batch_of(b, t, seed=1)
    kw = dict(beam=5, max_len=t + 8, bos_id=2, eos_id=3)
    jax.block_until_ready(beam_search(model, batch["source"], batch["source_mask"], **kw))  # compile
    t0 = time.perf_counter()
    jax.block_until_ready(beam_search(model, batch["source"], batch["source_mask"], **kw))
    return b / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--length", type=int, default=24)
    args = parser.parse_args()
    batch = batch_of(args.batch, args.length)
    models = {"lstm": (LSTMSeq2Seq(LSTM, rngs=nnx.Rngs(0)), torch_lstm),
              "transformer": (TransformerSeq2Seq(TRANSFORMER, rngs=nnx.Rngs(0)), torch_transformer)}
    rows = []
    for name, (model, peer) in models.items():
        runners = {"nlp_jax": ours(model, batch)}
        try:
            runners["torch"] = peer(batch)
        except ImportError:
            print("torch is not installed: timing ours only")
        seconds = interleaved_seconds_per_step(runners, rounds=args.rounds, steps=args.steps)
        tok = {k: args.batch * args.length / s for k, s in seconds.items()}
        rows.append([name, f"{tok['nlp_jax']:,.0f}", f"{tok['torch']:,.0f}" if "torch" in tok else "-",
                     f"{tok['nlp_jax'] / tok['torch']:.2f}x" if "torch" in tok else "-",
                     f"{beam_rate(model, args.batch, args.length):,.1f}"])
    print_table(f"Encoder-decoder train step, batch {args.batch} x {args.length} source and target pieces, vocab "
                f"{VOCAB}, median of {args.rounds} rounds",
                ["model", "ours target tokens/s", "PyTorch tokens/s", "ratio", "ours beam-5 sentences/s"], rows)


if __name__ == "__main__":
    main()
