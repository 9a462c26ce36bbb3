"""The optimizer: AdamW (Loshchilov & Hutter 2019) with linear warmup and cosine decay, or plain SGD with
Zaremba et al.'s per-epoch decay; both after global-norm clipping."""

from __future__ import annotations

import functools

import jax
import optax

from nlp_jax.train.config import OptimConfig


def learning_rate_schedule(cfg: OptimConfig, total_steps: int) -> optax.Schedule:
    """Linear warmup ``lr * (k + 1) / (warmup + 1)`` for steps k < warmup (no wasted step at lr 0, as
    nanoGPT), then cosine from ``lr`` to ``min_lr`` at ``decay_steps`` and flat after; or constant."""
    if cfg.schedule == "epoch_decay":
        if cfg.steps_per_epoch <= 0:
            raise ValueError("schedule 'epoch_decay' needs optim.steps_per_epoch > 0")
        # epoch e (from 0) runs at lr * rate^max(e + 1 - decay_start_epoch, 0)  (Zaremba et al.'s schedule)
        return optax.exponential_decay(cfg.lr, cfg.steps_per_epoch, cfg.decay_rate, staircase=True,
                                       transition_begin=(cfg.decay_start_epoch - 1) * cfg.steps_per_epoch)
    w = cfg.warmup_steps
    warmup = optax.linear_schedule(cfg.lr / (w + 1), cfg.lr, max(w, 1))
    if cfg.schedule == "constant":
        after = optax.constant_schedule(cfg.lr)
    elif cfg.schedule == "cosine":
        decay = max((cfg.decay_steps or total_steps) - w, 1)
        after = optax.cosine_decay_schedule(cfg.lr, decay, alpha=cfg.min_lr / cfg.lr if cfg.lr else 0.0)
    else:
        raise ValueError(f"schedule must be 'cosine', 'constant' or 'epoch_decay', got {cfg.schedule!r}")
    return optax.join_schedules([warmup, after], [w]) if w > 0 else after


def decay_mask(params):
    """Weight decay on matrices and embeddings (ndim >= 2), not on biases or LayerNorm scales."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


@functools.cache  # one object per setting: trainers with equal settings share their compiled step
def make_optimizer(cfg: OptimConfig, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    schedule = learning_rate_schedule(cfg, total_steps)
    if cfg.name == "adamw":
        base = optax.adamw(schedule, b1=cfg.beta1, b2=cfg.beta2, eps=cfg.eps,
                           weight_decay=cfg.weight_decay, mask=decay_mask)
    elif cfg.name == "sgd":
        base = optax.sgd(schedule)
    else:
        raise ValueError(f"optim.name must be 'adamw' or 'sgd', got {cfg.name!r}")
    tx = optax.chain(optax.clip_by_global_norm(cfg.grad_clip), base) if cfg.grad_clip > 0 else base
    return tx, schedule
