"""The dispatch: every fast path equals the reference, the choice follows the platform the computation is
lowered for, and an explicit choice is never silently replaced."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nlp_jax import kernels, ops
from nlp_jax.kernels import dispatch
from nlp_jax.kernels import sdpa as A


def qkv(b=2, t=6, s=6, h=3, d=4, seed=0):
    rng = np.random.default_rng(seed)
    return tuple(jnp.asarray(rng.normal(size=(b, n, h, d)), jnp.float32) for n in (t, s, s))


def custom_calls(fn, *args, platform: str) -> set[str]:
    """The FFI targets in ``fn`` lowered for ``platform`` (exported, so no device of it is needed)."""
    if platform == jax.default_backend():
        text = jax.jit(fn).lower(*args).as_text()
    else:
        text = jax.export.export(jax.jit(fn), platforms=(platform,))(*args).mlir_module()
    return set(re.findall(r"custom_call @(nlp_jax\w+)", text))


@pytest.mark.parametrize("kw", [dict(is_causal=True), dict(mask="pad"), dict(mask="pad", is_causal=True), {}])
def test_xla_path_equals_the_reference_with_gradients(kw):
    q, k, v = qkv()
    if kw.get("mask") == "pad":
        kw = {**kw, "mask": ops.key_padding_mask(jnp.array([6, 3]), 6)}
    ref = lambda q, k, v: ops.scaled_dot_product_attention(q, k, v, **kw)  # noqa: E731
    fast = lambda q, k, v: A.attention(q, k, v, implementation="xla", **kw)  # noqa: E731
    np.testing.assert_allclose(jax.jit(fast)(q, k, v), ref(q, k, v), atol=2e-6)
    g_ref = jax.grad(lambda *a: (ref(*a) ** 2).sum(), argnums=(0, 1, 2))(q, k, v)
    g_fast = jax.grad(lambda *a: (fast(*a) ** 2).sum(), argnums=(0, 1, 2))(q, k, v)
    for a, b in zip(g_fast, g_ref):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_xla_path_gives_zeros_on_a_fully_masked_row_and_aligns_causal_to_the_cache():
    q, k, v = qkv(t=3, s=4)
    mask = jnp.ones((2, 1, 3, 4), bool).at[0, :, 1, :].set(False)
    out = A.attention(q, k, v, mask=mask, implementation="xla")
    assert np.all(np.asarray(out[0, 1]) == 0)
    np.testing.assert_allclose(out, ops.scaled_dot_product_attention(q, k, v, mask=mask), atol=2e-6)
    causal = A.attention(q, k, v, is_causal=True, implementation="xla")  # queries are the last 3 of 4
    np.testing.assert_allclose(causal, ops.scaled_dot_product_attention(q, k, v, is_causal=True), atol=2e-6)


def step(q, k, v):
    """Attention, a dense layer, GELU, layer norm and the loss."""
    h = kernels.gelu(kernels.dense(ops.merge_heads(A.attention(q, k, v, is_causal=True)), jnp.ones((12, 12))))
    h = kernels.layer_norm(h, jnp.ones(12))
    return kernels.cross_entropy(h, jnp.zeros(h.shape[:-1], jnp.int32))


def test_auto_follows_the_platform_lowered_for_not_the_default_backend(vector_kernels):
    if not A.kernel_available():
        pytest.skip("no C++ compiler: the kernel is unavailable")
    q, k, v = qkv()
    grad = jax.grad(step, argnums=(0, 1, 2))
    on_cpu = custom_calls(grad, q, k, v, platform="cpu")
    assert {"nlp_jax_causal_attention_fwd", "nlp_jax_causal_attention_bwd", "nlp_jax_matmul", "nlp_jax_gelu_fwd",
            "nlp_jax_layer_norm_fwd", "nlp_jax_xent_fwd"} <= on_cpu
    assert custom_calls(grad, q, k, v, platform="cuda") == set()  # the same function exported for a GPU


def test_with_8_lane_vectors_auto_keeps_the_dense_layer_and_gelu_on_xla(monkeypatch):
    from nlp_jax.kernels import build

    if not A.kernel_available():
        pytest.skip("no C++ compiler: the kernel is unavailable")
    monkeypatch.delenv("NLP_JAX_VECTOR_KERNELS", raising=False)
    monkeypatch.setattr(build, "vector_lanes", lambda: 8)  # an AVX2 CPU
    q, k, v = qkv()
    on_cpu = custom_calls(jax.grad(step, argnums=(0, 1, 2)), q, k, v, platform="cpu")
    assert {"nlp_jax_causal_attention_fwd", "nlp_jax_layer_norm_fwd", "nlp_jax_xent_fwd"} <= on_cpu
    assert not {"nlp_jax_matmul", "nlp_jax_gelu_fwd"} & on_cpu


def test_an_explicit_cpu_choice_fails_to_lower_for_another_platform():
    if not A.kernel_available():
        pytest.skip("no C++ compiler: the kernel is unavailable")
    q, k, v = qkv()
    fn = jax.jit(lambda q, k, v: A.attention(q, k, v, is_causal=True, implementation="cpu"))
    with pytest.raises(ValueError, match="implementation='cpu' runs only on cpu"):
        jax.export.export(fn, platforms=("cuda",))(q, k, v)


def test_explicit_choices_are_never_replaced():
    q, k, v = qkv()
    key = jax.random.key(0)
    for impl in ("xla", "cpu", "cudnn"):  # dropout exists on the reference path only
        with pytest.raises(ValueError, match="dropout"):
            A.attention(q, k, v, is_causal=True, dropout_rate=0.1, dropout_key=key, implementation=impl)
    dropped = A.attention(q, k, v, is_causal=True, dropout_rate=0.5, dropout_key=key)  # 'auto': the reference
    np.testing.assert_array_equal(dropped, ops.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_rate=0.5,
                                                                            dropout_key=key))
    if not dispatch.has_platform("cuda"):
        with pytest.raises(ValueError, match="cudnn"):
            A.attention(*(x.astype(jnp.bfloat16) for x in (q, k, v)), implementation="cudnn")
    with pytest.raises(ValueError, match="soft|integer|smoothing"):
        kernels.cross_entropy(jnp.zeros((2, 5)), jnp.zeros(2, jnp.int32), label_smoothing=0.1, implementation="cpu")


@pytest.mark.parametrize("fn, args", [
    (kernels.attention, qkv()), (kernels.gelu, (jnp.ones(3),)), (kernels.dense, (jnp.ones((2, 3)), jnp.ones((3, 4)))),
])
def test_unknown_implementations_name_the_valid_ones(fn, args):
    with pytest.raises(ValueError, match="implementation must be one of.*unknown implementation 'flash9'"):
        fn(*args, implementation="flash9")
    if fn is not kernels.attention:
        with pytest.raises(ValueError, match="has no 'cudnn' path"):
            fn(*args, implementation="cudnn")


def test_cross_entropy_paths_agree_with_mask_ignore_index_and_gradients():
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=(3, 7, 37)) * 4, jnp.float32)  # V = 37: a partial last vector
    targets = jnp.asarray(rng.integers(0, 37, (3, 7)), jnp.int32).at[0, :2].set(-100)
    mask = jnp.asarray(rng.random((3, 7)) > 0.3)
    out = {}
    for impl in ("reference", "auto"):
        def loss(z, impl=impl):
            return kernels.cross_entropy(z, targets, mask=mask, ignore_index=-100, implementation=impl)
        per_token = kernels.cross_entropy(logits, targets, ignore_index=-100, reduction="none", implementation=impl)
        out[impl] = (loss(logits), per_token, jax.grad(loss)(logits))
    for a, b in zip(out["auto"], out["reference"]):
        np.testing.assert_allclose(a, b, atol=2e-6, rtol=1e-5)
    assert float(jnp.abs(out["auto"][2][0, :2]).max()) == 0.0  # ignored tokens get no gradient
    np.testing.assert_allclose(out["reference"][0], ops.cross_entropy(logits, targets, mask=mask, ignore_index=-100),
                               rtol=1e-6)


def test_auto_keeps_off_the_vector_kernels_where_the_cpu_does_not_suit_them(monkeypatch):
    from nlp_jax.kernels import build

    monkeypatch.setattr(build, "vector_kernels", lambda lanes=8: False)
    q, k, v = qkv()
    assert custom_calls(lambda q, k, v: A.attention(q, k, v, is_causal=True), q, k, v, platform="cpu") == set()
    if A.kernel_available():  # an explicit choice still takes the kernel
        explicit = custom_calls(lambda q, k, v: A.attention(q, k, v, is_causal=True, implementation="cpu"), q, k, v,
                                platform="cpu")
        assert "nlp_jax_causal_attention_fwd" in explicit


@pytest.mark.parametrize("impl", ["reference", "cpu"])
def test_labels_outside_the_vocabulary_give_nan_on_every_path(impl):
    if impl == "cpu" and (jax.default_backend() != "cpu" or not kernels.elementwise.kernel_available()):
        pytest.skip("the C++ CPU kernel is unavailable here")
    logits = jnp.asarray(np.random.default_rng(0).normal(size=(4, 7)), jnp.float32)
    labels = jnp.array([0, 6, 7, -1])  # in range, last class, one past the end, -1 (must not wrap to class 6)
    per_token = np.asarray(kernels.cross_entropy(logits, labels, reduction="none", implementation=impl))
    assert np.isfinite(per_token[:2]).all() and np.isnan(per_token[2:]).all()
    ignored = kernels.cross_entropy(logits, labels.at[3].set(-100), ignore_index=-100, reduction="none",
                                    implementation=impl)
    assert float(ignored[3]) == 0.0  # ignore_index is not out of range
