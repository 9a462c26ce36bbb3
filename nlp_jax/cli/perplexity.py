"""``nlp-jax perplexity``: how well a trained language model predicts text.

    nlp-jax perplexity runs/my_lm/export held_out.txt                 # a GPT-2 (ours or Hugging Face's) or LSTM
    nlp-jax perplexity runs/my_lm/export held_out.txt --stride 32     # sliding windows: more context a token
    nlp-jax perplexity runs/kn3/model.arpa held_out.txt               # an ARPA n-gram model (ours, KenLM's)

The model is an export directory of ``nlp-jax lm`` (a GPT-2 directory with ``config.json``, or an LSTM's
``rnn_lm.json``), a Hugging Face GPT-2 directory with its ``tokenizer.json``, or an ``.arpa`` file. Each file
is scored as one document, ``<|endoftext|>`` first (as ``nlp-jax lm`` trains), every token of it predicted:
the GPT in windows of its context, ``--stride`` tokens apart (each token scored once, with at least
``context - stride`` tokens before it; the default, the context, gives non-overlapping windows); the LSTM
left to right with its state carried through the whole file; an ARPA model one line a sentence, its words
split at whitespace, each word and each ``</s>`` predicted (as ``nlp-jax ngram --eval`` and KenLM score).

For each file: tokens, the loss (nats a token), the perplexity, and bits per byte of the UTF-8 text, the one
number that compares models with different tokenizers. ``--json`` prints one JSON object a file instead.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from nlp_jax.data.files import stream_text
from nlp_jax.data.lm_tokenizer import LMTokenizer


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nlp-jax perplexity", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="an export directory (GPT-2 or LSTM) or an .arpa file")
    p.add_argument("files", nargs="+", help="UTF-8 text to score, each file one document")
    p.add_argument("--stride", type=int, default=0, help="GPT: tokens between window starts (default: 0, the "
                   "model's context: non-overlapping windows)")
    p.add_argument("--batch-size", type=int, default=64, help="GPT: windows a forward pass (default: 64)")
    p.add_argument("--json", action="store_true", help="one JSON object a file")
    return p


def load_scorer(model: str):
    """``score(path) -> {'tokens', 'loss', ...}`` for ``model`` (see the module docstring), and its kind."""
    path = Path(model)
    if path.is_file() and path.suffix == ".arpa":
        from nlp_jax.models.arpa import ArpaLM

        lm = ArpaLM.load(path)
        return (lambda f, stride, batch: lm.perplexity(line.split() for line in stream_text([f], "perplexity")),
                f"ARPA {lm.order}-gram")
    if not path.is_dir():
        raise SystemExit(f"nlp-jax perplexity: {model}: no such export directory or .arpa file")
    tok = LMTokenizer.from_pretrained(path)
    if (path / "rnn_lm.json").exists():
        from nlp_jax.eval.perplexity import recurrent_perplexity
        from nlp_jax.models.rnn_lm import load_rnn_lm

        lstm, _ = load_rnn_lm(path)
        kind = f"LSTM ({lstm.config.layers} x {lstm.config.hidden})"
        measure = lambda ids, stride, batch: recurrent_perplexity(lstm, ids, bptt=64)  # noqa: E731
    else:
        from nlp_jax.eval.perplexity import perplexity
        from nlp_jax.models.gpt2_hf import load_hf_gpt2

        gpt = load_hf_gpt2(path)
        context = gpt.config.block_size
        kind = f"GPT-2 ({gpt.config.n_layer} x {gpt.config.n_embd}, context {context})"

        def measure(ids, stride, batch):
            if stride > context:
                raise SystemExit(f"nlp-jax perplexity: --stride {stride} exceeds the model's context of {context}")
            return perplexity(gpt, ids, context=context, stride=stride or None, batch_size=batch)

    def score(f: str, stride: int, batch: int) -> dict:
        ids = tok.encode_files([f], f)
        if len(ids) < 2:
            raise SystemExit(f"nlp-jax perplexity: {f} holds no text")
        unknown = int((ids == tok.unk_id).sum()) if tok.unk_id is not None else 0
        return {**measure(ids, stride, batch), "unknown": unknown}

    return score, kind


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.stride < 0 or args.batch_size < 1:
        raise SystemExit(f"nlp-jax perplexity: --stride must be >= 0 and --batch-size >= 1, got {args.stride}, "
                         f"{args.batch_size}")
    for f in args.files:
        if not Path(f).is_file():
            raise SystemExit(f"nlp-jax perplexity: {f}: no such file")
    score, kind = load_scorer(args.model)
    for f in args.files:
        r = score(f, args.stride, args.batch_size)
        size = Path(f).stat().st_size
        out = {"file": f, "model": kind, "tokens": r["tokens"], "loss": r["loss"],
               "perplexity": r.get("perplexity", r.get("ppl")), "bits_per_byte": r["loss"] * r["tokens"] / math.log(2)
               / max(size, 1), "unknown": r.get("unknown", r.get("unknown_words", 0))}
        if args.json:
            print(json.dumps(out))
        else:
            print(f"{f}: perplexity {out['perplexity']:.3f} over {out['tokens']:,} tokens (loss {out['loss']:.4f} nats"
                  f" a token, {out['bits_per_byte']:.4f} bits a byte; {out['unknown']:,} unknown) under {kind}")
    return 0
