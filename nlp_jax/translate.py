"""Translate a file of sentences (one a line, raw text) with a saved translation model:

    python -m nlp_jax.translate runs/translate_lstm_additive/export source.en > hypotheses.de
    sacrebleu references.de < hypotheses.de

An export directory (``save_export``; the translation experiments write one from their best checkpoint)
holds ``model.json`` (the architecture and its config), ``model.safetensors`` (the parameters by their
module path) and the tokenizers in ``source/`` and ``target/``. Each line is encoded (pieces beyond the
model's limit dropped from the end, ``</s>`` kept: ``data.translation``), decoded by beam search (``--beam
1``: greedy) in batches of similar length, and written detokenised, one line per input line: lines are
split at newlines only (a form feed or U+2028 inside a line stays in it), and an empty line gives an empty
line. The arguments are checked before the model loads.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

import numpy as np
from flax import nnx

from nlp_jax.data.atomic import atomic_path, write_atomic
from nlp_jax.data.bpe import BOS, EOS, PAD, BPETokenizer
from nlp_jax.data.exports import read_json_file, read_safetensors, verify_checksums, write_checksums
from nlp_jax.data.files import read_lines
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", help="a model export directory (<workdir>/export)")
    parser.add_argument("source", help="a text file, one source sentence a line ('-': standard input)")
    parser.add_argument("--beam", type=int, default=5, help="beam width (1: greedy; default: 5)")
    parser.add_argument("--length-penalty", type=float, default=1.0,
                        help="hypotheses scored log p / length ** this (default: 1.0)")
    parser.add_argument("--batch-size", type=int, default=64, help="sentences a batch (default: 64)")
    args = parser.parse_args(argv)
    checks = (("beam", args.beam >= 1, ">= 1 (1: greedy)"), ("batch_size", args.batch_size >= 1, ">= 1"),
              ("length_penalty", math.isfinite(args.length_penalty), "a finite number"))
    for name, ok, what in checks:
        if not ok:
            parser.error(f"--{name.replace('_', '-')} must be {what}, got {getattr(args, name)}")
    try:
        lines = read_lines(args.source)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    if not lines:
        raise SystemExit(f"{args.source}: no lines to translate")
    model, src_tok, tgt_tok = load_export(args.export)
    kept = [i for i, line in enumerate(lines) if line.strip()]
    out = [""] * len(lines)  # an empty line stays empty: nothing is invented for it
    for i, line in zip(kept, translate(model, src_tok, tgt_tok, [lines[i] for i in kept], beam=args.beam,
                                       length_penalty=args.length_penalty, batch_size=args.batch_size)):
        out[i] = line
    sys.stdout.write("".join(line + "\n" for line in out))



if __name__ == "__main__":
    main()
