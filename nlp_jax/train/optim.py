"""The optimizer: AdamW (Loshchilov & Hutter 2019) with linear warmup, cosine decay and global-norm clipping."""

from __future__ import annotations

import jax
import optax

from nlp_jax.train.config import OptimConfig


def learning_rate_schedule(cfg: OptimConfig, total_steps: int) -> optax.Schedule:
    """Linear warmup to ``lr`` over ``warmup_steps``, then cosine to ``min_lr`` at ``decay_steps`` (flat after)."""
    decay = cfg.decay_steps or total_steps
    if cfg.schedule == "constant":
        return optax.join_schedules(
            [optax.linear_schedule(0.0, cfg.lr, max(cfg.warmup_steps, 1)), optax.constant_schedule(cfg.lr)],
            [cfg.warmup_steps],
        )
    if cfg.schedule != "cosine":
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {cfg.schedule!r}")
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=cfg.lr, warmup_steps=cfg.warmup_steps,
        decay_steps=max(decay, cfg.warmup_steps + 1), end_value=cfg.min_lr,
    )


def decay_mask(params):
    """Weight decay on matrices and embeddings (ndim >= 2), not on biases or LayerNorm scales."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(cfg: OptimConfig, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    schedule = learning_rate_schedule(cfg, total_steps)
    adamw = optax.adamw(schedule, b1=cfg.beta1, b2=cfg.beta2, eps=cfg.eps,
                        weight_decay=cfg.weight_decay, mask=decay_mask)
    tx = optax.chain(optax.clip_by_global_norm(cfg.grad_clip), adamw) if cfg.grad_clip > 0 else adamw
    return tx, schedule
