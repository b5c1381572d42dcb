"""The global student's evaluation hook: accuracy by the same LiteRT program the devices run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cloud.round_engine import Evaluate
from edge.npz_file import load_labelled_examples
from edge.student_runtime import TrainableStudent


def student_evaluator(program: bytes | TrainableStudent, x: np.ndarray, y: np.ndarray,
                      device_holdouts: list[tuple[np.ndarray, np.ndarray]] | None = None) -> Evaluate:
    """An Evaluate giving {"accuracy": top-1 on (x, y)} for any student weights, and with device_holdouts
    also "device_accuracy": the mean over devices of the top-1 on each device's own held-out data."""
    student = program if isinstance(program, TrainableStudent) else TrainableStudent.from_bytes(program)
    flat = np.asarray(x, np.float32).reshape(len(x), -1)
    labels = np.asarray(y)
    kept = [(hx, hy) for hx, hy in device_holdouts or [] if len(hy)]
    sizes = np.array([len(hy) for _, hy in kept], np.int64)
    # every device's holdout in one batch: one pass of the interpreter, whatever the number of devices
    holdout_x = np.concatenate([np.asarray(hx, np.float32).reshape(len(hx), -1) for hx, _ in kept]) if kept else None
    holdout_y = np.concatenate([np.asarray(hy) for _, hy in kept]) if kept else None

    def evaluate(weights: dict[str, np.ndarray]) -> dict[str, float]:
        student.set_weights(weights)
        out = {"accuracy": student.accuracy(flat, labels)}
        if holdout_x is not None:
            correct = np.argmax(student.predict_logits(holdout_x), axis=1) == holdout_y
            out["device_accuracy"] = mean_group_accuracy(correct, sizes)
        return out

    return evaluate


def mean_group_accuracy(correct: np.ndarray, sizes: np.ndarray) -> float:
    """The mean over consecutive groups of `sizes` rows (one per device) of each group's fraction correct."""
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return float(np.mean(np.add.reduceat(correct.astype(np.float64), starts) / sizes))


def holdout_evaluator(program: bytes, npz: Path) -> Evaluate:
    """student_evaluator on a held-out .npz with arrays x, y (checked: edge.npz_file.load_examples), whose
    examples must fit the student program; ValueError names the file or the program and the fix."""
    fix = "`python -m simulator prepare --out DIR` writes DIR/test.npz"
    x, y = load_labelled_examples(npz, "holdout file", fix)
    try:
        student = TrainableStudent.from_bytes(program)
    except (ValueError, RuntimeError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"the bundle's student program does not load in LiteRT ({reason}); re-create the bundle "
                         f"with `python -m simulator prepare --out DIR`") from None
    features = int(np.prod(x.shape[1:]))
    if features != student.input_dim or int(y.max()) >= student.num_classes:
        raise ValueError(f"holdout file {npz}: {features} features per example and labels up to {int(y.max())}, but "
                         f"the student takes {student.input_dim} features and {student.num_classes} classes; pass the "
                         f"test.npz written with this bundle ({fix})")
    return student_evaluator(student, x, y)
