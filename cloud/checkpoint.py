"""Aggregator checkpoints: global weights (safetensors) and round state (JSON), written atomically.

The state is `cloud.round_engine.state_to_json`'s dict; its "version" names the weights file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
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
    """The last complete checkpoint in directory (weights, state), or None when there is none.

    ValueError (FileNotFoundError for a missing weights file) names what is wrong and the way out."""
    d = Path(directory)
    start_over = f"delete {d} to start over, or pass a fresh directory"
    if d.exists() and not d.is_dir():
        raise ValueError(f"checkpoint directory {d} is a file; pass a directory")
    if not (d / "state.json").exists():
        return None
    try:
        state = json.loads((d / "state.json").read_text())
        version = int(state["version"])
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"checkpoint {d / 'state.json'} is corrupt ({exc}); delete it to start over") from exc
    weights_path = d / f"weights-v{version}.safetensors"
    if not weights_path.exists():
        raise FileNotFoundError(f"checkpoint state names version {version} but {weights_path} is missing; "
                                f"delete {d} to start over")
    return read_weights(weights_path, "checkpoint weights", start_over), state


def read_weights(path: str | Path, what: str, fix: str) -> dict[str, np.ndarray]:
    """The named float arrays of a safetensors file; ValueError naming `what`, the file and `fix` if it is
    not a readable safetensors file, holds no tensors, or holds NaN, infinity or non-float tensors."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{what} {p} is a directory, not a safetensors file; {fix}")
    try:
        weights = load_file(str(p))
    except SafetensorError as exc:
        raise ValueError(f"{what} {p} is not a readable safetensors file ({exc}); {fix}") from None
    except OSError as exc:
        raise ValueError(f"cannot read {what} {p} ({exc.strerror}); {fix}") from None
    if not weights:
        raise ValueError(f"{what} {p} holds no tensors; {fix}")
    for name, array in weights.items():
        if not np.issubdtype(array.dtype, np.floating) or not np.all(np.isfinite(array)):
            raise ValueError(f"{what} {p}: tensor {name!r} must hold finite floats (dtype {array.dtype}); {fix}")
    return weights
