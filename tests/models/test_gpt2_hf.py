"""Weight parity with Hugging Face transformers (peers extra): same weights, same logits."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import jax.numpy as jnp  # noqa: E402

from nlp_jax.models.gpt2_hf import load_hf_gpt2, save_hf_gpt2  # noqa: E402

pytestmark = pytest.mark.peers


@pytest.fixture(scope="module")
def hf_dir(hf_checkpoint):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=101, n_positions=32, n_embd=48, n_layer=3, n_head=4,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return hf_checkpoint(transformers.GPT2LMHeadModel(cfg).eval(), lambda name: "ln_" in name)


def test_logits_match_transformers(hf_dir):
    path, hf_model = hf_dir
    ours = load_hf_gpt2(path)
    tokens = np.random.default_rng(0).integers(0, 101, size=(2, 20))
    with torch.no_grad():
        expected = hf_model(torch.tensor(tokens)).logits.numpy()
    logits, _ = ours(jnp.asarray(tokens))
    assert np.max(np.abs(np.asarray(logits) - expected)) < 1e-4


def test_a_saved_policy_opens_in_transformers_with_the_same_logits(tmp_path):
    from flax import nnx

    from nlp_jax.models.gpt2 import GPT2, GPT2Config

    ours = GPT2(GPT2Config(vocab_size=70, block_size=24, n_layer=2, n_head=2, n_embd=32, vocab_multiple=64),
                rngs=nnx.Rngs(3))
    ours.ln_f.bias[...] = ours.ln_f.bias[...] + 0.3  # not HF's init, so a dropped tensor shows
    save_hf_gpt2(ours, tmp_path, bos_token_id=1)
    hf_model = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    assert hf_model.config.bos_token_id == 1
    assert hf_model.config.resid_pdrop == hf_model.config.attn_pdrop == 0.0  # ours has no dropout: nor has theirs
    tokens = np.random.default_rng(1).integers(0, 70, size=(2, 12))
    with torch.no_grad():
        expected = hf_model(torch.tensor(tokens)).logits.numpy()
    for model in (ours, load_hf_gpt2(tmp_path)):
        assert np.max(np.abs(np.asarray(model(jnp.asarray(tokens))[0]) - expected)) < 1e-4


def test_missing_tensor_is_reported(hf_dir, tmp_path):
    from safetensors.numpy import load_file, save_file

    path, _ = hf_dir
    tensors = load_file(path / "model.safetensors")
    tensors.pop(next(k for k in tensors if k.endswith("h.1.mlp.c_fc.weight")))
    save_file(tensors, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text((path / "config.json").read_text())
    with pytest.raises(KeyError, match="h.1.mlp.c_fc.weight"):
        load_hf_gpt2(tmp_path)


def test_an_untied_lm_head_is_refused_not_dropped(hf_dir, tmp_path):
    from safetensors.numpy import load_file, save_file

    path, _ = hf_dir
    tensors = load_file(path / "model.safetensors")
    wte = next(k for k in tensors if k.endswith("wte.weight"))
    tensors["lm_head.weight"] = tensors[wte] + 0.5  # an output layer of its own
    save_file(tensors, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text((path / "config.json").read_text())
    with pytest.raises(ValueError, match="lm_head.weight differs from wte.weight"):
        load_hf_gpt2(tmp_path)


def test_training_trajectory_matches_torch_adamw(hf_dir):
    """Same weights, same batches: our jitted train step (clip + AdamW + warmup/cosine, decay on ndim >= 2)
    follows PyTorch's AdamW on the transformers model step for step."""
    import copy

    from nlp_jax.objectives import Objective, lm_loss
    from nlp_jax.train.config import OptimConfig
    from nlp_jax.train.optim import learning_rate_schedule
    from nlp_jax.train.trainer import Trainer

    path, hf_model = hf_dir
    hf_model = copy.deepcopy(hf_model).train()
    optim = OptimConfig(lr=3e-3, min_lr=3e-4, warmup_steps=5, beta2=0.99, weight_decay=0.1, grad_clip=1.0)
    steps = 25
    trainer = Trainer(load_hf_gpt2(path), Objective.of(lm_loss), optim, steps)
    params = dict(hf_model.named_parameters())
    groups = [{"params": [p for p in params.values() if p.dim() >= 2], "weight_decay": optim.weight_decay},
              {"params": [p for p in params.values() if p.dim() < 2], "weight_decay": 0.0}]
    torch_opt = torch.optim.AdamW(groups, lr=optim.lr, betas=(optim.beta1, optim.beta2), eps=optim.eps)
    lr_at = learning_rate_schedule(optim, steps)
    rng = np.random.default_rng(1)
    for k in range(steps):
        tokens = rng.integers(0, 101, size=(4, 17))
        batch = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}
        metrics = trainer.step(batch)
        for g in torch_opt.param_groups:
            g["lr"] = float(lr_at(k))
        out = hf_model(torch.tensor(batch["inputs"]), labels=None)
        targets = torch.tensor(batch["targets"]).reshape(-1)
        loss = torch.nn.functional.cross_entropy(out.logits.reshape(-1, 101), targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(hf_model.parameters(), optim.grad_clip)
        torch_opt.step()
        torch_opt.zero_grad(set_to_none=True)
        np.testing.assert_allclose(float(metrics["loss"]), loss.item(), rtol=2e-4, err_msg=f"step {k}")
