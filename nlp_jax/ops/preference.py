"""Learning from pairwise preferences: sequence log-probabilities, the Bradley-Terry reward-model loss and
the DPO family (Rafailov et al. 2023, and the variants the field compares it with).

Notation: for a prompt x with a preferred response y_w and a dispreferred y_l, ``pi_w = log pi(y_w | x)``
(a sum over the response tokens), ``ref_w = log pi_ref(y_w | x)``, and ``h = (pi_w - ref_w) - (pi_l - ref_l)``
the difference of the implicit rewards divided by beta. Losses are means over the pairs; metrics are named
as the field names them (``rewards/chosen``, ``rewards/margins``, ``logps/chosen``, ...).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from nlp_jax.ops.losses import _pick

Array = jax.Array

DPO_LOSSES = ("sigmoid", "cdpo", "robust", "ipo", "hinge", "sigmoid_norm", "simpo")
_NORMALISED = ("ipo", "sigmoid_norm", "simpo")  # these compare per-token mean log-probs


def token_logprobs(logits: Array, tokens: Array) -> Array:
    """``log p(tokens[t] | tokens[<t])`` = log_softmax(logits[t-1])[tokens[t]], (B, T) -> (B, T - 1).

    logits (B, T, V) are one forward pass over tokens (B, T): position t predicts token t + 1."""
    chex.assert_rank([logits, tokens], [3, 2])
    chex.assert_equal_shape_prefix([logits, tokens], 2)
    log_p = jax.nn.log_softmax(logits[:, :-1].astype(jnp.promote_types(logits.dtype, jnp.float32)), axis=-1)
    return _pick(log_p, tokens[:, 1:])


def response_mask_targets(response_mask: Array) -> Array:
    """The response mask (B, T) over tokens, moved onto the (B, T - 1) predictions of :func:`token_logprobs`.

    The first token cannot be predicted (nothing precedes it), so a response must start at position >= 1,
    and must have at least one token: both are checked when the mask is concrete (outside jit), naming the
    rows, since an empty response would otherwise give a log-probability of 0 that looks like certainty."""
    chex.assert_rank(response_mask, 2)
    mask = response_mask.astype(bool)
    if not isinstance(mask, jax.core.Tracer):  # checked where the values are known
        if bool(mask[:, 0].any()):
            rows = [int(i) for i in jnp.flatnonzero(mask[:, 0])[:8]]
            raise ValueError(f"response_mask: rows {rows} mark position 0 as response; a response follows "
                             "at least one prompt token (e.g. BOS)")
        empty = ~mask.any(axis=1)
        if bool(empty.any()):
            rows = [int(i) for i in jnp.flatnonzero(empty)[:8]]
            raise ValueError(f"response_mask: rows {rows} have an empty response (no response token); "
                             "drop them, or make room for the response in the context")
    return mask[:, 1:]


def sequence_logprobs(logits: Array, tokens: Array, response_mask: Array) -> tuple[Array, Array]:
    """(sum, mean) over the response of ``log p(y_t | x, y_<t)``, each (B,), from one forward pass.

    ``sum = sum_t m_t log p(tokens[t] | tokens[<t])`` with m the response mask (prompt and padding are 0);
    ``mean = sum / sum_t m_t`` (the per-token average used by IPO and length-normalised DPO).
    An empty response is an error (see :func:`response_mask_targets`)."""
    return response_sums(token_logprobs(logits, tokens), response_mask)


def response_sums(token_lp: Array, response_mask: Array) -> tuple[Array, Array]:
    """(sum, mean) of :func:`sequence_logprobs` from the token log-probs (B, T - 1) of ``token_logprobs``."""
    mask = response_mask_targets(response_mask)
    total = jnp.where(mask, token_lp, 0.0).sum(-1)
    return total, total / jnp.maximum(mask.sum(-1), 1)


def bradley_terry_loss(r_chosen: Array, r_rejected: Array, margin: Array | None = None,
                       center_coef: float = 0.0) -> tuple[Array, dict]:
    """``L = mean(-log sigma(r_w - r_l - m)) + c * mean((r_w + r_l)^2)`` (Ouyang et al. 2022, eq. 1; the
    optional margin m of Touvron et al. 2023; the reward-centring term of Eisenstein et al. 2023, which
    pins the reward's free offset near 0). r_* (B,). Metrics: ``accuracy`` (r_w > r_l; a tie counts 1/2)
    and ``margin`` (mean r_w - r_l)."""
    chex.assert_rank(r_chosen, 1)
    chex.assert_equal_shape([r_chosen, r_rejected])
    if center_coef < 0:
        raise ValueError(f"center_coef must be >= 0, got {center_coef}")
    diff = r_chosen - r_rejected
    loss = -jax.nn.log_sigmoid(diff - (0.0 if margin is None else margin)).mean()
    if center_coef:
        loss = loss + center_coef * jnp.mean((r_chosen + r_rejected) ** 2)
    accuracy = jnp.mean((diff > 0) + 0.5 * (diff == 0))
    return loss, {"accuracy": accuracy, "margin": diff.mean()}


def _check_dpo(loss_type: str, beta: float, label_smoothing: float, gamma: float, lengths, soft: bool) -> None:
    if soft and loss_type != "sigmoid":
        raise ValueError(f"preference (soft labels) applies to loss_type 'sigmoid', not {loss_type!r}")
    if loss_type not in DPO_LOSSES:
        raise ValueError(f"loss_type must be one of {DPO_LOSSES}, got {loss_type!r}")
    if not beta > 0:
        raise ValueError(f"beta must be > 0 (the KL penalty's strength), got {beta}")
    if not 0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    if label_smoothing and loss_type not in ("cdpo", "robust"):
        raise ValueError(f"label_smoothing applies to loss_type 'cdpo' and 'robust', not {loss_type!r}")
    if gamma and loss_type != "simpo":
        raise ValueError(f"gamma (the target margin) applies to loss_type 'simpo', not {loss_type!r}")
    if loss_type in _NORMALISED and any(n is None for n in lengths):
        raise ValueError(f"loss_type {loss_type!r} compares per-token log-probs: pass chosen_lengths and "
                         "rejected_lengths (response tokens per sequence)")


def dpo_loss(policy_chosen: Array, policy_rejected: Array, ref_chosen: Array, ref_rejected: Array, *,
             beta: float, loss_type: str = "sigmoid", label_smoothing: float = 0.0, gamma: float = 0.0,
             chosen_lengths: Array | None = None, rejected_lengths: Array | None = None,
             reference_free: bool = False, preference: Array | None = None) -> tuple[Array, dict]:
    """The DPO family's loss on summed response log-probs (B,) of the policy and the frozen reference.

    With ``h = (pi_w - ref_w) - (pi_l - ref_l)`` (``ref`` = 0 when ``reference_free``):

    - ``sigmoid``: ``-log sigma(beta h)`` (Rafailov et al. 2023, eq. 7). With ``preference`` q (B,), the
      probability that y_w is preferred (a soft label, e.g. Bradley-Terry's sigma(r_w - r_l) of a known
      reward), the cross-entropy ``-q log sigma(beta h) - (1 - q) log sigma(-beta h)``: its minimum is at
      beta h = logit(q), where the hard label's lies at infinity, so with q = sigma(r_w - r_l) the optimum is
      the KL-regularised one, pi ~ pi_ref exp(r / beta) (the derivation DPO starts from).
    - ``cdpo``: ``-(1 - eps) log sigma(beta h) - eps log sigma(-beta h)``: labels flipped with probability
      eps = ``label_smoothing`` (Mitchell 2023, conservative DPO).
    - ``robust``: ``(-(1 - eps) log sigma(beta h) + eps log sigma(-beta h)) / (1 - 2 eps)``, unbiased under
      label noise eps (Chowdhury et al. 2024).
    - ``ipo``: ``(h - 1 / (2 beta))^2`` on per-token mean log-probs (Azar et al. 2023, eq. 17; the
      averaging is what its authors use): minimised at h = 1 / (2 beta).
    - ``hinge``: ``max(0, 1 - beta h)`` (SLiC, Zhao et al. 2023).
    - ``sigmoid_norm``: ``-log sigma(beta h)`` with every log-prob divided by its response length.
    - ``simpo``: ``-log sigma(beta (pi_w / |y_w| - pi_l / |y_l|) - gamma)``, reference-free with a target
      margin gamma (Meng et al. 2024).

    The implicit rewards ``beta (pi - ref)`` are reported on the log-probs the loss compares (per-token
    means for the normalised losses). Metrics: ``rewards/chosen``, ``rewards/rejected``, ``rewards/margins``,
    ``rewards/accuracies`` (chosen reward > rejected), ``logps/chosen``, ``logps/rejected`` (summed).
    """
    chex.assert_rank(policy_chosen, 1)
    chex.assert_equal_shape([policy_chosen, policy_rejected, ref_chosen, ref_rejected])
    _check_dpo(loss_type, beta, label_smoothing, gamma, (chosen_lengths, rejected_lengths), preference is not None)
    if preference is not None:
        chex.assert_equal_shape([policy_chosen, preference])
    pw, pl, rw, rl = policy_chosen, policy_rejected, ref_chosen, ref_rejected
    if reference_free or loss_type == "simpo":
        rw, rl = jnp.zeros_like(rw), jnp.zeros_like(rl)
    if loss_type in _NORMALISED:
        nw, nl = (jnp.maximum(jnp.asarray(n, pw.dtype), 1) for n in (chosen_lengths, rejected_lengths))
        pw, pl, rw, rl = pw / nw, pl / nl, rw / nw, rl / nl
    h = (pw - rw) - (pl - rl)
    eps = label_smoothing
    q = preference
    losses = {
        "sigmoid": lambda: -jax.nn.log_sigmoid(beta * h) if q is None
        else -q * jax.nn.log_sigmoid(beta * h) - (1 - q) * jax.nn.log_sigmoid(-beta * h),
        "sigmoid_norm": lambda: -jax.nn.log_sigmoid(beta * h),
        "cdpo": lambda: -(1 - eps) * jax.nn.log_sigmoid(beta * h) - eps * jax.nn.log_sigmoid(-beta * h),
        "robust": lambda: (-(1 - eps) * jax.nn.log_sigmoid(beta * h) + eps * jax.nn.log_sigmoid(-beta * h))
        / (1 - 2 * eps),
        "ipo": lambda: (h - 1 / (2 * beta)) ** 2,
        "hinge": lambda: jax.nn.relu(1 - beta * h),
        "simpo": lambda: -jax.nn.log_sigmoid(beta * h - gamma),
    }
    chosen, rejected = beta * (pw - rw), beta * (pl - rl)
    metrics = {"rewards/chosen": chosen.mean(), "rewards/rejected": rejected.mean(),
               "rewards/margins": (chosen - rejected).mean(), "rewards/accuracies": (chosen > rejected).mean(),
               "logps/chosen": policy_chosen.mean(), "logps/rejected": policy_rejected.mean()}
    return losses[loss_type]().mean(), metrics
