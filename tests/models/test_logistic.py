import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nlp_jax.models.logistic import fit_logistic_regression, predict_proba
from nlp_jax.ops.counting import CSR


def _data(n=200, f=5, classes=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, f)).astype(np.float32)
    y = np.argmax(x @ rng.normal(size=(f, classes)) + 0.5 * rng.normal(size=(n, classes)), -1)
    return x, y


def _csr(x: np.ndarray) -> CSR:
    rows, cols = np.nonzero(x)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=x.shape[0]))])
    return CSR(indptr, cols, x[rows, cols], x.shape)


@pytest.mark.parametrize("classes", [2, 3])
def test_the_fit_reaches_the_optimum_of_its_objective(classes):
    x, y = _data(classes=classes)
    p = fit_logistic_regression(x, y, l2=1e-2)

    def loss(p):  # the objective it minimises: at its optimum the gradient vanishes
        ce = optax.softmax_cross_entropy_with_integer_labels(x @ p["w"] + p["b"], y).mean()
        return ce + 1e-2 * jnp.sum(p["w"] ** 2)

    grad = jax.grad(loss)(p)
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grad)) < 1e-4
    assert float(loss(p)) < float(loss(jax.tree.map(jnp.zeros_like, p)))
    probs = predict_proba(p, x)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
    assert (np.argmax(probs, -1) == y).mean() > 0.8


def test_a_sparse_matrix_gives_the_dense_fit():
    x, y = _data(n=120, f=8, seed=1)
    x[np.abs(x) < 0.8] = 0.0  # mostly zeros, as a bag of words is
    dense = fit_logistic_regression(x, y, l2=1e-3, steps=200)
    sparse = fit_logistic_regression(_csr(x), y, l2=1e-3, steps=200)
    for k in ("w", "b"):
        np.testing.assert_allclose(sparse[k], dense[k], atol=1e-4)
    np.testing.assert_allclose(predict_proba(sparse, _csr(x)), predict_proba(dense, x), atol=1e-5)


def test_bad_input_names_the_argument():
    x, y = _data(n=20)
    with pytest.raises(ValueError, match="20 rows but y has 19"):
        fit_logistic_regression(x, y[:19])
    with pytest.raises(ValueError, match="class ids >= 0"):
        fit_logistic_regression(x, y - 1)
    p = fit_logistic_regression(x, y, steps=5)
    with pytest.raises(ValueError, match="x has 4 features, the model 5"):
        predict_proba(p, x[:, :4])
