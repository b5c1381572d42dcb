"""Aggregator checkpoints: round trip, and clear errors for missing or corrupt pieces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cloud.checkpoint import load_checkpoint, save_checkpoint


def _weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"dense_0/kernel": rng.standard_normal((8, 5)).astype(np.float32),
            "dense_0/bias": np.array([-0.0, 1e-45, 3.0, -2.5, 0.0], np.float32),
            "step": np.array(7.0, np.float32)}


STATE = {"round": 4, "version": 3, "privacy_events": [{"gaussian_z": 1.5}],
         "history": [{"round": 1, "accepted": ["d0", "d1"],
                      "rejected": {"total": 1, "counts": {"malformed_payload": 1},
                                   "sample": [["d2", "malformed_payload", "tensor w contains NaN or infinity"]]}}]}


def test_save_then_load_round_trips_weights_bit_exact_and_state(tmp_path: Path) -> None:
    weights = _weights()
    save_checkpoint(tmp_path / "ckpt", weights, STATE)
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert loaded is not None
    got, state = loaded
    assert state == STATE
    assert sorted(got) == sorted(weights)
    for name, arr in weights.items():
        assert got[name].dtype == arr.dtype and got[name].shape == arr.shape, name
        assert got[name].tobytes() == arr.tobytes(), name


def test_a_later_checkpoint_replaces_the_earlier_one(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, _weights(0), STATE)
    later = {**STATE, "round": 5, "version": 4, "history": STATE["history"] + [{"round": 4}]}
    save_checkpoint(tmp_path, _weights(1), later)
    got, state = load_checkpoint(tmp_path)
    assert state == later
    assert got["dense_0/kernel"].tobytes() == _weights(1)["dense_0/kernel"].tobytes()
    assert not list(tmp_path.glob("*.tmp"))
    assert sorted(p.name for p in tmp_path.glob("weights-*")) == ["weights-v4.safetensors"]  # the old one is gone


def test_no_checkpoint_gives_none(tmp_path: Path) -> None:
    assert load_checkpoint(tmp_path) is None
    assert load_checkpoint(tmp_path / "never-created") is None


def test_missing_weights_file_raises_naming_it(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, _weights(), STATE)
    (tmp_path / "weights-v3.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"version 3 but .*weights-v3\.safetensors is missing"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("text", ["{\"round\": 4, \"vers", "[1, 2, 3]", "{\"round\": 4}", "42",
                                  json.dumps({"round": 1, "version": "three"})],
                         ids=["truncated-json", "list", "missing-version", "number", "garbled-version"])
def test_corrupt_state_json_raises_telling_to_delete_it(tmp_path: Path, text: str) -> None:
    save_checkpoint(tmp_path, _weights(), STATE)
    (tmp_path / "state.json").write_text(text)
    with pytest.raises(ValueError, match=r"state\.json is corrupt .*delete it to start over"):
        load_checkpoint(tmp_path)
