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
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edge.npz_file import read_npz
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
    """Load a teacher directory: FileNotFoundError names a missing file and the command that makes it, InputError
    a file that is not what `python -m simulator teacher` writes. The small files are checked before TensorFlow."""
    d = Path(directory)
    check_teacher_dir(d)
    fix = f"re-create the directory with `python -m simulator teacher --out {d}`"
    meta = _teacher_meta(d / "teacher.json", fix)
    cal_x = _arrays(d / "calibration.npz", ("x",), fix)[0]
    hx, hy = _arrays(d / "holdout.npz", ("x", "y"), fix)
    if len(cal_x) == 0 or len(hx) == 0 or len(hx) != len(hy):
        raise InputError(f"{d}: calibration and holdout sets must be non-empty and holdout x, y of equal length; {fix}")
    model_path = d / "teacher.keras"
    if not zipfile.is_zipfile(model_path):
        raise InputError(f"{model_path} is not a Keras model archive (.keras is a zip file); {fix}")
    import tensorflow as tf

    try:
        model = tf.keras.models.load_model(model_path, compile=False)
    except Exception as exc:  # Keras raises nearly anything on a damaged archive
        reason = (str(exc).strip().splitlines() or [""])[0][:200]
        raise InputError(f"{model_path} does not load as a Keras model ({type(exc).__name__}: {reason}); "
                         f"{fix}") from None
    if len(meta) != len(model.outputs):
        raise InputError(f"{d / 'teacher.json'} lists {len(meta)} exit accuracies for a teacher with "
                         f"{len(model.outputs)} exits; {fix}")
    digest = hashlib.sha256(model_path.read_bytes()).hexdigest()
    return TeacherBundle(model, meta, cal_x.astype(np.float32), hx.astype(np.float32), hy.astype(np.int64), d, digest)


def _teacher_meta(path: Path, fix: str) -> list[float]:
    """The exit accuracies of teacher.json, checked."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} line {exc.lineno}: not valid JSON ({exc.msg}); {fix}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path} ({exc}); {fix}") from None
    accuracies = meta.get("exit_accuracies") if isinstance(meta, dict) else None
    if (not isinstance(accuracies, list) or not accuracies
            or not all(isinstance(a, int | float) and not isinstance(a, bool) for a in accuracies)):
        raise InputError(f"{path}: field 'exit_accuracies' must be a non-empty list of numbers; {fix}")
    return [float(a) for a in accuracies]


def _arrays(path: Path, names: tuple[str, ...], fix: str) -> list[np.ndarray]:
    """The named numeric arrays of an .npz file, checked."""
    try:
        held = read_npz(path)
    except ValueError as exc:
        raise InputError(f"{path} is not a readable .npz archive ({exc}); {fix}") from None
    missing = [n for n in names if n not in held]
    if missing:
        raise InputError(f"{path} has no array {' or '.join(repr(m) for m in missing)}; it holds {sorted(held)} "
                         f"({fix})")
    for name in names:
        if not np.issubdtype(held[name].dtype, np.number) or held[name].ndim < 1:
            raise InputError(f"{path}: array {name!r} must be numeric, got dtype {held[name].dtype}; {fix}")
    return [held[n] for n in names]
