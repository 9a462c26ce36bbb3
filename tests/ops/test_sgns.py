import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nlp_jax import kernels
from nlp_jax.kernels import sgns as sgns_cpu
from nlp_jax.ops.sampling import alias_table
from nlp_jax.ops.sgns import cbow_update, sgns_loss, sgns_step, skipgram_update, window_contexts

V, D, K, W = 40, 6, 3, 2


def rand(*shape, seed=0, scale=0.5):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * scale)


def test_sgns_loss_matches_the_equation_in_float64():
    h, u = np.asarray(rand(2, D), np.float64), np.asarray(rand(2, 1 + K, D, seed=1), np.float64)
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    expected = [-np.log(sig(u[b, 0] @ h[b])) - sum(np.log(sig(-u[b, i] @ h[b])) for i in range(1, 1 + K))
                for b in range(2)]
    np.testing.assert_allclose(sgns_loss(jnp.asarray(h), jnp.asarray(u)), expected, rtol=1e-5)


def test_closed_form_step_is_minus_lr_times_the_gradient():
    h, u, lr = rand(3, D), rand(3, 1 + K, D, seed=1), 0.1
    weight = jnp.ones((3, 1 + K)).at[1, 2].set(0.0)  # a dropped negative
    gh, gu = jax.grad(lambda h, u: sgns_loss(h, u, weight).sum(), argnums=(0, 1))(h, u)
    dh, du = sgns_step(h, u, weight, lr)
    np.testing.assert_allclose(dh, -lr * gh, atol=1e-6)
    np.testing.assert_allclose(du, -lr * gu, atol=1e-6)


def test_skipgram_update_touches_only_its_rows_and_skips_the_true_word_as_negative():
    w_in, w_out = rand(V, D), rand(V, D, seed=1)
    centres, contexts = jnp.array([0, 1]), jnp.array([2, 3])
    negatives = jnp.array([[4, 5, 2], [6, 7, 8]])  # pair 0 drew its own context word: skipped
    new_in, new_out = skipgram_update(w_in, w_out, centres, contexts, negatives, jnp.ones(2), 0.1)
    changed_in = np.flatnonzero(np.abs(np.asarray(new_in - w_in)).sum(1))
    changed_out = np.flatnonzero(np.abs(np.asarray(new_out - w_out)).sum(1))
    np.testing.assert_array_equal(changed_in, [0, 1])
    np.testing.assert_array_equal(changed_out, [2, 3, 4, 5, 6, 7, 8])
    # row 2 gets exactly one (positive) update
    g = 1 - jax.nn.sigmoid(w_in[0] @ w_out[2])
    np.testing.assert_allclose(new_out[2], w_out[2] + 0.1 * g * w_in[0], atol=1e-6)


def test_cbow_update_moves_every_context_row_by_the_same_step():
    w_in, w_out = rand(V, D), rand(V, D, seed=1)
    contexts = jnp.array([[1, 2, -1]])
    new_in, _ = cbow_update(w_in, w_out, jnp.array([0]), contexts, jnp.array([[5, 6, 7]]), jnp.ones(1), 0.1)
    h = (w_in[1] + w_in[2]) / 2
    dh, _ = sgns_step(h[None], w_out[jnp.array([[0, 5, 6, 7]])], jnp.ones((1, 4)), 0.1)
    np.testing.assert_allclose(new_in[1] - w_in[1], dh[0], atol=1e-6)
    np.testing.assert_allclose(new_in[2] - w_in[2], dh[0], atol=1e-6)
    np.testing.assert_array_equal(new_in[3:], w_in[3:])


def test_window_contexts_match_a_loop():
    rng = np.random.default_rng(0)
    docs = np.array([-1, -1, 0, 0, 0, 1, 1, 1, 1, -1, -1])
    reach = rng.integers(1, W + 1, len(docs))
    pos, ok = window_contexts(jnp.asarray(docs), jnp.asarray(reach), W)
    offsets = [-1, -2, 1, 2]
    for p, i in enumerate(range(W, len(docs) - W)):
        for s, off in enumerate(offsets):
            expected = abs(off) <= reach[i] and docs[i + off] == docs[i]
            assert bool(ok[p, s]) == expected and int(pos[p, s]) == i + off


def chunk(seed=0, m=24):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, V, m)
    docs = np.repeat(np.arange(4), m // 4)
    docs[:W], docs[-W:] = -1, -1  # margins beyond the stream
    reach = rng.integers(1, W + 1, m)
    bounds = np.array([W, m - W - 3])  # the last 3 centres are not trained in this call
    return tokens, docs, reach, bounds


@pytest.mark.parametrize("sg", [True, False])
def test_xla_path_with_batch_one_equals_the_cpu_kernel(sg):
    if shutil.which("c++") is None or jax.default_backend() != "cpu":
        pytest.skip("no C++ compiler or not on CPU: the CPU kernel cannot run here")
    assert sgns_cpu.kernel_available()
    tokens, docs, reach, bounds = chunk()
    m = len(tokens)
    rng = np.random.default_rng(1)
    shape = (m, 2 * W, K) if sg else (m, K)
    negatives = np.argsort(rng.random((*shape[:-1], V)), axis=-1)[..., :K]  # distinct within an example
    noise = tuple(map(jnp.asarray, alias_table(np.ones(V))))
    args = (rand(V, D), rand(V, D, seed=1), *map(jnp.asarray, (tokens, docs, reach, bounds)),
            jnp.array([0.05, 0.01]), noise, jax.random.key(0))
    common = dict(window=W, negative=K, sg=sg, batch=1, negatives=jnp.asarray(negatives))
    xla = kernels.sgns_train(*args, implementation="reference", **common)
    cpu = kernels.sgns_train(*args, implementation="cpu", threads=1, **common)
    for a, b in zip(xla, cpu):
        np.testing.assert_allclose(a, b, atol=2e-6)
    assert float(jnp.abs(xla[0] - args[0]).max()) > 1e-3  # it trained


@pytest.mark.parametrize("impl", ["reference", "cpu"])
def test_untrained_positions_stay_untouched_and_drawn_negatives_follow_the_noise(impl):
    if impl == "cpu" and (jax.default_backend() != 'cpu' or not sgns_cpu.kernel_available()):
        pytest.skip("no C++ compiler: the CPU kernel cannot be built here")
    tokens, docs, reach, bounds = chunk(m=400)
    tokens = np.where(np.arange(len(tokens)) < 200, tokens % 10, 10 + tokens % 10)  # first centres: words 0-9
    bounds = np.array([W, 150])
    weights = np.zeros(V)
    weights[30:] = 1.0  # negatives only among words 30..39
    noise = tuple(map(jnp.asarray, alias_table(weights)))
    w_in, w_out = rand(V, D), rand(V, D, seed=1)
    new_in, new_out = kernels.sgns_train(w_in, w_out, *map(jnp.asarray, (tokens, docs, reach, bounds)),
                                         jnp.array([0.05, 0.05]), noise, jax.random.key(3), window=W, negative=K,
                                         sg=True, batch=8, implementation=impl, threads=2)
    moved_in = np.flatnonzero(np.abs(np.asarray(new_in - w_in)).sum(1))
    moved_out = np.flatnonzero(np.abs(np.asarray(new_out - w_out)).sum(1))
    assert set(moved_in) <= set(range(10))  # only centres inside bounds trained
    assert set(moved_out) <= set(range(10)) | set(range(30, 40))  # contexts (margin included) and noise words
    assert set(range(30, 40)) <= set(moved_out)


def test_cpu_kernel_rejects_ids_outside_the_vocabulary():
    if jax.default_backend() != 'cpu' or not sgns_cpu.kernel_available():
        pytest.skip("no C++ compiler: the CPU kernel cannot be built here")
    tokens, docs, reach, bounds = chunk()
    tokens[3] = V  # one past the end
    noise = tuple(map(jnp.asarray, alias_table(np.ones(V))))
    with pytest.raises(Exception, match="lie in"):
        kernels.sgns_train(rand(V, D), rand(V, D, seed=1), *map(jnp.asarray, (tokens, docs, reach, bounds)),
                   jnp.array([0.05, 0.01]), noise, jax.random.key(0), window=W, negative=K, sg=True, batch=1,
                   implementation="cpu", threads=1)
