"""Aggregator checkpoints: global weights (safetensors) and round state (JSON), written atomically.

The state is `cloud.round_engine.state_to_json`'s dict; its "version" names the weights file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file


def save_checkpoint(directory: str | Path, weights: dict[str, np.ndarray], state: dict) -> None:
    """Write weights then state, each via a temp file and rename, so a crash leaves the old pair."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    version = int(state["version"])
    tmp = d / "weights.safetensors.tmp"
    save_file({k: np.asarray(v, order="C") for k, v in weights.items()}, str(tmp))
    os.replace(tmp, d / f"weights-v{version}.safetensors")
    tmp = d / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, d / "state.json")
    stale = d / f"weights-v{version - 1}.safetensors"
    stale.unlink(missing_ok=True)


def load_checkpoint(directory: str | Path) -> tuple[dict[str, np.ndarray], dict] | None:
    """The last complete checkpoint in directory (weights, state), or None when there is none."""
    d = Path(directory)
    if not (d / "state.json").exists():
        return None
    try:
        state = json.loads((d / "state.json").read_text())
        version = int(state["version"])
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"checkpoint {d / 'state.json'} is corrupt ({exc}); delete it to start over") from exc
    weights_path = d / f"weights-v{version}.safetensors"
    if not weights_path.exists():
        raise FileNotFoundError(f"checkpoint state names version {version} but {weights_path} is missing; "
                                f"delete {d} to start over")
    return load_file(str(weights_path)), state
