"""Language-model objectives: next-token cross-entropy (GPT-2) and truncated BPTT (the RNN and LSTM LMs)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from nlp_jax import kernels
from nlp_jax.models.gpt2 import GPT2
from nlp_jax.models.rnn_lm import RNNLM

Array = jax.Array


def lm_loss(model: GPT2, batch: dict, key: Array | None) -> tuple[Array, dict]:
    """Next-token cross-entropy on ``batch = {'inputs': (B, T), 'targets': (B, T)}`` (optional 'mask');
    aux ``tokens``: the number of predicted tokens. With ``config.loss_chunk`` the output layer and the loss
    are taken in chunks of tokens (``kernels.linear_cross_entropy``)."""
    mask, chunk = batch.get("mask"), model.config.loss_chunk
    if chunk:
        _, aux = model(batch["inputs"], key=key, logits=False)
        loss = kernels.linear_cross_entropy(aux["hidden"].astype(jnp.float32), model.output_weight, batch["targets"],
                                            mask=mask, chunk=chunk)
    else:
        logits, _ = model(batch["inputs"], key=key)
        loss = kernels.cross_entropy(logits, batch["targets"], mask=mask)
    tokens = batch["targets"].size if mask is None else jnp.sum(mask)
    vocab = model.config.vocab_size
    bad = sum(jnp.sum((x < 0) | (x >= vocab)) for x in (batch["inputs"], batch["targets"]))
    return loss, {"tokens": tokens, "bad_ids": bad}


def bptt_loss(model: RNNLM, batch: dict, key: Array | None, carry: list, frozen=None) -> tuple[Array, dict, list]:
    """Zaremba et al.'s objective on ``{'inputs', 'targets'}`` (B, T) from the state ``carry`` (the objective
    state, carried from batch to batch: truncated BPTT): the cross-entropy summed over the T steps of the
    window and averaged over the batch (so lr 1 and clip 5 mean what the paper means). Returns (loss, aux,
    the new carry); aux ``token_nll`` is the per-token mean, what perplexity exponentiates. The signature is
    a ``train.Objective``'s loss: ``Objective(bptt_loss, init_state=lambda: model.init_carry(batch))``."""
    logits, aux = model(batch["inputs"], key=key, cache=carry)
    token_nll = kernels.cross_entropy(logits, batch["targets"])
    new_carry = jax.tree.map(jax.lax.stop_gradient, aux["cache"])
    return token_nll * batch["inputs"].shape[1], {"token_nll": token_nll, "tokens": batch["targets"].size}, new_carry
