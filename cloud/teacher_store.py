"""A trained teacher on disk: the Keras model, its held-out exit accuracies and the data to check exports.

Layout of a teacher directory (written by `python -m simulator teacher --out DIR`):
  teacher.keras     the multi-exit Keras model (outputs: exit logits, shallowest first)
  teacher.json      {"num_exits", "input_shape", "num_classes", "exit_accuracies"}
  calibration.npz   x: representative inputs for post-training quantisation
  holdout.npz       x, y: held-out data for accuracy and agreement checks
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf


@dataclass
class TeacherBundle:
    """A trained multi-exit teacher and the data that goes with it."""

    model: tf.keras.Model
    exit_accuracies: list[float]
    calibration_x: np.ndarray
    holdout_x: np.ndarray
    holdout_y: np.ndarray

    @property
    def num_exits(self) -> int:
        return len(self.model.outputs)


def save_teacher_bundle(directory: str | Path, bundle: TeacherBundle) -> Path:
    """Write the bundle's four files into directory (created if needed)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    bundle.model.save(d / "teacher.keras")
    meta = {"num_exits": bundle.num_exits, "input_shape": list(bundle.model.input_shape[1:]),
            "num_classes": int(bundle.model.outputs[0].shape[-1]), "exit_accuracies": bundle.exit_accuracies}
    (d / "teacher.json").write_text(json.dumps(meta, indent=2))
    np.savez_compressed(d / "calibration.npz", x=bundle.calibration_x)
    np.savez_compressed(d / "holdout.npz", x=bundle.holdout_x, y=bundle.holdout_y)
    return d


def load_teacher_bundle(directory: str | Path) -> TeacherBundle:
    """Read a teacher directory, naming any missing file and how to make it."""
    d = Path(directory)
    for name in ("teacher.keras", "teacher.json", "calibration.npz", "holdout.npz"):
        if not (d / name).exists():
            raise FileNotFoundError(f"teacher directory {d} lacks {name}; create it with "
                                    f"`python -m simulator teacher --out {d}`")
    model = tf.keras.models.load_model(d / "teacher.keras", compile=False)
    meta = json.loads((d / "teacher.json").read_text())
    with np.load(d / "calibration.npz") as c, np.load(d / "holdout.npz") as h:
        return TeacherBundle(model, list(meta["exit_accuracies"]), c["x"], h["x"], h["y"])
