"""A GPT trained on one token stream: the supervised step every decoder experiment starts from (the SFT
policy of the preference experiments), through the one loop."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx

from nlp_jax.data.corpus import RandomBlocks
from nlp_jax.models.gpt2 import GPT2, GPT2Config
from nlp_jax.objectives import lm_loss
from nlp_jax.train.config import OptimConfig, TrainConfig
from nlp_jax.train.stages import train_stage


def train_on_stream(model_cfg: GPT2Config, train_ids: np.ndarray, *, batch_size: int, train_cfg: TrainConfig,
                    optim_cfg: OptimConfig, workdir: str | Path, eval_fn: Callable[[GPT2], dict] | None = None,
                    config: Any = None, stage: str = "sft") -> GPT2:
    """``GPT2(model_cfg)`` (seeded by ``train_cfg.seed``) on random blocks of ``train_ids``, evaluated by
    ``eval_fn`` (its ``val_loss`` picks the best checkpoint). A finished run in ``workdir`` is read back; one
    stopped by a signal raises :class:`Interrupted` naming ``stage`` (its checkpoint is saved)."""
    source = RandomBlocks(train_ids, batch_size, model_cfg.block_size, seed=train_cfg.seed,
                          vocab_size=model_cfg.vocab_size)
    model, _ = train_stage(GPT2(model_cfg, rngs=nnx.Rngs(train_cfg.seed)), lm_loss, source, train_cfg=train_cfg,
                           optim_cfg=optim_cfg, workdir=workdir, eval_fn=eval_fn, config=config, stage=stage)
    return model
