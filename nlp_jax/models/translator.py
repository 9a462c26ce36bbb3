"""A trained encoder-decoder translator as a directory, and translation with it (``nlp-jax translate`` is its
command line).

An export directory (``save_export``; the translation experiments and ``nlp-jax translate-train`` write one
from their best checkpoint) holds ``model.json`` (the architecture and its config), ``model.safetensors``
(the parameters by their module path) and the tokenizers in ``source/`` and ``target/``. ``translate``
encodes each sentence (pieces beyond the model's limit dropped from the end, ``</s>`` kept:
``data.translation``), decodes by beam search (``beam=1``: greedy) in batches of similar length, and
returns the detokenised translations in input order.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
from flax import nnx

from nlp_jax.data.atomic import atomic_path, write_atomic
from nlp_jax.data.bpe import BOS, EOS, PAD, BPETokenizer
from nlp_jax.data.exports import read_json_file, read_safetensors, verify_checksums, write_checksums
from nlp_jax.data.translation import pad_rows, with_end
from nlp_jax.models.beam import beam_search, greedy
from nlp_jax.models.seq2seq import LSTMSeq2Seq, Seq2SeqConfig
from nlp_jax.models.transformer_seq2seq import TransformerSeq2Seq, TransformerSeq2SeqConfig

ARCHS = {"lstm": (LSTMSeq2Seq, Seq2SeqConfig), "transformer": (TransformerSeq2Seq, TransformerSeq2SeqConfig)}


def arch_of(model: nnx.Module) -> str:
    for name, (cls, _) in ARCHS.items():
        if isinstance(model, cls):
            return name
    raise TypeError(f"not a translation model: {type(model).__name__}")


def translate(model: nnx.Module, source_tok: BPETokenizer, target_tok: BPETokenizer, sentences: list[str], *,
              beam: int = 5, length_penalty: float = 1.0, max_len: int | None = None,
              batch_size: int = 64) -> list[str]:
    """Detokenised translations of ``sentences``, in their order."""
    limit = model.max_length
    max_len = max_len or limit
    rows = with_end(source_tok.encode(sentences), limit)
    order = np.argsort([len(r) for r in rows], kind="stable")
    out = [""] * len(rows)
    for i in range(0, len(rows), batch_size):
        idx = order[i:i + batch_size]
        width = -(-max(len(rows[j]) for j in idx) // 8) * 8
        src = pad_rows([rows[j] for j in idx], min(width, limit))
        kw = dict(max_len=max_len, bos_id=BOS, eos_id=EOS, pad_id=PAD)
        pieces, _ = (greedy(model, src, src != PAD, **kw) if beam == 1 else
                     beam_search(model, src, src != PAD, beam=beam, length_penalty=length_penalty, **kw))
        for j, p in zip(idx, np.asarray(pieces)):
            out[j] = target_tok.decode(p)
    return out


def save_export(model: nnx.Module, source_tok: BPETokenizer, target_tok: BPETokenizer, directory: str | Path) -> Path:
    from safetensors.numpy import save_file

    directory = Path(directory)
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    with atomic_path(directory / "model.safetensors") as tmp:
        save_file({".".join(map(str, path)): np.asarray(v[...]) for path, v in flat}, tmp)
    write_atomic(directory / "model.json", json.dumps({"arch": arch_of(model),
                                                       "config": dataclasses.asdict(model.config)}, indent=2))
    source_tok.save(directory / "source")
    target_tok.save(directory / "target")
    write_checksums(directory)
    return directory


def load_export(directory: str | Path) -> tuple[nnx.Module, BPETokenizer, BPETokenizer]:
    """(model, source tokenizer, target tokenizer) of an export directory (its checksums verified first)."""
    directory = Path(directory)
    for name in ("model.json", "model.safetensors", "source/tokenizer.json", "target/tokenizer.json"):
        if not (directory / name).exists():
            raise FileNotFoundError(f"{directory} has no {name}: an export is what a translation experiment writes "
                                    "to <workdir>/export")
    verify_checksums(directory)
    spec = read_json_file(directory / "model.json")
    if not isinstance(spec, dict) or spec.get("arch") not in ARCHS:
        arch = spec.get("arch") if isinstance(spec, dict) else spec
        raise ValueError(f"{directory / 'model.json'}: arch must be one of {sorted(ARCHS)}, got {arch!r}")
    cls, cfg_cls = ARCHS[spec["arch"]]
    try:
        cfg = cfg_cls(**spec.get("config", {}))
    except TypeError as err:  # fields of another architecture's config
        raise ValueError(f"{directory / 'model.json'}: its config is not a {spec['arch']} model's ({err})") from None
    model = cls(cfg, rngs=nnx.Rngs(0))
    tensors = read_safetensors(directory / "model.safetensors")
    params = nnx.state(model, nnx.Param)
    flat = nnx.to_flat_state(params)
    names = {".".join(map(str, path)) for path, _ in flat}
    if names != set(tensors):
        missing, extra = sorted(names - set(tensors))[:3], sorted(set(tensors) - names)[:3]
        raise ValueError(f"{directory / 'model.safetensors'} does not fit model.json's {spec['arch']} "
                         f"(missing {missing}, unexpected {extra})")
    for path, v in flat:
        name = ".".join(map(str, path))
        if tensors[name].shape != v[...].shape:
            raise ValueError(f"{directory / 'model.safetensors'}: {name} has shape {tensors[name].shape}, the "
                             f"config makes {v[...].shape}")
        v[...] = tensors[name]
    nnx.update(model, nnx.from_flat_state(flat))
    return model, BPETokenizer.from_pretrained(directory / "source"), BPETokenizer.from_pretrained(directory / "target")
