"""A trained teacher on disk: the Keras model, its held-out exit accuracies and the data to check exports.

Layout of a teacher directory (written by `python -m simulator teacher --out DIR`):
  teacher.keras     the multi-exit Keras model (outputs: exit logits, shallowest first)
  teacher.json      {"num_exits", "input_shape", "num_classes", "exit_accuracies"}
  calibration.npz   x: representative inputs (post-training quantisation, QAT fine-tuning)
  holdout.npz       x, y: held-out data every exported artefact is verified on
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from export.errors import InputError

if TYPE_CHECKING:  # the commands check a directory before paying for TensorFlow
    import tensorflow as tf

TEACHER_FILES = ("teacher.keras", "teacher.json", "calibration.npz", "holdout.npz")


@dataclass(frozen=True)
class TeacherBundle:
    """A trained multi-exit teacher and its data; directory and model_sha256 are set when read from disk."""

    model: tf.keras.Model
    exit_accuracies: list[float]
    calibration_x: np.ndarray
    holdout_x: np.ndarray
    holdout_y: np.ndarray
    directory: Path | None = None
    model_sha256: str | None = None

    @property
    def num_exits(self) -> int:
        """How many exits (prefixes) the teacher has."""
        return len(self.model.outputs)

    def prefix(self, k: int) -> tf.keras.Model:
        """P_k = B1..Bk + Hk as a standalone classifier."""
        return prefix_model(self.model, k, where=f" in {self.directory}" if self.directory else "")


def prefix_model(teacher: tf.keras.Model, k: int, where: str = "") -> tf.keras.Model:
    """Prefix P_k = B1..Bk + Hk as a standalone classifier sharing the teacher's weights."""
    import tensorflow as tf

    exits = len(teacher.outputs)
    if not 1 <= k <= exits:
        raise InputError(f"prefix p{k} does not exist: the teacher{where} has exits 1..{exits}")
    return tf.keras.Model(teacher.inputs, teacher.outputs[k - 1], name=f"prefix_{k}")


def save_teacher_dir(directory: str | Path, bundle: TeacherBundle) -> Path:
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


def missing_teacher_files(directory: Path) -> list[str]:
    """Names of the teacher-directory files that are absent."""
    return [name for name in TEACHER_FILES if not (directory / name).is_file()]


def check_teacher_dir(directory: str | Path) -> None:
    """FileNotFoundError naming every missing file of TEACHER_FILES and the command that writes them."""
    d = Path(directory)
    missing = missing_teacher_files(d)
    if missing:
        raise FileNotFoundError(f"teacher directory {d} lacks {', '.join(missing)}; create it with "
                                f"`python -m simulator teacher --out {d}`")


def load_teacher_dir(directory: str | Path) -> TeacherBundle:
    """Load a teacher directory; FileNotFoundError names the missing file and the command that makes it."""
    d = Path(directory)
    check_teacher_dir(d)
    import tensorflow as tf

    model = tf.keras.models.load_model(d / "teacher.keras", compile=False)
    meta = json.loads((d / "teacher.json").read_text())
    with np.load(d / "calibration.npz") as c, np.load(d / "holdout.npz") as h:
        if "x" not in c or "x" not in h or "y" not in h:
            raise InputError(f"{d}: calibration.npz needs array x and holdout.npz arrays x and y")
        cal_x, hx, hy = c["x"].astype(np.float32), h["x"].astype(np.float32), h["y"].astype(np.int64)
    if len(cal_x) == 0 or len(hx) == 0 or len(hx) != len(hy):
        raise InputError(f"{d}: calibration and holdout sets must be non-empty and holdout x, y of equal length")
    digest = hashlib.sha256((d / "teacher.keras").read_bytes()).hexdigest()
    return TeacherBundle(model, [float(a) for a in meta["exit_accuracies"]], cal_x, hx, hy, d, digest)
