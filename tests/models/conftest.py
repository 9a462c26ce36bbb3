"""Shared by the Hugging Face parity tests: a small random HF model saved as a checkpoint directory."""

import pytest


@pytest.fixture(scope="module")
def hf_checkpoint(tmp_path_factory):
    """``hf_checkpoint(model, perturbed)`` saves ``model`` (a seeded random transformers model) with
    safetensors and returns (path, model). HF initialises LayerNorms to (1, 0) and biases to 0, which would
    hide a swapped or dropped one: the parameters whose names satisfy ``perturbed`` get seeded noise first."""
    import torch

    def save(model, perturbed):
        with torch.no_grad():
            for name, p in model.named_parameters():
                if perturbed(name):
                    p.add_(0.1 * torch.randn_like(p))
        path = tmp_path_factory.mktemp(type(model).__name__)
        model.save_pretrained(path, safe_serialization=True)
        return path, model

    return save
