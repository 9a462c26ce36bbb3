"""BERT weight parity with Hugging Face transformers (peers extra): all-MiniLM-L6-v2's hidden states and
published sentence similarities, and a random BertForPreTraining's MLM and NSP logits."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from nlp_jax.data.wordpiece import WordPieceTokenizer  # noqa: E402
from nlp_jax.models.bert import sentence_embeddings  # noqa: E402
from nlp_jax.models.bert_hf import load_hf_bert, minilm_dir  # noqa: E402

pytestmark = pytest.mark.peers
SENTENCES = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium.",
             "A longer sentence, with punctuation; and enough word pieces to pad the others: unaffable naïveté."]


@nnx.jit
def _encode(model, batch):
    return model(batch["input_ids"], segments=batch["token_type_ids"], attention_mask=batch["attention_mask"])


def _torch(batch):
    return {k: torch.tensor(np.asarray(v)).long() for k, v in batch.items()}


@pytest.fixture(scope="module")
def minilm():
    d = minilm_dir()
    return d, load_hf_bert(d), WordPieceTokenizer.from_pretrained(d)


def test_minilm_hidden_states_equal_transformers_on_a_padded_batch(minilm):
    d, ours, tok = minilm
    batch = tok.encode(SENTENCES)
    assert not batch["attention_mask"].all()  # padded
    with torch.no_grad():
        out = transformers.BertModel.from_pretrained(str(d)).eval()(**_torch(batch))
    h, aux = _encode(ours, {k: jnp.asarray(v) for k, v in batch.items()})
    assert np.max(np.abs(np.asarray(h) - out.last_hidden_state.numpy())) < 1e-5  # padding positions too
    assert np.max(np.abs(np.asarray(aux["pooled"]) - out.pooler_output.numpy())) < 1e-5
    assert ours.fresh_heads == ()


def test_minilm_sentence_similarities_are_the_published_ones(minilm):
    _, ours, tok = minilm
    e = np.asarray(sentence_embeddings(ours, {k: jnp.asarray(v) for k, v in tok.encode(SENTENCES[:3]).items()}))
    sim = e @ e.T
    np.testing.assert_allclose([sim[0, 1], sim[0, 2], sim[1, 2]], [0.6660, 0.1046, 0.1411], atol=5e-5)


def test_minilm_has_no_pretraining_heads_and_says_so(minilm):
    model = load_hf_bert(minilm[0], head="pretraining")
    assert model.fresh_heads == ("mlm_bias", "nsp", "transform", "transform_ln")


@pytest.fixture(scope="module")
def random_pretraining(hf_checkpoint):
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=120, hidden_size=48, num_hidden_layers=3, num_attention_heads=4,
                                  intermediate_size=80, max_position_embeddings=40, type_vocab_size=2)
    return hf_checkpoint(transformers.BertForPreTraining(cfg).eval(),
                         lambda name: "LayerNorm" in name or name.endswith("bias"))


def test_random_bert_for_pretraining_gives_equal_mlm_and_nsp_logits(random_pretraining):
    path, hf = random_pretraining
    ours = load_hf_bert(path, head="pretraining")
    assert ours.fresh_heads == ()
    rng = np.random.default_rng(0)
    batch = {"input_ids": rng.integers(0, 120, (3, 17)),
             "token_type_ids": (np.arange(17) > 8)[None].repeat(3, 0).astype(np.int32),
             "attention_mask": np.arange(17)[None, :] < np.array([[17], [11], [5]])}
    with torch.no_grad():
        out = hf(**_torch(batch))
    logits, aux = _encode(ours, {k: jnp.asarray(v) for k, v in batch.items()})
    assert np.max(np.abs(np.asarray(logits) - out.prediction_logits.numpy())) < 1e-4
    assert np.max(np.abs(np.asarray(aux["nsp_logits"]) - out.seq_relationship_logits.numpy())) < 1e-5


def test_a_wrong_checkpoint_is_refused_by_name(random_pretraining, tmp_path):
    from safetensors.numpy import load_file, save_file

    path, _ = random_pretraining
    config = json.loads((path / "config.json").read_text())
    tensors = load_file(path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({**config, "model_type": "roberta"}))
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="model_type 'roberta' is not a BERT"):
        load_hf_bert(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config))
    damaged = {k: v for k, v in tensors.items() if "layer.1.output.dense" not in k}
    save_file({**damaged, "bert.extra.weight": np.zeros(3, np.float32)}, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"missing \['layers/1/mlp/c_proj/bias'.*unexpected \['extra.weight'\]"):
        load_hf_bert(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere: no config.json"):
        load_hf_bert(tmp_path / "nowhere")


def test_our_saved_checkpoint_loads_in_transformers(random_pretraining, tmp_path):
    from nlp_jax.models.bert_hf import save_hf_bert

    ours = load_hf_bert(random_pretraining[0], head="pretraining")
    hf = transformers.BertForPreTraining.from_pretrained(str(save_hf_bert(ours, tmp_path))).eval()
    batch = {"input_ids": np.arange(12).reshape(2, 6), "token_type_ids": np.zeros((2, 6), np.int32),
             "attention_mask": np.ones((2, 6), bool)}
    with torch.no_grad():
        out = hf(**_torch(batch))
    logits, aux = _encode(ours, {k: jnp.asarray(v) for k, v in batch.items()})
    assert np.max(np.abs(np.asarray(logits) - out.prediction_logits.numpy())) < 1e-4


def test_init_hf_bert_builds_the_architecture_from_config_alone(random_pretraining, tmp_path):
    from nlp_jax.models.bert_hf import init_hf_bert

    path, _ = random_pretraining
    (tmp_path / "config.json").write_text((path / "config.json").read_text())  # no weights beside it
    fresh = nnx.state(init_hf_bert(tmp_path, head="pretraining", seed=3), nnx.Param)
    loaded = nnx.state(load_hf_bert(path, head="pretraining"), nnx.Param)
    assert jax.tree.map(jnp.shape, fresh) == jax.tree.map(jnp.shape, loaded)
    word = lambda state: np.asarray(state["bert"]["embeddings"]["word"]["embedding"][...])  # noqa: E731
    assert not np.allclose(word(fresh), word(loaded))
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        load_hf_bert(tmp_path)
