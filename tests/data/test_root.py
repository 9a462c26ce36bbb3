import hashlib
from pathlib import Path

import pytest

from nlp_jax.data import root


def test_env_var_sets_the_data_root(tmp_path, monkeypatch):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "input.txt").write_text("hello")
    monkeypatch.setenv(root.ENV_VAR, str(tmp_path))
    assert root.resolve("notes/input.txt") == tmp_path / "notes" / "input.txt"


def test_a_damaged_registered_file_is_refused_when_read_and_a_good_one_hashed_once(tmp_path, monkeypatch):
    shared = root.resolve("tinyshakespeare/input.txt")
    (tmp_path / "data" / "tinyshakespeare").mkdir(parents=True)
    copy = tmp_path / "data" / "tinyshakespeare" / "input.txt"
    copy.write_bytes(shared.read_bytes()[:-1000])  # truncated: 63 characters instead of 65 would train
    monkeypatch.setenv(root.ENV_VAR, str(tmp_path / "data"))
    monkeypatch.setenv(root.CACHE_ENV_VAR, str(tmp_path / "cache"))
    expected = root.REGISTRY["tinyshakespeare/input.txt"].sha256
    with pytest.raises(ValueError, match=f"{copy} is damaged.*expected {expected}"):
        root.resolve("tinyshakespeare/input.txt")
    copy.write_bytes(shared.read_bytes())
    hashed = []
    monkeypatch.setattr(root, "sha256_of", lambda p, real=root.sha256_of: hashed.append(p) or real(p))
    assert root.resolve("tinyshakespeare/input.txt") == copy
    assert root.resolve("tinyshakespeare/input.txt") == copy
    assert len(hashed) == 1  # remembered by size and mtime


def test_missing_unregistered_file_names_path_and_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(root.ENV_VAR, str(tmp_path))
    monkeypatch.setenv(root.CACHE_ENV_VAR, str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError) as err:
        root.resolve("nowhere/file.txt")
    assert str(tmp_path / "nowhere" / "file.txt") in str(err.value) and root.ENV_VAR in str(err.value)


def _fake_remote(tmp_path, content: bytes, sha: str | None = None) -> root.RemoteFile:
    src = tmp_path / "remote.txt"
    src.write_bytes(content)
    return root.RemoteFile(src.as_uri(), sha or hashlib.sha256(content).hexdigest())


def test_download_verifies_checksum_into_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(root.ENV_VAR, str(tmp_path / "empty"))
    monkeypatch.setenv(root.CACHE_ENV_VAR, str(tmp_path / "cache"))
    monkeypatch.setitem(root.REGISTRY, "demo/file.txt", _fake_remote(tmp_path, b"payload"))
    path = root.resolve("demo/file.txt")
    assert path == tmp_path / "cache" / "demo" / "file.txt" and path.read_bytes() == b"payload"


def test_checksum_mismatch_leaves_nothing_and_names_url(tmp_path, monkeypatch):
    monkeypatch.setenv(root.ENV_VAR, str(tmp_path / "empty"))
    monkeypatch.setenv(root.CACHE_ENV_VAR, str(tmp_path / "cache"))
    remote = _fake_remote(tmp_path, b"tampered", sha="0" * 64)
    monkeypatch.setitem(root.REGISTRY, "demo/file.txt", remote)
    with pytest.raises(FileNotFoundError) as err:
        root.resolve("demo/file.txt")
    assert "checksum mismatch" in str(err.value) and remote.url in str(err.value)
    assert not any(Path(tmp_path / "cache").rglob("*file.txt*"))  # nor a temporary


def test_shared_data_matches_registered_checksums():
    for rel in root.REGISTRY:
        assert root.sha256_of(root.resolve(rel)) == root.REGISTRY[rel].sha256


def test_decoding_errors_and_malformed_json_name_the_file(tmp_path, monkeypatch):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "demo" / "tokenizer.json").write_text('{"a": 1,\n "b": }')
    monkeypatch.setenv(root.ENV_VAR, str(tmp_path))
    with pytest.raises(ValueError, match="latin1.txt is not UTF-8 text: .* at byte 3"):
        root.read_text("demo/latin1.txt")
    with pytest.raises(ValueError, match="tokenizer.json is malformed JSON: .* at line 2"):
        root.read_json("demo/tokenizer.json")


def test_the_derived_en_corpus_is_checked_like_every_dataset_and_never_downloaded(tmp_path, monkeypatch):
    """A truncated copy trained silently on 1,889 chunks instead of 342,720 (issue 40, cause 5)."""
    shared = root.resolve("en_corpus/en_corpus_a-z.txt")
    (tmp_path / "data" / "en_corpus").mkdir(parents=True)
    copy = tmp_path / "data" / "en_corpus" / "en_corpus_a-z.txt"
    with open(shared, "rb") as f:
        copy.write_bytes(f.read(200_000))
    monkeypatch.setenv(root.ENV_VAR, str(tmp_path / "data"))
    monkeypatch.setenv(root.CACHE_ENV_VAR, str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="en_corpus_a-z.txt is damaged.*rebuilt as .*PROVENANCE.txt says"):
        root.read_text("en_corpus/en_corpus_a-z.txt")
    copy.unlink()
    with pytest.raises(FileNotFoundError, match="no registered download URL"):
        root.resolve("en_corpus/en_corpus_a-z.txt")
