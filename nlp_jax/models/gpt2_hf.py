"""Load Hugging Face GPT-2 checkpoints (``config.json`` + ``model.safetensors``, HF parameter names).

HF's GPT-2 stores its projections as ``Conv1D`` with weights shaped (in, out), the same layout as our
``nnx.Linear`` kernels, so weights copy over without transposes; ``c_attn`` is already the fused QKV.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from flax import nnx

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


def _hf_name(path: tuple) -> str:
    """Our state path -> HF tensor name, e.g. ('h', 0, 'attn', 'c_attn', 'kernel') -> 'h.0.attn.c_attn.weight'."""
    rename = {"kernel": "weight", "scale": "weight", "embedding": "weight"}
    return ".".join(rename.get(str(p), str(p)) for p in path)


def load_hf_gpt2(directory: str | Path, **config_overrides) -> GPT2:
    """Build a :class:`GPT2` from a HF GPT-2 directory and copy every weight in; fail on any mismatch."""
    from safetensors.numpy import load_file

    directory = Path(directory)
    cfg = config_from_hf(json.loads((directory / "config.json").read_text()), **config_overrides)
    tensors = {k.removeprefix("transformer."): v for k, v in load_file(directory / "model.safetensors").items()}
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
