"""Weight parity with Hugging Face transformers (peers extra): same weights, same logits."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import jax.numpy as jnp  # noqa: E402

from nlp_jax.models.gpt2_hf import load_hf_gpt2  # noqa: E402

pytestmark = pytest.mark.peers


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=101, n_positions=32, n_embd=48, n_layer=3, n_head=4,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # HF initialises LayerNorms to (1, 0): perturb them so the test sees them
        for name, p in model.named_parameters():
            if "ln_" in name:
                p.add_(0.1 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("hf_gpt2")
    model.save_pretrained(path, safe_serialization=True)
    return path, model


def test_logits_match_transformers(hf_dir):
    path, hf_model = hf_dir
    ours = load_hf_gpt2(path)
    tokens = np.random.default_rng(0).integers(0, 101, size=(2, 20))
    with torch.no_grad():
        expected = hf_model(torch.tensor(tokens)).logits.numpy()
    logits, _ = ours(jnp.asarray(tokens))
    assert np.max(np.abs(np.asarray(logits) - expected)) < 1e-4


def test_missing_tensor_is_reported(hf_dir, tmp_path):
    from safetensors.numpy import load_file, save_file

    path, _ = hf_dir
    tensors = load_file(path / "model.safetensors")
    tensors.pop(next(k for k in tensors if k.endswith("h.1.mlp.c_fc.weight")))
    save_file(tensors, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text((path / "config.json").read_text())
    with pytest.raises(KeyError, match="h.1.mlp.c_fc.weight"):
        load_hf_gpt2(tmp_path)
