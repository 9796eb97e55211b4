"""mf.save / mf.load: plain .npz, written atomically."""

import os

import numpy as np
import pytest

import minifcn as mf


def test_round_trip_is_exact_and_plain_numpy(tmp_path, rng):
    state = {
        "conv1_1.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "conv1_1.bias": mf.Tensor(np.zeros(4, np.float32)),
        "meta": '{"iteration": 3}',
        "step": 7,
    }
    path = tmp_path / "ckpt.npz"
    mf.save(path, state)
    loaded = mf.load(path)
    assert list(loaded) == list(state)
    np.testing.assert_array_equal(loaded["conv1_1.weight"], state["conv1_1.weight"])
    assert loaded["conv1_1.weight"].dtype == np.float32
    assert str(loaded["meta"]) == '{"iteration": 3}' and int(loaded["step"]) == 7
    with np.load(path) as raw:  # readable without minifcn
        assert set(raw.files) == set(state)


def test_save_leaves_no_temporary_file(tmp_path):
    mf.save(tmp_path / "a.npz", {"x": np.ones(3)})
    assert os.listdir(tmp_path) == ["a.npz"]


def test_a_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "last.npz"
    mf.save(path, {"x": np.ones(3)})

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of writing

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        mf.save(path, {"x": np.zeros(3)})
    monkeypatch.undo()
    np.testing.assert_array_equal(mf.load(path)["x"], np.ones(3))
    assert os.listdir(tmp_path) == ["last.npz"]


def test_save_rejects_what_npz_cannot_hold(tmp_path):
    with pytest.raises(TypeError, match="entry 'bad' has dtype object"):
        mf.save(tmp_path / "a.npz", {"bad": np.array([None, 1], dtype=object)})
    with pytest.raises(TypeError, match="entry 'bad' is a dict"):
        mf.save(tmp_path / "a.npz", {"bad": {}})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        mf.save(tmp_path / "missing" / "a.npz", {"x": np.ones(1)})


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file .*nothere.npz"):
        mf.load(tmp_path / "nothere.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="junk.npz' is not a readable .npz archive"):
        mf.load(junk)


def test_save_rejects_non_string_keys_and_non_mappings(tmp_path):
    with pytest.raises(TypeError, match="keys must be non-empty strings, got 3"):
        mf.save(tmp_path / "a.npz", {3: np.ones(1)})
    with pytest.raises(TypeError, match="expected a mapping of names to arrays, got list"):
        mf.save(tmp_path / "a.npz", [np.ones(1)])
