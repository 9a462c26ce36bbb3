"""BERT at all-MiniLM-L6-v2's size: the SST-2 fine-tuning train step and inference, ours vs
``transformers.BertForSequenceClassification`` in PyTorch (CPU, same threads, same invocation).

    python benchmarks/bench_bert.py [--rounds 5] [--steps 5] [--batch 32] [--length 64]

Both sides load the same MiniLM weights and take the same padded batches (real SST-2 dev sentences padded
to ``--length``, with their padding masks): train step = forward, cross-entropy, backward, AdamW (the
gradient read back every step, as a training loop does); inference = forward, no dropout, logits read back.
Rounds are interleaved (ours, torch, ours, ...); rates are medians. ``--profile`` adds where our train
step's time goes: the same step's parts timed alone at the same shapes (forward and backward each).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from common import interleaved_seconds_per_step, median_time, print_table
from nlp_jax import kernels
from nlp_jax.data.sst2 import read_sst2
from nlp_jax.data.wordpiece import WordPieceTokenizer
from nlp_jax.models.bert import classification_loss
from nlp_jax.models.bert_hf import load_hf_bert, minilm_dir
from nlp_jax.train.config import OptimConfig
from nlp_jax.train.trainer import Objective, Trainer

OPTIM = OptimConfig(lr=5e-5, warmup_steps=0, weight_decay=0.01)


def batches(batch: int, length: int) -> list[dict]:
    tok = WordPieceTokenizer.from_pretrained(minilm_dir())
    texts, labels = read_sst2("dev")
    out = []
    for i in range(0, len(texts) - batch + 1, batch):
        enc = tok.encode(texts[i:i + batch], max_length=length)
        pad = length - enc["input_ids"].shape[1]
        enc = {k: np.pad(v, ((0, 0), (0, pad))) for k, v in enc.items()}
        out.append({**enc, "labels": labels[i:i + batch]})
    return out


def ours(data: list[dict], train: bool):
    model = load_hf_bert(minilm_dir(), head="classifier", dropout=0.0 if not train else 0.1)
    box = {"i": 0}
    if train:
        trainer = Trainer(model, Objective.of(classification_loss), OPTIM, 10_000)

        def step():
            float(trainer.step(data[box["i"] % len(data)])["loss"])
    else:
        forward = nnx.jit(lambda m, b: m(b["input_ids"], segments=b["token_type_ids"],
                                         attention_mask=b["attention_mask"])[0])
        device = [{k: jnp.asarray(v) for k, v in b.items()} for b in data]

        def step():
            np.asarray(forward(model, device[box["i"] % len(data)]))

    def run(n):
        for _ in range(n):
            step()
            box["i"] += 1

    return run


def torch_bert(data: list[dict], train: bool):
    import torch
    import transformers

    model = transformers.BertForSequenceClassification.from_pretrained(str(minilm_dir()), num_labels=2)
    model.train(train)
    tensors = [{k: torch.from_numpy(np.asarray(v).astype(np.int64)) for k, v in b.items()} for b in data]
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01)
    box = {"i": 0}

    def run(n):
        for _ in range(n):
            b = tensors[box["i"] % len(tensors)]
            inputs = dict(input_ids=b["input_ids"], token_type_ids=b["token_type_ids"],
                          attention_mask=b["attention_mask"])
            if train:
                loss = torch.nn.functional.cross_entropy(model(**inputs).logits, b["labels"])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                loss.item()
            else:
                with torch.inference_mode():
                    model(**inputs).logits.numpy()
            box["i"] += 1

    return run, torch.get_num_threads()


def profile(data: list[dict]) -> None:
    """Seconds of the whole fine-tuning step and of its parts, each jitted alone (forward + backward) at
    MiniLM's shapes, times the number of layers; the rest is embeddings, pooler, loss and AdamW."""
    model = load_hf_bert(minilm_dir(), head="classifier", dropout=0.1)
    cfg, trainer = model.config, Trainer(model, Objective.of(classification_loss), OPTIM, 10_000)
    b, t = data[0]["input_ids"].shape
    d, h, f, n = cfg.n_embd, cfg.n_head, cfg.n_inner, cfg.n_layer
    key = jax.random.key(0)
    x = jax.random.normal(key, (b, t, d))
    q = jax.random.normal(key, (b, t, h, d // h))
    mask = jnp.asarray(data[0]["attention_mask"])[:, None, None, :]

    def grad_time(fn, *args):
        g = jax.jit(jax.grad(lambda *a: jnp.sum(fn(*a))))
        return median_time(lambda: g(*args), sync=jax.block_until_ready)

    w = lambda i, o: jax.random.normal(key, (i, o)) * 0.02  # noqa: E731
    parts = {
        "attention core (QK^T, masked softmax, dropout, AV)": grad_time(  # the mask an argument, not a constant
            lambda q, m: kernels.attention(q, q, q, mask=m, dropout_rate=0.1, dropout_key=key), q, mask),
        "dense layers (QKV, output, MLP in and out)": grad_time(
            lambda x, a, o, i, p: kernels.dense(kernels.dense(x, a)[..., :d], o) + kernels.dense(
                kernels.dense(x, i), p), x, w(d, 3 * d), w(d, d), w(d, f), w(f, d)),
        "GELU on the MLP width": grad_time(kernels.gelu, jax.random.normal(key, (b, t, f))),
        "2 LayerNorms": grad_time(lambda x: kernels.layer_norm(kernels.layer_norm(x, jnp.ones(d)), jnp.ones(d)), x),
    }
    step = median_time(lambda: trainer.step(data[0])["loss"], sync=jax.block_until_ready)
    rows = [[name, f"{n * sec * 1e3:.1f}", f"{100 * n * sec / step:.0f}%"] for name, sec in parts.items()]
    rest = step - n * sum(parts.values())
    rows += [["rest (embeddings, pooler, loss, AdamW, dispatch)", f"{rest * 1e3:.1f}", f"{100 * rest / step:.0f}%"],
             ["whole train step", f"{step * 1e3:.1f}", "100%"]]
    print_table(f"where our MiniLM fine-tuning step goes ({n} layers, batch {b} x {t})",
                ["part", "ms per step", "share"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--profile", action="store_true", help="also time the parts of our train step")
    args = parser.parse_args()
    data = batches(args.batch, args.length)
    rows = []
    for name, train in (("fine-tuning train step", True), ("inference", False)):
        runners = {"nlp_jax": ours(data, train)}
        try:
            runners["torch"], threads = torch_bert(data, train)
            print(f"{name}: torch threads {threads}, jax devices {jax.devices()}")
        except ImportError:
            print("torch/transformers are not installed: timing ours only")
        seconds = interleaved_seconds_per_step(runners, rounds=args.rounds, steps=args.steps)
        rate = {k: args.batch / t for k, t in seconds.items()}
        rows.append([name, f"{rate['nlp_jax']:,.1f}", f"{rate['torch']:,.1f}" if "torch" in rate else "-",
                     f"{rate['nlp_jax'] / rate['torch']:.2f}x" if "torch" in rate else "-"])
    print_table(f"BERT (all-MiniLM-L6-v2 size) on SST-2 batches {args.batch} x {args.length}, median of "
                f"{args.rounds} rounds", ["workload", "ours sentences/s", "transformers (torch) sentences/s",
                                          "ratio"], rows)
    if args.profile:
        profile(data)


if __name__ == "__main__":
    main()
