"""The ``nlp-jax`` command (``python -m nlp_jax`` is the same): one entry point for the package's command
lines. ``nlp-jax <command> --help`` shows a command's options with their defaults.

    nlp-jax run experiments/<name>[:config] [--set key.path=value ...]   # an experiment or a study
    nlp-jax generate <GPT-2 export or HF name> prompts.txt               # sample continuations
    nlp-jax translate-train pairs.tsv --out runs/my_mt                   # source<TAB>target lines (or two files)
    nlp-jax translate <translation run> sentences.txt                    # beam-search translations
    nlp-jax sentences classify <BERT classifier export> sentences.txt    # labels and probabilities
    nlp-jax lm my_text.txt --out runs/my_lm                              # a GPT (or --arch lstm) on your text
    nlp-jax perplexity runs/my_lm/export held_out.txt                    # per token, per byte; --stride slides
    nlp-jax classify rows.csv --text-column text --label-column label --out runs/clf   # BERT on your labels
    nlp-jax predict runs/clf/export new_rows.csv --out predictions.csv                 # labels, probabilities
    nlp-jax prefer runs/my_lm/export pairs.jsonl --loss sigmoid --out runs/dpo   # prompt/chosen/rejected
    nlp-jax vectors corpus.txt --method sg --out runs/vectors            # word vectors, word2vec's formats
    nlp-jax ngram train.txt --order 3 --eval valid.txt --out runs/kn3     # Kneser-Ney, perplexity, ARPA
    nlp-jax tfidf docs.txt --out runs/tfidf --query "some words"         # TF-IDF matrix, nearest documents
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

# command -> (module whose command line it is, what it does)
COMMANDS = {
    "run": ("nlp_jax.run", "launch an experiment or a study (a config, --set overrides, resumable)"),
    "generate": ("nlp_jax.cli.generate", "continue prompts with a GPT-2 (an export of ours or a Hugging Face model)"),
    "translate-train": ("nlp_jax.cli.translate_train", "train a translator (LSTM or transformer) on parallel text"),
    "translate": ("nlp_jax.cli.translate", "translate sentences with a trained encoder-decoder (beam search)"),
    "sentences": ("nlp_jax.cli.sentences", "classify sentences with a BERT classifier, or find nearest neighbours"),
    "lm": ("nlp_jax.cli.lm", "train a GPT or an LSTM language model on your text files, export it"),
    "perplexity": ("nlp_jax.cli.perplexity", "perplexity of text under a trained LM (GPT-2, LSTM, an ARPA n-gram)"),
    "classify": ("nlp_jax.cli.classify", "fine-tune a BERT classifier on your labelled CSV / TSV / JSONL rows"),
    "predict": ("nlp_jax.cli.predict", "labels and probabilities of a trained classifier for a file's texts"),
    "prefer": ("nlp_jax.cli.prefer", "DPO (or IPO, cDPO, SimPO, ORPO, KTO) or a reward model on your preference JSONL"),
    "vectors": ("nlp_jax.cli.vectors", "word vectors from your text (skip-gram, CBOW, PPMI-SVD), word2vec's formats"),
    "ngram": ("nlp_jax.cli.ngram", "a Kneser-Ney n-gram model of your text, its perplexity, an ARPA file"),
    "tfidf": ("nlp_jax.cli.tfidf", "TF-IDF vectors of your documents and the documents nearest a query"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items())
    return f"usage: nlp-jax <command> [options]\n\ncommands:\n{rows}\n\n'nlp-jax <command> --help' shows its options."


def main(argv: list[str] | None = None) -> int:
    """Run ``argv``'s command; returns the exit status: 2 for an unknown command or option (as argparse does),
    1 for bad input (a file, a row, a setting: the message on stderr names it), 128 + the signal for an
    interrupted training run."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"nlp-jax: unknown command {command!r}; the commands are {', '.join(COMMANDS)}\n\n{usage()}",
              file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    prog, sys.argv[0] = sys.argv[0], f"nlp-jax {command}"  # (argparse names the program after argv[0])
    try:
        status = module.main(rest)
    except (ValueError, OSError) as err:  # bad input, named by the reader that found it: no traceback
        print(f"nlp-jax {command}: {err}", file=sys.stderr)
        return 1
    finally:
        sys.argv[0] = prog
    if isinstance(status, dict):  # a training command's summary
        from nlp_jax.run import status_of

        return status_of(status)
    return int(status or 0)


def add_run_options(p, examples: str) -> None:
    """The options every training command shares: ``--set`` (any config field; ``examples`` shows a few),
    ``--print-config`` and ``--rerun``."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"any other field, e.g. {examples} (repeatable)")
    p.add_argument("--print-config", action="store_true", help="print the config and exit")
    p.add_argument("--rerun", action="store_true", help="train again even if --out holds this run finished")


def launch_training(p, args, files: list[str], build, module) -> dict:
    """A training command's run: every named file must exist, ``build(args)`` makes the config and ``--set``
    overrides it (a bad setting is a usage error naming it), then ``module.run`` goes through the launcher
    (``run.launch``: read back when finished, resumed otherwise)."""
    from nlp_jax.run import EmptyWorkdir, launch
    from nlp_jax.train.config import apply_overrides

    missing = [f for f in files if f and not Path(f).is_file()]
    if missing:
        p.error(f"no such file: {', '.join(missing)}")
    try:
        cfg = apply_overrides(build(args), args.overrides)
    except (KeyError, ValueError) as err:
        p.error(str(err))
    try:
        return launch(module, cfg, rerun=args.rerun, print_config=args.print_config)
    except EmptyWorkdir as err:
        p.error(str(err))

