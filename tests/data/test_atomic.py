"""Files written whole or not at all (nlp_jax.data.atomic)."""

import numpy as np
import pytest

from nlp_jax.data.atomic import atomic_path, write_atomic


def test_a_crash_mid_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "deep" / "results.json"
    write_atomic(target, '{"a": 1}')
    assert target.read_text() == '{"a": 1}'
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_path(target) as tmp:
            tmp.write_text('{"a": 2, "b"')  # half written
            raise RuntimeError("killed mid-write")
    assert target.read_text() == '{"a": 1}'  # the previous file, whole
    assert [p.name for p in target.parent.iterdir()] == ["results.json"]  # the temporary is gone
    write_atomic(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"


def test_a_suffix_serves_writers_that_insist_on_one(tmp_path):
    target = tmp_path / "pairs.npz"
    with atomic_path(target, ".npz") as tmp:
        assert tmp.name.endswith(".npz") and tmp.parent == tmp_path
        np.savez(tmp, x=np.arange(3))
    with np.load(target) as stored:
        np.testing.assert_array_equal(stored["x"], np.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["pairs.npz"]
