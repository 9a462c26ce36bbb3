"""Load and save Hugging Face GPT-2 checkpoints (``config.json`` + ``model.safetensors``, HF parameter
names), so a policy trained here opens in ``transformers.GPT2LMHeadModel`` and back (tested).

HF's GPT-2 stores its projections as ``Conv1D`` with weights shaped (in, out), the same layout as our
``nnx.Linear`` kernels, so weights copy over without transposes; ``c_attn`` is already the fused QKV.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from flax import nnx

from nlp_jax.data.atomic import atomic_path, write_atomic
from nlp_jax.data.exports import read_json_file, read_safetensors, verify_checksums, write_checksums
from nlp_jax.models.gpt2 import GPT2, GPT2Config

_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu"}


def config_from_hf(hf: dict, **overrides) -> GPT2Config:
    act = hf.get("activation_function", "gelu_new")
    if act not in _ACTIVATIONS:
        raise ValueError(f"unsupported activation_function {act!r}; known: {sorted(_ACTIVATIONS)}")
    return GPT2Config(
        vocab_size=hf["vocab_size"], block_size=hf["n_positions"], n_layer=hf["n_layer"], n_head=hf["n_head"],
        n_embd=hf["n_embd"], ln_eps=hf.get("layer_norm_epsilon", 1e-5), activation=_ACTIVATIONS[act],
        bias=True, dropout=0.0, **overrides,
    )


def config_to_hf(cfg: GPT2Config) -> dict:
    act = {v: k for k, v in _ACTIVATIONS.items() if k != "gelu_pytorch_tanh"}[cfg.activation]
    return {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": cfg.vocab_size,
            "n_positions": cfg.block_size, "n_ctx": cfg.block_size, "n_layer": cfg.n_layer, "n_head": cfg.n_head,
            "n_embd": cfg.n_embd, "layer_norm_epsilon": cfg.ln_eps, "activation_function": act,
            "tie_word_embeddings": True, "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout,
            "attn_pdrop": cfg.dropout if cfg.attn_dropout is None else cfg.attn_dropout}  # HF's default is 0.1


def _hf_name(path: tuple) -> str:
    """Our state path -> HF tensor name, e.g. ('h', 0, 'attn', 'c_attn', 'kernel') -> 'h.0.attn.c_attn.weight'."""
    rename = {"kernel": "weight", "scale": "weight", "embedding": "weight"}
    return ".".join(rename.get(str(p), str(p)) for p in path)


def load_hf_gpt2(directory: str | Path, **config_overrides) -> GPT2:
    """Build a :class:`GPT2` from a HF GPT-2 directory and copy every weight in; fail on any mismatch."""
    directory = Path(directory)
    for name in ("config.json", "model.safetensors"):
        if not (directory / name).exists():
            raise FileNotFoundError(f"{directory}: no {name} (a HF GPT-2 directory has config.json and "
                                    "model.safetensors)")
    verify_checksums(directory)
    hf = read_json_file(directory / "config.json")
    if hf.get("model_type") != "gpt2":
        raise ValueError(f"{directory / 'config.json'}: model_type {hf.get('model_type')!r} is not a GPT-2 checkpoint "
                         "(need 'gpt2')")
    cfg = config_from_hf(hf, **config_overrides)
    tensors = {k.removeprefix("transformer."): v
               for k, v in read_safetensors(directory / "model.safetensors").items()}
    model = nnx.eval_shape(lambda: GPT2(cfg, rngs=nnx.Rngs(0)))
    state = nnx.state(model, nnx.Param)
    flat = {}
    for path, var in nnx.to_flat_state(state):
        name = _hf_name(path)
        if name not in tensors:
            raise KeyError(f"{directory}: no tensor {name!r} for parameter {'/'.join(map(str, path))}")
        value = np.asarray(tensors[name], np.float32)
        if value.shape != var.shape:
            raise ValueError(f"{name}: checkpoint shape {value.shape} != model shape {var.shape}")
        flat[path] = var.replace(value)
    head, wte = tensors.get("lm_head.weight"), tensors.get("wte.weight")
    if head is not None and not np.array_equal(np.asarray(head, np.float32), np.asarray(wte, np.float32)):
        raise ValueError(f"{directory}: lm_head.weight differs from wte.weight (an untied output layer); this GPT-2 "
                         "ties them, so loading it would change the logits. Re-export the checkpoint tied.")
    unused = set(tensors) - {_hf_name(p) for p in flat} - {"lm_head.weight"}  # equal to wte: tied
    unused = {n for n in unused if not n.endswith((".attn.bias", ".attn.masked_bias"))}  # HF's causal buffers
    if unused:
        raise ValueError(f"{directory}: tensors not used by the model: {sorted(unused)[:5]}")
    nnx.update(model, nnx.from_flat_state(flat))
    return model


def save_hf_gpt2(model: GPT2, directory: str | Path, *, tokenizer=None, **extra_config) -> Path:
    """Write ``model`` as a HF GPT-2 directory (tied output layer; ``extra_config`` adds keys to
    ``config.json``, e.g. ``bos_token_id``), the ``tokenizer``'s files if given, each written whole, and
    ``checksums.sha256`` over them all (``data.exports``); a model without biases has no HF GPT-2 form and
    is refused."""
    from safetensors.numpy import save_file

    cfg = model.config
    if not cfg.bias:
        raise ValueError("save_hf_gpt2: HF GPT-2 has biases in every Linear and LayerNorm; this model has bias=False")
    directory = Path(directory)
    tensors = {}
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        value = np.asarray(var[...], np.float32)
        tensors[_hf_name(path)] = np.ascontiguousarray(value[:cfg.vocab_size] if path[0] == "wte" else value)
    with atomic_path(directory / "model.safetensors") as tmp:
        save_file(tensors, tmp)
    write_atomic(directory / "config.json", json.dumps({**config_to_hf(cfg), **extra_config}, indent=2))
    if tokenizer is not None:
        tokenizer.save(directory)
    write_checksums(directory)
    return directory


def save_hf_reward_model(model, directory: str | Path, *, pad_token_id: int, tokenizer=None, **extra_config) -> Path:
    """Write a :class:`~nlp_jax.models.reward.RewardModel` on a GPT-2 backbone (``pooling='last'``) as a HF
    ``GPT2ForSequenceClassification`` directory with one label, whose logit is the reward: the backbone as
    ``transformer.*``, the head's weight as ``score.weight``. HF's score layer has no bias, so the head's bias b
    is folded into the final layer norm's shift: adding b w / (w . w) to it adds exactly b to w . h (the
    final norm feeds only the head here). HF reads the last token that is not ``pad_token_id`` of each row (right
    padding); ``extra_config`` adds keys to ``config.json`` (``bos_token_id``). :func:`load_hf_reward_model`
    reads it back."""
    from safetensors.numpy import save_file

    from nlp_jax.models.reward import RewardModel

    if not isinstance(model, RewardModel) or not isinstance(model.backbone, GPT2) or model.pooling != "last":
        raise ValueError("save_hf_reward_model: a RewardModel on a GPT2 backbone with pooling='last' has a HF form")
    cfg = model.backbone.config
    tensors = {"transformer." + _hf_name(path): np.ascontiguousarray(np.asarray(var[...], np.float32))
               for path, var in nnx.to_flat_state(nnx.state(model.backbone, nnx.Param))}
    w = np.asarray(model.head.kernel[...], np.float64)[:, 0]
    b = float(np.asarray(model.head.bias[...])[0])
    tensors["transformer.wte.weight"] = tensors["transformer.wte.weight"][:cfg.vocab_size]
    tensors["transformer.ln_f.bias"] = (tensors["transformer.ln_f.bias"] + b * w / (w @ w)).astype(np.float32)
    tensors["score.weight"] = w[None].astype(np.float32)
    directory = Path(directory)
    with atomic_path(directory / "model.safetensors") as tmp:
        save_file(tensors, tmp)
    config = {**config_to_hf(cfg), "architectures": ["GPT2ForSequenceClassification"], "num_labels": 1,
              "id2label": {"0": "reward"}, "label2id": {"reward": 0}, "pad_token_id": pad_token_id, **extra_config}
    write_atomic(directory / "config.json", json.dumps(config, indent=2))
    if tokenizer is not None:
        tokenizer.save(directory)
    write_checksums(directory)
    return directory


def load_hf_reward_model(directory: str | Path):
    """The :class:`~nlp_jax.models.reward.RewardModel` of a HF ``GPT2ForSequenceClassification`` directory
    with one label (:func:`save_hf_reward_model`'s, or one trained with transformers): the head's bias 0."""
    import jax.numpy as jnp

    from nlp_jax.models.reward import RewardModel

    directory = Path(directory)
    verify_checksums(directory)
    hf = read_json_file(directory / "config.json")
    tensors = read_safetensors(directory / "model.safetensors")
    if hf.get("num_labels", len(hf.get("id2label", {}))) != 1 or "score.weight" not in tensors:
        raise ValueError(f"{directory}: not a one-label GPT2ForSequenceClassification (a reward model)")
    backbone = GPT2(config_from_hf(hf), rngs=nnx.Rngs(0))
    flat = []
    for path, var in nnx.to_flat_state(nnx.state(backbone, nnx.Param)):
        name = "transformer." + _hf_name(path)
        if name not in tensors or tensors[name].shape != var.shape:
            raise ValueError(f"{directory}: tensor {name} missing or not {var.shape}")
        flat.append((path, var.replace(jnp.asarray(tensors[name]))))
    nnx.update(backbone, nnx.from_flat_state(flat))
    model = RewardModel(backbone, rngs=nnx.Rngs(0))
    model.head.kernel[...] = jnp.asarray(tensors["score.weight"].T)
    model.head.bias[...] = jnp.zeros_like(model.head.bias[...])
    return model
