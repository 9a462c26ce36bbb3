"""BERT at all-MiniLM-L6-v2's size: the SST-2 fine-tuning train step and inference, ours vs
``transformers.BertForSequenceClassification`` in PyTorch (CPU, same threads, same invocation).

    python benchmarks/bench_bert.py [--rounds 5] [--steps 5] [--batch 32] [--length 64]

Both sides load the same MiniLM weights and take the same padded batches (real SST-2 dev sentences padded
to ``--length``, with their padding masks): train step = forward, cross-entropy, backward, AdamW (the
gradient read back every step, as a training loop does); inference = forward, no dropout, logits read back.
Each workload runs twice: ours as the package runs it (the last block computes [CLS] alone, since only
the classifier's logits are read) and ours doing transformers' work (every position of the last block).
Rounds are interleaved (ours, torch, ours, ...); rates are medians. ``--profile`` adds where our train
step's time goes: the same step's parts timed alone at the same shapes (forward and backward each).
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from common import interleaved_seconds_per_step, median_time, print_table
from flax import nnx

from nlp_jax import kernels
from nlp_jax.data.sst2 import read_sst2
from nlp_jax.data.wordpiece import WordPieceTokenizer
from nlp_jax.models.bert_hf import load_hf_bert, minilm_dir
from nlp_jax.objectives import Objective, classification_loss
from nlp_jax.train.config import OptimConfig
from nlp_jax.train.trainer import Trainer

OPTIM = OptimConfig(lr=5e-5, warmup_steps=0, weight_decay=0.01)
# (name, train, all_hidden): ours as the package runs it ([CLS]-only last block), then the same work as
# transformers (every position of the last block); the torch side is the same in both
WORKLOADS = (("fine-tuning train step", True, False), ("fine-tuning train step, full last block", True, True),
             ("inference", False, False), ("inference, full last block", False, True))


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


def ours(data: list[dict], train: bool, all_hidden: bool):
    """Our runner: ``all_hidden=False`` is what ``make bert-sst2`` and the classify command run (the last
    block computes [CLS] alone); True computes every position of the last block, as transformers does."""
    model = load_hf_bert(minilm_dir(), head="classifier", dropout=0.0 if not train else 0.1)
    box = {"i": 0}
    if train:
        loss = classification_loss if not all_hidden else functools.partial(classification_loss, all_hidden=True)
        trainer = Trainer(model, Objective.of(loss), OPTIM, 10_000)

        def step():
            float(trainer.step(dict(data[box["i"] % len(data)]))["loss"])
    else:
        forward = nnx.jit(lambda m, b: m(b["input_ids"], segments=b["token_type_ids"],
                                         attention_mask=b["attention_mask"], all_hidden=all_hidden)[0])
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
    """Seconds of the whole fine-tuning step and of its parts, each jitted alone (forward and backward,
    with a random cotangent: the gradient of a sum would let XLA simplify the backward) at MiniLM's shapes,
    the per-layer parts times the number of layers; the rest is what the parts do not cover."""
    model = load_hf_bert(minilm_dir(), head="classifier", dropout=0.1)
    cfg, trainer = model.config, Trainer(model, Objective.of(classification_loss), OPTIM, 10_000)
    b, t = data[0]["input_ids"].shape
    d, h, f, n = cfg.n_embd, cfg.n_head, cfg.n_inner, cfg.n_layer
    key = jax.random.key(0)
    normal = lambda *shape: jax.random.normal(key, shape)  # noqa: E731
    mask = jnp.asarray(data[0]["attention_mask"])[:, None, None, :]

    def vjp_time(fn, *args):
        ct = normal(*jax.eval_shape(fn, *args).shape)
        g = jax.jit(lambda ct, *a: jax.vjp(fn, *a)[1](ct))
        return median_time(lambda: g(ct, *args), sync=jax.block_until_ready)

    def dense(i, o):
        return vjp_time(kernels.dense, normal(b, t, i), normal(i, o) * 0.02)

    params = [jnp.copy(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]

    def apply(p, s, g):
        updates, s = trainer.tx.update(g, s, p)
        return optax.apply_updates(p, updates), s

    update = jax.jit(apply, donate_argnums=(0, 1))
    box = [params, trainer.tx.init(params)]
    grads = [jnp.full_like(x, 1e-3) for x in params]

    def optimizer_step():
        box[0], box[1] = update(box[0], box[1], grads)
        return box[0]

    word = model.bert.embeddings.word.embedding[...]
    per_layer = {
        "attention core (QK^T, masked softmax, dropout, AV)": vjp_time(  # the mask an argument, not a constant
            lambda q, m: kernels.attention(q, q, q, mask=m, dropout_rate=0.1, dropout_key=key), normal(b, t, h, d // h),
            mask),
        "QKV dense (384 -> 1152)": dense(d, 3 * d),
        "attention output dense (384 -> 384)": dense(d, d),
        "MLP in dense (384 -> 1536)": dense(d, f),
        "MLP out dense (1536 -> 384)": dense(f, d),
        "GELU on the MLP width": vjp_time(kernels.gelu, normal(b, t, f)),
        "2 LayerNorms": vjp_time(lambda x: kernels.layer_norm(kernels.layer_norm(x, jnp.ones(d)), jnp.ones(d)),
                                 normal(b, t, d)),
    }
    once = {
        "word embedding lookup and its dense gradient (30,522 x 384)": vjp_time(
            lambda w: w[jnp.asarray(data[0]["input_ids"])], word),
        "clip + AdamW over all 22.7M parameters": median_time(optimizer_step, sync=jax.block_until_ready),
    }
    step = median_time(lambda: trainer.step(dict(data[0]))["loss"], sync=jax.block_until_ready)
    rows = [[f"{name} (x {n})", f"{n * sec * 1e3:.1f}", f"{100 * n * sec / step:.0f}%"]
            for name, sec in per_layer.items()]
    rows += [[name, f"{sec * 1e3:.1f}", f"{100 * sec / step:.0f}%"] for name, sec in once.items()]
    rest = step - n * sum(per_layer.values()) - sum(once.values())
    rows += [["rest (other elementwise work, pooler, loss, dispatch, lost fusion)", f"{rest * 1e3:.1f}",
              f"{100 * rest / step:.0f}%"], ["whole train step", f"{step * 1e3:.1f}", "100%"]]
    print_table(f"where our MiniLM fine-tuning step goes ({n} layers, batch {b} x {t})",
                ["part", "ms per step", "share"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the parts of our train step")
    args = parser.parse_args()
    data = batches(args.batch, args.length)
    rows = []
    for name, train, all_hidden in WORKLOADS:
        runners = {"nlp_jax": ours(data, train, all_hidden)}
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
