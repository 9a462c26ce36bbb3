"""Run by tests/train/test_sharding.py in a subprocess with 8 forced host devices (the XLA flag must be set
before JAX starts): trains the same tiny models on one device and on meshes, prints one JSON object."""

import json
import os
import sys
import tempfile

os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8"

import jax  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402
from tiny_gpt_run import GPT, OPTIM, SOURCE  # noqa: E402

from nlp_jax.data.corpus import RandomBlocks  # noqa: E402
from nlp_jax.data.translation import TokenBudgetBatches, with_end  # noqa: E402
from nlp_jax.models.bert import BertClassifier, BertConfig  # noqa: E402
from nlp_jax.models.gpt2 import GPT2  # noqa: E402
from nlp_jax.models.rnn_lm import RNNLM, RNNLMConfig  # noqa: E402
from nlp_jax.models.seq2seq import LSTMSeq2Seq, Seq2SeqConfig  # noqa: E402
from nlp_jax.models.transformer_seq2seq import TransformerSeq2Seq, TransformerSeq2SeqConfig  # noqa: E402
from nlp_jax.objectives import Objective, bptt_loss, classification_loss, lm_loss, seq2seq_loss  # noqa: E402
from nlp_jax.train.checkpoint import Checkpointer  # noqa: E402
from nlp_jax.train.config import MeshConfig, OptimConfig, TrainConfig  # noqa: E402
from nlp_jax.train.loop import train  # noqa: E402
from nlp_jax.train.sharding import make_mesh  # noqa: E402
from nlp_jax.train.trainer import Trainer  # noqa: E402

MESHES = {"dp": (8, 1), "fsdp": (1, 8), "dp_fsdp": (2, 4)}
STEPS = 3


def mesh(name):
    data, fsdp = MESHES[name]
    return make_mesh(MeshConfig(data=data, fsdp=fsdp))


def gpt_trainer(m):
    return Trainer(GPT2(GPT, rngs=nnx.Rngs(0)), lm_loss, OPTIM, 10, mesh=m)


def run(trainer, batches):
    losses = [float(trainer.step(dict(b))["loss"]) for b in batches]
    return losses, [np.asarray(x) for x in jax.tree.leaves(nnx.state(trainer.model, nnx.Param))]


def max_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(a, b) if np.size(x))


def lstm_run(m):
    cfg = RNNLMConfig.tiny(hidden=16, dropout=0.2)
    rng = np.random.default_rng(0)
    batches = [{k: rng.integers(0, 23, (8, 12)).astype(np.int32) for k in ("inputs", "targets")} for _ in range(STEPS)]
    model = RNNLM(cfg, rngs=nnx.Rngs(0))
    objective = Objective(bptt_loss, init_state=lambda: model.init_carry(8))  # a (B, H) carry as objective state
    return run(Trainer(model, objective, OptimConfig(name="sgd", lr=0.5, warmup_steps=0), 10, mesh=m), batches)


def family_runs(m, family):
    """(losses, parameters) of 3 AdamW steps of one more model family, on one device (``m`` None) or a mesh:
    the encoder-decoders on token-budget batches of 6 pairs (the mesh pads them to 8 with masked rows), the
    BERT classifier on sentence batches of 8."""
    rng = np.random.default_rng(0)
    if family == "bert":
        model = BertClassifier(BertConfig.tiny(), num_labels=3, rngs=nnx.Rngs(0))
        batches = [{"input_ids": rng.integers(5, 50, (8, 12)).astype(np.int32),
                    "token_type_ids": np.zeros((8, 12), np.int32), "attention_mask": np.arange(12) < rng.integers(
                        3, 13, (8, 1)), "labels": rng.integers(0, 3, 8).astype(np.int32)} for _ in range(STEPS)]
        return run(Trainer(model, classification_loss, OPTIM, 10, mesh=m), batches)
    pairs = [(rng.integers(4, 31, rng.integers(3, 9)), rng.integers(4, 29, rng.integers(3, 9))) for _ in range(18)]
    source = TokenBudgetBatches(with_end([s for s, _ in pairs], 16), with_end([t for _, t in pairs], 16), 6 * 16,
                                seed=3, multiple=16, rows_multiple=1 if m is None else m.size)
    model = (TransformerSeq2Seq(TransformerSeq2SeqConfig.tiny(), rngs=nnx.Rngs(0)) if family == "transformer"
             else LSTMSeq2Seq(Seq2SeqConfig.tiny(), rngs=nnx.Rngs(0)))
    return run(Trainer(model, seq2seq_loss, OPTIM, 10, mesh=m), [source(i) for i in range(STEPS)])


def fsdp_shards(trainer):
    """(fraction of the parameter values in arrays split over fsdp, whether each such array's shards are
    1/8 of it on every device)."""
    params = jax.tree.leaves(nnx.state(trainer.model, nnx.Param))
    split = [p for p in params if "fsdp" in tuple(p.sharding.spec)]
    eighths = all(s.data.size * 8 == p.size for p in split for s in p.addressable_shards)
    return sum(p.size for p in split) / sum(p.size for p in params), eighths, len(split[0].addressable_shards)


@nnx.jit
def val_loss(model, batch):  # one program: eager ops' collectives in flight together can starve the threads
    return lm_loss(model, batch, None)[0]


def loop_losses(workdir, m):
    cfg = TrainConfig(steps=4, log_every=1, eval_every=2, ckpt_every=2, progress=False,
                      mesh=MeshConfig(data=m[0], fsdp=m[1]))
    _, result = train(GPT2(GPT, rngs=nnx.Rngs(0)), lm_loss, SOURCE, train_cfg=cfg, optim_cfg=OPTIM, workdir=workdir,
                      eval_fn=lambda model: {"val_loss": float(val_loss(model, SOURCE(99)))})
    return [result.losses[s] for s in sorted(result.losses)], result.evals[-1]["val_loss"]


def main():
    out = {"devices": jax.device_count()}
    batches = [SOURCE(i) for i in range(STEPS)]
    ref_losses, ref_params = run(gpt_trainer(None), batches)
    lstm_losses, lstm_params = lstm_run(None)
    for name in MESHES:
        trainer = gpt_trainer(mesh(name))
        losses, params = run(trainer, batches)
        out[name] = {"loss": max_diff([losses], [ref_losses]), "params": max_diff(params, ref_params)}
        losses, params = lstm_run(mesh(name))
        out[name]["lstm_loss"] = max_diff([losses], [lstm_losses]) / max(abs(x) for x in lstm_losses)
        out[name]["lstm_params"] = max_diff(params, lstm_params)
        if name == "fsdp":
            out["fsdp_fraction"], out["fsdp_eighths"], out["fsdp_devices"] = fsdp_shards(trainer)
            with tempfile.TemporaryDirectory() as d:  # saved from 1 x 8, restored onto 2 x 4 and one device
                ckpt = Checkpointer(d)
                trainer.save(ckpt, {})
                nexts = []
                for target in ("dp_fsdp", None):
                    other = gpt_trainer(mesh(target) if target else None)
                    other.restore(ckpt)
                    out[f"restore_{target}"] = max_diff(other.leaves, trainer.leaves)
                    nexts.append(float(other.step(SOURCE(STEPS))["loss"]))
                nexts.append(float(trainer.step(SOURCE(STEPS))["loss"]))
                out["restore_next_loss"] = max(nexts) - min(nexts)
                ckpt.close()
    for family in ("transformer", "lstm_seq2seq", "bert"):  # every other family, on the 2 x 4 mesh
        (one_losses, one_params), (losses, params) = family_runs(None, family), family_runs(mesh("dp_fsdp"), family)
        out[family] = {"loss": max_diff([losses], [one_losses]) / max(abs(x) for x in one_losses),
                       "params": max_diff(params, one_params)}
    try:
        gpt_trainer(mesh("dp")).step(RandomBlocks(SOURCE.data, 6, 16, seed=1)(0))
    except ValueError as err:
        out["batch_error"] = str(err)
    with tempfile.TemporaryDirectory() as d:
        one, one_val = loop_losses(f"{d}/one", (1, 1))
        grid, grid_val = loop_losses(f"{d}/grid", (2, 4))
        out["loop"] = {"loss": max_diff([grid], [one]), "val_loss": abs(grid_val - one_val)}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
