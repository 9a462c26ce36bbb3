"""Learning from pairwise preferences: sequence log-probabilities, the Bradley-Terry reward-model loss and
the DPO family (Rafailov et al. 2023, and the variants the field compares it with).

Notation: for a prompt x with a preferred response y_w and a dispreferred y_l, ``pi_w = log pi(y_w | x)``
(a sum over the response tokens), ``ref_w = log pi_ref(y_w | x)``, and ``h = (pi_w - ref_w) - (pi_l - ref_l)``
the difference of the implicit rewards divided by beta (:func:`dpo_margin`). One small function per loss of
the DPO family, each per pair (B,), as optax writes its losses; ``objectives.dpo_objective`` picks one,
averages it and reports :func:`implicit_rewards` (named as the field names them: ``rewards/chosen``, ...).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np

from nlp_jax.ops.losses import _pick

Array = jax.Array


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
    if not isinstance(mask, jax.core.Tracer):  # checked where the values are known, in numpy (a concrete mask
        known = np.asarray(mask)  # closed over by a jitted function: jnp would stage these checks into its trace)
        if known[:, 0].any():
            rows = np.flatnonzero(known[:, 0])[:8].tolist()
            raise ValueError(f"response_mask: rows {rows} mark position 0 as response; a response follows "
                             "at least one prompt token (e.g. BOS)")
        empty = ~known.any(axis=1)
        if empty.any():
            rows = np.flatnonzero(empty)[:8].tolist()
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


def dpo_margin(policy_chosen: Array, policy_rejected: Array, ref_chosen: Array, ref_rejected: Array) -> Array:
    """``h = (log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l))`` (B,): how much more the policy
    than the reference prefers the chosen response, from summed (or per-token mean) response log-probs (B,).
    Every loss of the DPO family below is a function of ``beta h``; reference-free losses pass zeros as the
    reference."""
    chex.assert_rank(policy_chosen, 1)
    chex.assert_equal_shape([policy_chosen, policy_rejected, ref_chosen, ref_rejected])
    return (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)


def dpo_sigmoid_loss(h: Array, beta: float) -> Array:
    """``-log sigma(beta h)`` (B,): DPO's loss (Rafailov et al. 2023, eq. 7), the cheat sheet's. With
    per-token mean log-probs in ``h``, the length-normalised variant."""
    return -jax.nn.log_sigmoid(beta * h)


def dpo_soft_loss(h: Array, beta: float, preference: Array) -> Array:
    """``-q log sigma(beta h) - (1 - q) log sigma(-beta h)`` (B,), with ``preference`` q (B,) the probability
    that y_w is preferred (a soft label, e.g. Bradley-Terry's sigma(r_w - r_l) of a known reward): its minimum
    is at beta h = logit(q), where the hard label's lies at infinity, so with q = sigma(r_w - r_l) the optimum
    is the KL-regularised one, pi ~ pi_ref exp(r / beta) (the derivation DPO starts from)."""
    chex.assert_equal_shape([h, preference])
    return -preference * jax.nn.log_sigmoid(beta * h) - (1 - preference) * jax.nn.log_sigmoid(-beta * h)


def cdpo_loss(h: Array, beta: float, label_smoothing: float) -> Array:
    """``-(1 - eps) log sigma(beta h) - eps log sigma(-beta h)`` (B,): conservative DPO, labels flipped with
    probability eps = ``label_smoothing`` (Mitchell 2023)."""
    eps = label_smoothing
    return -(1 - eps) * jax.nn.log_sigmoid(beta * h) - eps * jax.nn.log_sigmoid(-beta * h)


def robust_dpo_loss(h: Array, beta: float, label_smoothing: float) -> Array:
    """``(-(1 - eps) log sigma(beta h) + eps log sigma(-beta h)) / (1 - 2 eps)`` (B,): unbiased under label
    noise eps = ``label_smoothing`` (Chowdhury et al. 2024)."""
    eps = label_smoothing
    return (-(1 - eps) * jax.nn.log_sigmoid(beta * h) + eps * jax.nn.log_sigmoid(-beta * h)) / (1 - 2 * eps)


def ipo_loss(h: Array, beta: float) -> Array:
    """``(h - 1 / (2 beta))^2`` (B,) (Azar et al. 2023, eq. 17), on per-token mean log-probs (as its authors
    average them): minimised at h = 1 / (2 beta)."""
    return (h - 1 / (2 * beta)) ** 2


def dpo_hinge_loss(h: Array, beta: float) -> Array:
    """``max(0, 1 - beta h)`` (B,) (SLiC, Zhao et al. 2023)."""
    return jax.nn.relu(1 - beta * h)


def simpo_loss(h: Array, beta: float, gamma: float) -> Array:
    """``-log sigma(beta h - gamma)`` (B,) (SimPO, Meng et al. 2024), with h the difference of the per-token
    mean log-probs of y_w and y_l and no reference; gamma is the target margin."""
    return -jax.nn.log_sigmoid(beta * h - gamma)


def orpo_loss(chosen_mean: Array, rejected_mean: Array, lam: float) -> Array:
    """``-log p(y_w) - lam log sigma(log odds(y_w) - log odds(y_l))`` (B,) (ORPO, Hong et al. 2024, eq. 6-7):
    the SFT loss on the chosen response plus the log odds ratio, no reference model. ``*_mean`` are per-token
    mean response log-probs (log p <= 0), ``odds(y) = p / (1 - p)``, so ``log odds = log p - log(1 - p)``
    (-expm1 keeps 1 - p accurate as p nears 1)."""
    chex.assert_equal_shape([chosen_mean, rejected_mean])
    log_odds = lambda lp: lp - jnp.log(-jnp.expm1(lp))  # noqa: E731
    return -chosen_mean - lam * jax.nn.log_sigmoid(log_odds(chosen_mean) - log_odds(rejected_mean))


def kto_reference_point(policy_logps: Array, ref_logps: Array) -> Array:
    """KTO's reference point ``z0 = max(0, mean(log pi(y'|x) - log pi_ref(y'|x)))`` (Ethayarajh et al. 2024,
    sec. 4.1): a batch estimate of KL(pi || pi_ref) from completions y' paired with prompts they do not answer
    (TRL shifts the completions by one within the batch), clamped at 0, with no gradient."""
    return jax.lax.stop_gradient(jnp.maximum(jnp.mean(policy_logps - ref_logps), 0.0))


def kto_loss(logratios: Array, desirable: Array, z0: Array, beta: float, desirable_weight: float = 1.0,
             undesirable_weight: float = 1.0) -> Array:
    """``lambda_y - v(x, y)`` (B,) with ``v = lambda_D sigma(beta (r - z0))`` for a desirable completion and
    ``lambda_U sigma(beta (z0 - r))`` for an undesirable one (KTO, Ethayarajh et al. 2024, eq. 8), where
    ``r = log pi(y|x) - log pi_ref(y|x)`` (``logratios``, summed over the response) and ``z0`` is
    :func:`kto_reference_point`. Examples are unpaired: ``desirable`` (B,) bool labels each one."""
    chex.assert_equal_shape([logratios, desirable])
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    value = jnp.where(desirable, desirable_weight * jax.nn.sigmoid(beta * (logratios - z0)),
                      undesirable_weight * jax.nn.sigmoid(beta * (z0 - logratios)))
    return jnp.where(desirable, desirable_weight, undesirable_weight) - value


def implicit_rewards(policy_chosen: Array, policy_rejected: Array, ref_chosen: Array, ref_rejected: Array,
                     beta: float) -> dict[str, Array]:
    """DPO's implicit rewards ``beta (log pi - log pi_ref)`` of both sides, as the field reports them:
    ``rewards/chosen``, ``rewards/rejected``, ``rewards/margins``, ``rewards/accuracies`` (chosen reward above
    the rejected one), means over the batch."""
    chosen, rejected = beta * (policy_chosen - ref_chosen), beta * (policy_rejected - ref_rejected)
    return {"rewards/chosen": chosen.mean(), "rewards/rejected": rejected.mean(),
            "rewards/margins": (chosen - rejected).mean(), "rewards/accuracies": (chosen > rejected).mean()}


DPO_LOSSES = ("sigmoid", "cdpo", "robust", "ipo", "hinge", "sigmoid_norm", "simpo", "orpo")
NORMALISED = ("ipo", "sigmoid_norm", "simpo", "orpo")  # these compare per-token mean log-probs
REFERENCE_FREE = ("simpo", "orpo")


def check_dpo_arguments(*, loss_type: str, beta: float, label_smoothing: float = 0.0, gamma: float = 0.0,
                        soft: bool = False) -> None:
    """Refuse settings the DPO family cannot mean, naming the argument: an unknown ``loss_type``, beta <= 0,
    ``label_smoothing`` outside [0, 0.5) or on a loss without it, ``gamma`` on a loss other than SimPO, soft
    labels on a loss other than the sigmoid."""
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
    if soft and loss_type != "sigmoid":
        raise ValueError(f"preference (soft labels) applies to loss_type 'sigmoid', not {loss_type!r}")
