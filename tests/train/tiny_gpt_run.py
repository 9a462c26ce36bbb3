"""The tiny GPT, data and optimizer that the mesh and multi-process tests train in each layout."""

import dataclasses

import numpy as np

from nlp_jax.data.corpus import RandomBlocks
from nlp_jax.models.gpt2 import GPT2Config
from nlp_jax.train.config import OptimConfig

GPT = dataclasses.replace(GPT2Config.tiny(), dropout=0.1)  # dropout: the keys must agree across layouts too
SOURCE = RandomBlocks(np.random.default_rng(0).integers(0, 37, 3000).astype(np.int32), 8, 16, seed=1)
OPTIM = OptimConfig(lr=3e-3, warmup_steps=0)
