"""Multinomial logistic regression on fixed features, dense or sparse (a TF-IDF :class:`CSR` matrix):
the baseline classifier beside every learned representation (frozen BERT embeddings, TF-IDF bags).

    p(y = c | x) = softmax(x W + b)_c,   minimise  mean_i -log p(y_i | x_i) + l2 * ||W||^2

by full-batch L-BFGS (optax, with its zoom line search), so the fit is deterministic and reaches the
optimum (tested: the gradient vanishes). A sparse x is never densified: x W is a segment sum over its
stored values, so 67k SST-2 phrases x 15k words fit in a few MB.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nlp_jax.ops.counting import CSR

Features = np.ndarray | CSR


def _matmul(x: Features | tuple, w: jax.Array) -> jax.Array:
    """x W for a dense x, or for a sparse one given as (row_ids, columns, values, n_rows)."""
    if not isinstance(x, tuple):
        return x @ w
    rows, cols, values, n = x
    return jax.ops.segment_sum(values[:, None] * w[cols], rows, num_segments=n)


def _device(x: Features):
    if isinstance(x, CSR):
        return (jnp.asarray(x.row_ids), jnp.asarray(x.indices), jnp.asarray(x.data, jnp.float32), x.shape[0])
    return jnp.asarray(x, jnp.float32)


def _check(x: Features, y: np.ndarray | None = None) -> None:
    if len(x.shape) != 2:
        raise ValueError(f"x must be (examples, features), got shape {x.shape}")
    if y is not None and len(y) != x.shape[0]:
        raise ValueError(f"x has {x.shape[0]} rows but y has {len(y)} labels")


def fit_logistic_regression(x: Features, y: np.ndarray, *, steps: int = 500, l2: float = 1e-4,
                            classes: int | None = None) -> dict[str, jax.Array]:
    """Parameters ``{'w': (F, C), 'b': (C,)}`` minimising the module's objective; y holds class ids."""
    _check(x, y)
    y = np.asarray(y)
    if y.min() < 0:
        raise ValueError(f"y must hold class ids >= 0, got {int(y.min())}")
    classes = classes or int(y.max()) + 1
    data, labels = _device(x), jnp.asarray(y, jnp.int32)

    def loss(p):
        logits = _matmul(data, p["w"]) + p["b"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean() + l2 * jnp.sum(p["w"] ** 2)

    params = {"w": jnp.zeros((x.shape[1], classes)), "b": jnp.zeros((classes,))}
    opt = optax.lbfgs()
    state = opt.init(params)
    value_and_grad = optax.value_and_grad_from_state(loss)

    def step(_, carry):
        params, state = carry
        value, grad = value_and_grad(params, state=state)
        updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=loss)
        return optax.apply_updates(params, updates), state

    # every step in one compiled loop: one dispatch, not ``steps`` round trips from Python
    return jax.jit(lambda carry: jax.lax.fori_loop(0, steps, step, carry))((params, state))[0]


def predict_proba(params: dict[str, jax.Array], x: Features) -> np.ndarray:
    """(N, C) class probabilities."""
    _check(x)
    if x.shape[1] != params["w"].shape[0]:
        raise ValueError(f"x has {x.shape[1]} features, the model {params['w'].shape[0]}")
    return np.asarray(jax.nn.softmax(_matmul(_device(x), params["w"]) + params["b"], axis=-1))
