"""``make gpu-check``'s table of every model family beside its PyTorch peer on the same device (``gpu_check.py``
sections ``bert``, ``seq2seq``, ``dpo``, ``grpo``): BERT fine-tuning against ``transformers``'
``BertForSequenceClassification``, the transformer encoder-decoder's train step against ``torch.nn.Transformer``
(and our beam search's sentences/s), DPO's train step and a GRPO-style rollout + update against
``transformers``' GPT-2. Both sides start from the same weights (ours saved as a Hugging Face directory, which
``transformers`` opens), take the same batches, and compute in bfloat16 where the device is a GPU (ours:
``compute_dtype``; torch: autocast); rounds are interleaved and each row is a median. The torch sides are
written here, from the equations, as ``benchmarks/bench_*.py`` write their CPU ones."""

from __future__ import annotations

import functools
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from common import interleaved_seconds_per_step
from flax import nnx

from nlp_jax.train.config import OptimConfig
from nlp_jax.train.trainer import Trainer

OPTIM = OptimConfig(lr=1e-4, warmup_steps=0, schedule="constant", weight_decay=0.01, grad_clip=1.0)


def _torch_device():
    import torch

    return "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"


def _autocast(device: str):
    import torch

    return torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda")


def _dtype() -> str:
    return "bfloat16" if jax.default_backend() == "gpu" else "float32"


def _torch_step(model, loss_fn, device: str):
    """One optimizer step of ``model`` on ``loss_fn()`` (AdamW as ours, clip 1.0), the loss read back."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=OPTIM.lr, weight_decay=OPTIM.weight_decay)

    def run(n):
        for _ in range(n):
            with _autocast(device):
                loss = loss_fn()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            loss.item()

    return run


def _ours_step(model, objective, batch: dict):
    trainer = Trainer(model, objective, OPTIM, 10_000)
    device = {k: jnp.asarray(v) for k, v in batch.items()}

    def run(n):
        for _ in range(n):
            float(trainer.step(device)["loss"])

    return run


def _rows(label: str, seconds: dict, units: float, unit: str) -> list[tuple[str, str]]:
    """One row per side (ms a step, ``units`` / s), then ours against the peer."""
    rows = [(f"{label}, {name}", f"{s * 1e3:.2f} ms/step, {units / s:,.0f} {unit}/s") for name, s in seconds.items()]
    (_, ours), (peer, theirs) = seconds.items()
    rows.append((f"{label}: speed, ours vs {peer}", f"{theirs / ours:.2f}x"))
    return rows


def bert_rows(shape: dict, batch: int, length: int, *, rounds: int = 3, steps: int = 10) -> list[tuple[str, str]]:
    """BERT (``shape``: base is 12 x 768, 12 heads, 3072 inner) fine-tuning on random sentences of ``length``
    pieces: ours (``Trainer.step`` with ``classification_loss``, every position of the last block, as
    transformers computes) against ``BertForSequenceClassification``."""
    import torch
    import transformers

    from nlp_jax.models.bert import BertClassifier, BertConfig
    from nlp_jax.models.bert_hf import save_hf_bert
    from nlp_jax.objectives import Objective, classification_loss

    cfg = BertConfig(**shape, block_size=max(length, 128), dropout=0.0, compute_dtype=_dtype())
    model = BertClassifier(cfg, num_labels=2, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    data = {"input_ids": rng.integers(5, cfg.vocab_size, (batch, length)).astype(np.int32),
            "token_type_ids": np.zeros((batch, length), np.int32), "attention_mask": np.ones((batch, length), np.int32),
            "labels": rng.integers(0, 2, batch).astype(np.int32)}
    device = _torch_device()
    with tempfile.TemporaryDirectory() as tmp:
        save_hf_bert(model, tmp, labels=["a", "b"])
        peer = transformers.BertForSequenceClassification.from_pretrained(tmp).to(device).train()
    t = {k: torch.from_numpy(v.astype(np.int64)).to(device) for k, v in data.items()}

    def peer_loss():
        logits = peer(input_ids=t["input_ids"], token_type_ids=t["token_type_ids"],
                      attention_mask=t["attention_mask"]).logits
        return torch.nn.functional.cross_entropy(logits.float(), t["labels"])

    loss = Objective.of(functools.partial(classification_loss, all_hidden=True))
    seconds = interleaved_seconds_per_step({f"ours {cfg.compute_dtype}": _ours_step(model, loss, data),
                                            f"transformers ({device})": _torch_step(peer, peer_loss, device)},
                                           rounds=rounds, steps=steps)
    return _rows(f"BERT {cfg.n_layer} x {cfg.n_embd} fine-tuning step, batch {batch} x {length}", seconds,
                 batch * length, "tokens")


def seq2seq_rows(shape: dict, batch: int, length: int, *, rounds: int = 3, steps: int = 10) -> list[tuple[str, str]]:
    """The pre-LN transformer encoder-decoder's train step on random pairs, ours against ``torch.nn.Transformer``
    of the same shape (``norm_first``; embeddings tied to the output), and our beam search (5 beams) in
    sentences/s (no peer runs the same decoder)."""
    import torch
    from torch import nn

    from nlp_jax.models.beam import beam_search
    from nlp_jax.models.transformer_seq2seq import TransformerSeq2Seq, TransformerSeq2SeqConfig
    from nlp_jax.objectives import seq2seq_loss

    cfg = TransformerSeq2SeqConfig(**shape, dropout=0.0, compute_dtype=_dtype())
    rng = np.random.default_rng(0)
    src, tgt = (rng.integers(4, cfg.src_vocab, (batch, length)).astype(np.int32) for _ in range(2))
    data = {"source": src, "source_mask": np.ones((batch, length), bool), "target_out": tgt,
            "target_in": np.concatenate([np.full((batch, 1), 2, np.int32), tgt[:, :-1]], 1),
            "target_mask": np.ones((batch, length), bool)}
    model = TransformerSeq2Seq(cfg, rngs=nnx.Rngs(0))
    device = _torch_device()
    torch.manual_seed(0)
    emb_s, emb_t = nn.Embedding(cfg.src_vocab, cfg.d_model), nn.Embedding(cfg.tgt_vocab, cfg.d_model)
    pos_s, pos_t = nn.Embedding(cfg.max_len, cfg.d_model), nn.Embedding(cfg.max_len, cfg.d_model)
    core = nn.Transformer(cfg.d_model, cfg.n_head, cfg.enc_layers, cfg.dec_layers, cfg.d_ff, dropout=0.0,
                          batch_first=True, norm_first=True)
    peer = nn.ModuleList([emb_s, emb_t, pos_s, pos_t, core]).to(device)
    s, ti, to = (torch.from_numpy(data[k].astype(np.int64)).to(device) for k in ("source", "target_in", "target_out"))
    positions = torch.arange(length, device=device)
    causal = nn.Transformer.generate_square_subsequent_mask(length, device=device)

    def peer_loss():
        h = core(emb_s(s) + pos_s(positions), emb_t(ti) + pos_t(positions), tgt_mask=causal, tgt_is_causal=True)
        return torch.nn.functional.cross_entropy((h @ emb_t.weight.T).float().flatten(0, 1), to.flatten())

    seconds = interleaved_seconds_per_step({f"ours {cfg.compute_dtype}": _ours_step(model, seq2seq_loss, data),
                                            f"torch.nn.Transformer ({device})": _torch_step(peer, peer_loss, device)},
                                           rounds=rounds, steps=steps)
    label = f"transformer seq2seq {cfg.enc_layers}+{cfg.dec_layers} x {cfg.d_model}, batch {batch} x {length}"
    rows = _rows(f"{label} train step", seconds, 2 * batch * length, "tokens")
    kw = dict(beam=5, max_len=length + 8, bos_id=2, eos_id=3)
    jax.block_until_ready(beam_search(model, data["source"], data["source_mask"], **kw))  # compiles
    start = time.perf_counter()
    jax.block_until_ready(beam_search(model, data["source"], data["source_mask"], **kw))
    rows.append((f"{label}: beam search (5 beams, ours)", f"{batch / (time.perf_counter() - start):,.0f} sentences/s"))
    return rows


def _gpt2_pair(shape: dict):
    """Our GPT-2 of ``shape`` and ``transformers``' GPT2LMHeadModel holding the same weights, on the device."""
    import transformers

    from nlp_jax.models.gpt2 import GPT2, GPT2Config
    from nlp_jax.models.gpt2_hf import save_hf_gpt2

    model = GPT2(GPT2Config(**shape, dropout=0.0, compute_dtype=_dtype()), rngs=nnx.Rngs(0))
    with tempfile.TemporaryDirectory() as tmp:
        save_hf_gpt2(model, tmp)
        peer = transformers.GPT2LMHeadModel.from_pretrained(tmp).to(_torch_device()).train()
    return model, peer


def _response_logps(peer, tokens, mask, response):
    """Summed log-probs of the response tokens of each row (the torch side's DPO and GRPO quantity)."""
    import torch

    logits = peer(input_ids=tokens, attention_mask=mask).logits[:, :-1].float()
    logp = torch.log_softmax(logits, -1).gather(-1, tokens[:, 1:, None])[..., 0]
    return (logp * response[:, 1:]).sum(-1)


def dpo_rows(shape: dict, pairs: int, length: int, prompt: int, *, rounds: int = 3, steps: int = 10,
             beta: float = 0.1) -> list[tuple[str, str]]:
    """DPO's train step (sigmoid loss, beta 0.1, precomputed reference log-probs) on random pairs: ours
    (``dpo_objective``) against the same loss on ``transformers``' GPT-2."""
    import bench_dpo
    import torch

    from nlp_jax.objectives import dpo_objective

    model, peer = _gpt2_pair(shape)
    data = bench_dpo.pairs(pairs, length, prompt, vocab_size=shape["vocab_size"])
    device = _torch_device()
    t = {k: torch.from_numpy(np.asarray(v)).to(device) for k, v in data.items()}
    tokens = torch.cat([t["chosen"], t["rejected"]]).long()
    mask = torch.cat([t["chosen_mask"], t["rejected_mask"]]).long()
    response = torch.cat([t["chosen_response"], t["rejected_response"]]).float()
    ref = torch.cat([t["ref_chosen"], t["ref_rejected"]])

    def peer_loss():
        pw, pl = _response_logps(peer, tokens, mask, response).chunk(2)
        rw, rl = ref.chunk(2)
        return -torch.nn.functional.logsigmoid(beta * ((pw - rw) - (pl - rl))).mean()

    seconds = interleaved_seconds_per_step({f"ours {_dtype()}": _ours_step(model, dpo_objective(beta=beta), data),
                                            f"transformers ({device})": _torch_step(peer, peer_loss, device)},
                                           rounds=rounds, steps=steps)
    real = int(data["chosen_mask"].sum() + data["rejected_mask"].sum())
    return _rows(f"DPO step, GPT-2 {shape['n_layer']} x {shape['n_embd']}, {pairs} pairs x {length}", seconds,
                 real, "tokens")


def grpo_rows(shape: dict, prompts: int, samples: int, prompt: int, new: int, *, rounds: int = 2,
              steps: int = 3) -> list[tuple[str, str]]:
    """A GRPO-style iteration: ``samples`` completions of ``new`` tokens for each of ``prompts`` prompts
    (temperature 1, KV cache), a verifiable reward (does the completion hold token 5), advantages normalised
    within each group, and one policy-gradient update on them. Ours: ``GroupRollouts`` + ``group_rl_objective``
    (its KL to the reference included); torch: ``generate(do_sample=True)`` then the same loss without the
    KL term, so the peer does less work than ours."""
    import bench_rl
    import torch

    model, peer = _gpt2_pair(shape)
    ids = np.random.default_rng(0).integers(6, shape["vocab_size"], (prompts, prompt)).astype(np.int32)
    args = type("Args", (), dict(prompts=prompts, samples=samples, new=new, prompt=prompt))
    ours = bench_rl.ours_grpo(model, ids, args)
    device = _torch_device()
    opt = torch.optim.AdamW(peer.parameters(), lr=OPTIM.lr, weight_decay=OPTIM.weight_decay)
    prompt_ids = torch.from_numpy(ids.astype(np.int64)).to(device)

    def theirs(n):
        for _ in range(n):
            with torch.no_grad(), _autocast(device):
                out = peer.generate(prompt_ids, attention_mask=torch.ones_like(prompt_ids), do_sample=True, top_k=0,
                                    max_new_tokens=new, min_new_tokens=new, num_return_sequences=samples,
                                    pad_token_id=bench_rl.PAD, eos_token_id=None)
            reward = (out[:, prompt:] == bench_rl.GOOD).any(-1).float().view(prompts, samples)
            adv = ((reward - reward.mean(-1, keepdim=True)) / (reward.std(-1, keepdim=True) + 1e-4)).flatten()
            response = torch.zeros_like(out, dtype=torch.float32)
            response[:, prompt:] = 1.0
            with _autocast(device):
                loss = -(adv * _response_logps(peer, out, torch.ones_like(out), response)).mean() / new
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(peer.parameters(), 1.0)
            opt.step()
            loss.item()

    seconds = interleaved_seconds_per_step({f"ours {_dtype()}": lambda n: ours(n),
                                            f"transformers generate + update ({device})": theirs},
                                           rounds=rounds, steps=steps, warmup=2)
    return _rows(f"GRPO-style rollout + update, GPT-2 {shape['n_layer']} x {shape['n_embd']}, {prompts} prompts "
                 f"x {samples} samples x {new} new tokens", seconds, prompts * samples * new, "new tokens")
