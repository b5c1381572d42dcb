"""Aggregator checkpoints: global weights (safetensors) and round state (JSON), written atomically."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file


@dataclass
class AggregatorState:
    """Everything needed to resume: the next round, the global version and history so far."""

    next_round: int
    version: int
    rounds_spent: int
    history: list[dict] = field(default_factory=list)


def save_checkpoint(directory: str | Path, weights: dict[str, np.ndarray], state: AggregatorState) -> None:
    """Write weights then state, each via a temp file and rename, so a crash leaves the old pair."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / "weights.safetensors.tmp"
    save_file({k: np.asarray(v, order="C") for k, v in weights.items()}, str(tmp))
    os.replace(tmp, d / f"weights-v{state.version}.safetensors")
    tmp = d / "state.json.tmp"
    tmp.write_text(json.dumps(asdict(state), indent=1))
    os.replace(tmp, d / "state.json")


def load_checkpoint(directory: str | Path) -> tuple[dict[str, np.ndarray], AggregatorState] | None:
    """The last complete checkpoint in directory, or None when there is none."""
    d = Path(directory)
    if not (d / "state.json").exists():
        return None
    try:
        state = AggregatorState(**json.loads((d / "state.json").read_text()))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"checkpoint {d / 'state.json'} is corrupt ({exc}); delete it to start over") from exc
    weights_path = d / f"weights-v{state.version}.safetensors"
    if not weights_path.exists():
        raise FileNotFoundError(f"checkpoint state names version {state.version} but {weights_path} is missing")
    return load_file(str(weights_path)), state
