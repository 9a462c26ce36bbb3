import hashlib
from pathlib import Path

import pytest

from nlp_jax.data import root


def test_env_var_sets_the_data_root(tmp_path, monkeypatch):
    (tmp_path / "tinyshakespeare").mkdir()
    (tmp_path / "tinyshakespeare" / "input.txt").write_text("hello")
    monkeypatch.setenv(root.ENV_VAR, str(tmp_path))
    assert root.resolve("tinyshakespeare/input.txt") == tmp_path / "tinyshakespeare" / "input.txt"


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
    assert not any(Path(tmp_path / "cache").rglob("file.txt*"))


def test_shared_data_matches_registered_checksums():
    for rel in root.REGISTRY:
        assert root.sha256_of(root.resolve(rel)) == root.REGISTRY[rel].sha256
