"""Exports are checksummed and their loaders name the damaged file (issue 40, cause 6)."""

import json

import numpy as np
import pytest
from flax import nnx

from nlp_jax.data.exports import MANIFEST
from nlp_jax.models.gpt2 import GPT2, GPT2Config
from nlp_jax.models.gpt2_hf import load_hf_gpt2, save_hf_gpt2


@pytest.fixture
def export(tmp_path):
    return save_hf_gpt2(GPT2(GPT2Config.tiny(), rngs=nnx.Rngs(0)), tmp_path / "export")


def test_an_export_lists_every_file_and_loads_back_equal(export):
    listed = sorted(line.split("  ")[1] for line in (export / MANIFEST).read_text().splitlines())
    assert listed == ["config.json", "model.safetensors"]
    original = GPT2(GPT2Config.tiny(), rngs=nnx.Rngs(0)).wte.embedding[...]
    np.testing.assert_array_equal(load_hf_gpt2(export).wte.embedding[...][:37], original)


def test_a_flipped_byte_is_named_before_anything_is_built(export):
    data = bytearray((export / "model.safetensors").read_bytes())
    data[-5] ^= 0x01  # inside a tensor: safetensors itself would load it silently
    (export / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="model.safetensors does not match its checksum in .*checksums.sha256"):
        load_hf_gpt2(export)


def test_truncated_files_and_another_model_type_are_named_without_a_manifest(export):
    (export / MANIFEST).unlink()  # as a directory from the Hub: the readers still name the file
    whole = (export / "config.json").read_text()
    (export / "config.json").write_text(whole[:40])
    with pytest.raises(ValueError, match="config.json is malformed JSON: .* line"):
        load_hf_gpt2(export)
    (export / "config.json").write_text(json.dumps({**json.loads(whole), "model_type": "bert"}))
    with pytest.raises(ValueError, match="model_type 'bert' is not a GPT-2 checkpoint"):
        load_hf_gpt2(export)
    (export / "config.json").write_text(whole)
    (export / "model.safetensors").write_bytes((export / "model.safetensors").read_bytes()[:100])
    with pytest.raises(ValueError, match="model.safetensors is not a readable safetensors file"):
        load_hf_gpt2(export)
