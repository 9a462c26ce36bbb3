"""The BERT pretraining study: does our own small BERT's pretraining help SST-2, and with what text?
Task-adaptive pretraining, en_corpus, PTB with SST-2's unlabelled text, longer pretraining, then SST-2
fine-tuned from each beside random weights of the same shape and vocabulary, with several seeds and with
fewer labelled phrases, and frozen-feature probes. It varies ``experiments/bert_pretrain.py`` and
``experiments/bert_sst2.py``.

    make study S=bert_pretraining C=<config>

Configs that run one thing: ``pretrain_<tapt|corpus|corpus24|ptb_sst2|ptb_sst2_more>`` (a pretraining),
``sst2_<ours|scratch|frozen|frozen_random>_<tapt|corpus|ptb_sst|ptb_sst_more>`` (a fine-tuning or a probe
on a pretraining's export, where the log lists it). Configs that run a whole programme, in order, skipping
what is finished: ``tapt``, ``corpus``, ``ptb_sst2`` and ``ptb_sst2_more`` (the former make targets), and
``sizes_<ours_ptb_sst|scratch_ptb_sst|ours_ptb_sst_more>`` (1,000 / 4,000 / 16,000 labelled phrases) and
``seeds_ptb_sst_more`` (fine-tuning seeds 7, 42, 3 and 11 from the longer pretraining and from scratch).
The results and the log of attempts are in this folder's README.md.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from experiments import bert_pretrain, bert_sst2
from nlp_jax.models.bert import BertConfig
from nlp_jax.train.config import OptimConfig, TrainConfig

CONTINUE = OptimConfig(lr=5e-4, min_lr=5e-5, warmup_steps=100, weight_decay=0.01, beta2=0.98)  # a warm restart


def export(cfg) -> str:
    """Where a pretraining run exports its model and tokenizer (what the runs after it read)."""
    return str(Path(cfg.workdir, "export"))


PTB_SST2 = bert_pretrain.Config(sst2_rate=0.25, workdir="runs/bert_pretrain_ptb_sst",
                                train=TrainConfig(steps=2500, log_every=50, eval_every=500, ckpt_every=250))
CORPUS = bert_pretrain.Config(model=BertConfig.mini(vocab_size=8192, dropout=0.0), corpus="en_corpus",
                              sst2_rate=0.25, workdir="runs/bert_pretrain_corpus")
PRETRAIN = {
    # task-adaptive (Gururangan et al. 2020): bert-pretrain's export continued on mostly SST-2's own text
    "tapt": bert_pretrain.Config(sst2_rate=0.75, init_dir=export(bert_pretrain.Config()),
                                 workdir="runs/bert_pretrain_tapt", optim=CONTINUE,
                                 train=TrainConfig(steps=1500, log_every=50, eval_every=500, ckpt_every=250)),
    # en_corpus (6.6M words, a fifth movie reviews) + a quarter SST-2's text, no dropout (it underfits)
    "corpus": CORPUS,
    # en_corpus pairs only, in 24-word chunks (43% more masked pieces a step), corpus's vocabulary
    "corpus24": bert_pretrain.Config(model=BertConfig.mini(vocab_size=8192, dropout=0.0),
                                     corpus="en_corpus", chunk_words=24,
                                     tokenizer_dir=str(Path(CORPUS.workdir, "tokenizer")),
                                     optim=OptimConfig(lr=1e-3, min_lr=1e-4, warmup_steps=400, weight_decay=0.01,
                                                       beta2=0.98),
                                     train=TrainConfig(steps=4500, log_every=50, eval_every=500, ckpt_every=250),
                                     workdir="runs/bert_pretrain_corpus_c24"),
    # PTB (whose MLM leaves the plateau) + a quarter SST-2's text, a vocabulary of both
    "ptb_sst2": PTB_SST2,
    # ptb_sst2's export trained 3,000 steps more (another batch order, a warm restart)
    "ptb_sst2_more": bert_pretrain.Config(sst2_rate=0.25, init_dir=export(PTB_SST2),
                                          workdir="runs/bert_pretrain_ptb_sst_more", optim=CONTINUE,
                                          train=TrainConfig(steps=3000, log_every=50, eval_every=500, ckpt_every=250,
                                                            seed=1)),
}


def _sst2(init: str, run: str, **kw) -> bert_sst2.Config:
    """SST-2 fine-tuned from (``ours``), at the shape and vocabulary of (``scratch``), or probing (``frozen``)
    the export of the pretraining ``PRETRAIN[run]``."""
    optim = {} if init == "frozen" else {"optim": bert_sst2.SMALL}
    name = {"ptb_sst2": "ptb_sst", "ptb_sst2_more": "ptb_sst_more"}.get(run, run)  # (the runs' stored names)
    return bert_sst2.Config(init=init, init_dir=export(PRETRAIN[run]), workdir=f"runs/bert_sst2_{init}_{name}",
                            **optim, **kw)


SST2 = {f"{init}_{run}".replace("ptb_sst2", "ptb_sst"): _sst2(init, run) for init, run in [
    ("ours", "tapt"), ("ours", "corpus"), ("scratch", "corpus"), ("ours", "ptb_sst2"), ("scratch", "ptb_sst2"),
    ("ours", "ptb_sst2_more"), ("frozen", "ptb_sst2"), ("frozen", "ptb_sst2_more")]}
SST2["frozen_random_ptb_sst"] = dataclasses.replace(SST2["frozen_ptb_sst"], frozen_weights="random",
                                                    workdir="runs/bert_sst2_frozen_random_ptb_sst")
SIZES = ((1000, 10), (4000, 4), (16000, 2))  # (training phrases, epochs) of the data-size curve
SEEDS = (7, 42, 3, 11)  # fine-tuning seeds besides the default 1337


def sizes(name: str) -> tuple[bert_sst2.Config, ...]:
    """``SST2[name]`` on the first 1,000 / 4,000 / 16,000 phrases (warmup: a tenth of the steps)."""
    base = SST2[name]
    return tuple(dataclasses.replace(base, max_train=n, epochs=e, workdir=f"runs/bert_sst2_{name}_n{n}",
                                     optim=dataclasses.replace(base.optim, warmup_steps=n // base.batch_size * e // 10))
                 for n, e in SIZES)


def seeds(name: str) -> tuple[bert_sst2.Config, ...]:
    base = SST2[name]
    return tuple(dataclasses.replace(base, train=dataclasses.replace(base.train, seed=s),
                                     workdir=f"runs/bert_sst2_{name}_s{s}") for s in SEEDS)


PROGRAMMES = {
    "tapt": (PRETRAIN["tapt"], SST2["ours_tapt"]),
    "corpus": (PRETRAIN["corpus"], SST2["ours_corpus"], SST2["scratch_corpus"]),
    "ptb_sst2": (PRETRAIN["ptb_sst2"], SST2["ours_ptb_sst"], *sizes("ours_ptb_sst"), SST2["scratch_ptb_sst"],
                 *sizes("scratch_ptb_sst"), SST2["frozen_ptb_sst"], SST2["frozen_random_ptb_sst"]),
    "ptb_sst2_more": (PRETRAIN["ptb_sst2"], PRETRAIN["ptb_sst2_more"], SST2["ours_ptb_sst_more"],
                      SST2["scratch_ptb_sst"], *seeds("ours_ptb_sst_more"), *seeds("scratch_ptb_sst"),
                      *sizes("ours_ptb_sst_more"), SST2["frozen_ptb_sst_more"]),
    **{f"sizes_{name}": sizes(name) for name in ("ours_ptb_sst", "scratch_ptb_sst", "ours_ptb_sst_more")},
    "seeds_ptb_sst_more": (*seeds("ours_ptb_sst_more"), *seeds("scratch_ptb_sst")),
}


@dataclasses.dataclass(frozen=True)
class Programme:
    """Several runs in order (each resumes, or reports its stored results when finished)."""
    runs: tuple


CONFIGS = {**{f"pretrain_{k}": v for k, v in PRETRAIN.items()}, **{f"sst2_{k}": v for k, v in SST2.items()},
           **{k: Programme(v) for k, v in PROGRAMMES.items()}}


def get_config(arg: str | None = None):
    if arg not in CONFIGS:
        raise ValueError(f"unknown config {arg!r}; choose {', '.join(CONFIGS)}")
    return CONFIGS[arg]


def _experiment(cfg):
    return bert_pretrain if isinstance(cfg, bert_pretrain.Config) else bert_sst2


def resolve_config(cfg):
    if isinstance(cfg, Programme):
        return cfg
    module = _experiment(cfg)
    return module.resolve_config(cfg) if hasattr(module, "resolve_config") else cfg


def run(cfg) -> dict:
    if not isinstance(cfg, Programme):
        return _experiment(cfg).run(cfg)
    from nlp_jax.run import finished_summary

    out = {}
    for one in cfg.runs:
        summary = finished_summary(resolve_config(one))
        if summary is None:
            summary = run(one)
        if summary.get("status", "finished") != "finished":
            return {**summary, "stopped_at": one.workdir}
        out[one.workdir] = summary
    return {"status": "finished", "runs": out}
