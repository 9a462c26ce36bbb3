"""Sampling completions of prompts from a saved policy or language model (``nlp-jax generate`` is its command
line).

A policy directory is a HF GPT-2 export (``config.json`` + ``model.safetensors``, ``models.gpt2_hf``) with
its ``tokenizer.json`` and ``bos_token_id`` / ``eos_token_id`` in its config: a policy of the
controlled-sentiment experiment (a WordPiece vocabulary), a model of ``nlp-jax lm`` or GPT-2's own
(``<|endoftext|>`` both begins and ends a text). Each prompt is encoded as BOS + its tokens (cut to BOS + its
last tokens if it would leave fewer than ``max_new_tokens`` positions) and sampled with the one sampler.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from nlp_jax.data.exports import read_json_file
from nlp_jax.data.lm_tokenizer import ENDOFTEXT, LMTokenizer
from nlp_jax.data.preferences import left_pad
from nlp_jax.data.wordpiece import WordPieceTokenizer
from nlp_jax.eval.rewards import draw
from nlp_jax.models.gpt2_hf import load_hf_gpt2


def load_policy(directory: str | Path):
    """(GPT2, WordPieceTokenizer, bos id, eos id) of a saved policy directory."""
    directory = Path(directory)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        if not (directory / name).exists():
            raise FileNotFoundError(f"{directory} has no {name}: a policy directory is a GPT-2 export with its "
                                    "tokenizer (e.g. runs/rlhf_sentiment/sft/export)")
    model = load_hf_gpt2(directory)  # the export's checksums verified, its files named if damaged
    config = read_json_file(directory / "config.json")
    if ENDOFTEXT in read_json_file(directory / "tokenizer.json").get("model", {}).get("vocab", {}):
        tok = LMTokenizer.from_pretrained(directory)  # `nlp-jax lm`'s, or GPT-2's own
        return model, tok, config.get("bos_token_id", tok.eot_id), config.get("eos_token_id", tok.eot_id)
    tok = WordPieceTokenizer.from_pretrained(directory, max_length=model.config.block_size)
    return model, tok, config.get("bos_token_id", tok.cls_id), config.get("eos_token_id", tok.sep_id)


def encode_prompts(tok: WordPieceTokenizer | LMTokenizer, prompts: list[str], bos: int, room: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded (P, T0) BOS + pieces of each prompt, at most ``room`` tokens each (a long prompt keeps BOS
    and its last ``room - 1`` pieces), and the mask."""
    if room < 1:
        raise ValueError(f"room={room}: a prompt needs at least its BOS token")
    return left_pad([[bos, *ids[max(0, len(ids) - room + 1):]] for ids in tok.pieces(prompts)], tok.pad_id)


def generate(directory: str | Path, prompts: list[str], *, samples: int = 1, max_new_tokens: int = 24,
             temperature: float = 1.0, seed: int = 0) -> list[dict]:
    """``[{'prompt', 'completion', 'logprob'}]``, ``samples`` per prompt in prompt order."""
    if not prompts:
        raise ValueError("no prompts: the file has no non-empty line")
    model, tok, bos, eos = load_policy(directory)
    room = model.config.block_size - max_new_tokens
    if room < 1:
        raise ValueError(f"--max-new-tokens {max_new_tokens} leaves no room for a prompt in the policy's context "
                         f"of {model.config.block_size}")
    ids, mask = encode_prompts(tok, prompts, bos, room)
    drawn = draw(model, ids, mask, n=samples, key=jax.random.key(seed), max_new_tokens=max_new_tokens, eos_id=eos,
                 pad_id=tok.pad_id, temperature=temperature, batch_size=min(64, len(prompts) * samples))
    out = []
    for row in range(len(drawn["tokens"])):
        response = drawn["tokens"][row][drawn["response"][row]]
        out.append({"prompt": prompts[row // samples], "completion": tok.decode(response),
                    "logprob": round(float(drawn["logprob"][row]), 4)})
    return out
