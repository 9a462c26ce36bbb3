"""``nlp-jax generate``: sample completions of a file of prompts (one a line) from a saved policy or language
model, so anyone can judge it.

    nlp-jax generate runs/rlhf_sentiment/dpo_b0.1/export prompts.txt --samples 4
    nlp-jax generate runs/my_lm/export prompts.txt --max-new-tokens 200 --temperature 0.8

The directory is a GPT-2 export with its tokenizer (``eval.generation``). Each completion is printed as a
``prompt<TAB>completion<TAB>log-prob`` line, a tab, newline or backslash in a completion written ``\\t``,
``\\n``, ``\\\\`` (``--json``: one JSON object a line, the text as it is).
"""

from __future__ import annotations

import argparse
import json
import math

from nlp_jax.data.files import read_lines
from nlp_jax.eval.generation import generate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("policy", help="a saved policy directory (GPT-2 export + tokenizer)")
    parser.add_argument("prompts", help="a text file, one prompt a line ('-' reads stdin)")
    parser.add_argument("--samples", type=int, default=1, help="completions a prompt (default: 1)")
    parser.add_argument("--max-new-tokens", type=int, default=24, help="(default: 24)")
    parser.add_argument("--temperature", type=float, default=1.0, help="0 samples greedily (default: 1.0)")
    parser.add_argument("--seed", type=int, default=0, help="(default: 0)")
    parser.add_argument("--json", action="store_true", help="JSON lines instead of tab-separated")
    args = parser.parse_args(argv)
    checks = (("samples", args.samples >= 1, ">= 1"), ("max_new_tokens", args.max_new_tokens >= 1, ">= 1"),
              ("temperature", math.isfinite(args.temperature) and args.temperature >= 0, "finite and >= 0"))
    for name, ok, what in checks:
        if not ok:
            parser.error(f"--{name.replace('_', '-')} must be {what}, got {getattr(args, name)}")
    prompts = [line.strip() for line in read_lines(args.prompts) if line.strip()]
    if not prompts:
        raise ValueError(f"{args.prompts}: no prompts (one prompt a line expected)")
    rows = generate(args.policy, prompts, samples=args.samples, max_new_tokens=args.max_new_tokens,
                    temperature=args.temperature, seed=args.seed)
    for r in rows:
        print(json.dumps(r) if args.json else f"{r['prompt']}\t{_escaped(r['completion'])}\t{r['logprob']}")


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
