"""Read a teacher directory (layout of cloud/teacher_store.py) without importing cloud/.

  teacher.keras     multi-exit Keras model, outputs = exit logits, shallowest first
  calibration.npz   x: representative inputs (post-training quantisation, QAT fine-tuning)
  holdout.npz       x, y: held-out data every exported artefact is verified on
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from export.errors import InputError

if TYPE_CHECKING:
    import tensorflow as tf

TEACHER_FILES = ("teacher.keras", "calibration.npz", "holdout.npz")


@dataclass(frozen=True)
class TeacherData:
    """The teacher model and the arrays exports are calibrated and verified with."""

    directory: Path
    model: tf.keras.Model
    calibration_x: np.ndarray
    holdout_x: np.ndarray
    holdout_y: np.ndarray
    model_sha256: str

    @property
    def num_exits(self) -> int:
        return len(self.model.outputs)

    def prefix(self, k: int) -> tf.keras.Model:
        """P_k = B1..Bk + Hk as a standalone classifier."""
        return prefix_model(self.model, k, where=f" in {self.directory}")


def prefix_model(teacher: tf.keras.Model, k: int, where: str = "") -> tf.keras.Model:
    """Prefix P_k = B1..Bk + Hk as a standalone classifier sharing the teacher's weights."""
    import tensorflow as tf

    exits = len(teacher.outputs)
    if not 1 <= k <= exits:
        raise InputError(f"prefix p{k} does not exist: the teacher{where} has exits 1..{exits}")
    return tf.keras.Model(teacher.inputs, teacher.outputs[k - 1], name=f"prefix_{k}")


def missing_teacher_files(directory: Path) -> list[str]:
    """Names of the teacher-directory files that are absent."""
    return [name for name in TEACHER_FILES if not (directory / name).is_file()]


def load_teacher_dir(directory: str | Path) -> TeacherData:
    """Load a teacher directory; FileNotFoundError names the missing file and the command that makes it."""
    d = Path(directory)
    missing = missing_teacher_files(d)
    if missing:
        raise FileNotFoundError(f"teacher directory {d} lacks {', '.join(missing)}; "
                                f"create it with `python -m simulator teacher --out {d}`")
    import tensorflow as tf

    model = tf.keras.models.load_model(d / "teacher.keras", compile=False)
    with np.load(d / "calibration.npz") as c, np.load(d / "holdout.npz") as h:
        if "x" not in c or "x" not in h or "y" not in h:
            raise InputError(f"{d}: calibration.npz needs array x and holdout.npz arrays x and y")
        cal_x, hx, hy = c["x"].astype(np.float32), h["x"].astype(np.float32), h["y"].astype(np.int64)
    if len(cal_x) == 0 or len(hx) == 0 or len(hx) != len(hy):
        raise InputError(f"{d}: calibration and holdout sets must be non-empty and holdout x, y of equal length")
    digest = hashlib.sha256((d / "teacher.keras").read_bytes()).hexdigest()
    return TeacherData(d, model, cal_x, hx, hy, digest)
