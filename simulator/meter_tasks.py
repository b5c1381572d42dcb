"""The smart-meter tasks bundled in sktime's wheel, read from its UCR `.ts` files (no download).

PLAID (plug-load appliance identification from current signatures, 11 classes, 1,074 series of
varying length), ACSF1 (appliance power consumption, 10 classes, 200 series of 1,460 readings) and
ItalyPowerDemand (daily load profiles, 2 classes, 1,096 series of 24 hourly readings). TRAIN and
TEST files are pooled (the federated split makes its own splits). Every series is resampled by
linear interpolation to one length (its own length when all are equal and at most `max_length`,
else `max_length`), then min-max scaled to [0, 1] on its own: the shape of a signature is kept, its
absolute level is not. A series is stored as an image of shape (length, 1, 1).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from simulator.data import Dataset

TASKS = {"plaid": "PLAID", "acsf1": "ACSF1", "italy-power": "ItalyPowerDemand"}
MAX_LENGTH = 256


def sktime_data_dir() -> Path:
    """Where sktime's wheel keeps its bundled data sets (found without importing sktime)."""
    spec = importlib.util.find_spec("sktime")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the electricity tasks read the .ts files sktime's wheel ships; "
                                "pip install sktime (requirements.txt pins it)")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def read_ts(path: Path) -> tuple[list[np.ndarray], list[str]]:
    """The series and class labels of a univariate UCR .ts file (lines `v1,v2,...:label` after @data)."""
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; expected a UCR .ts file")
    series, labels, in_data = [], [], False
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            in_data = line.lower() == "@data"
            continue
        values, sep, label = line.rpartition(":")
        if not sep or ":" in values:
            raise ValueError(f"{path}:{number}: expected one univariate series `v1,v2,...:label`")
        try:
            series.append(np.array([float(v) for v in values.split(",")], np.float64))
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: a reading is not a number ({exc})") from exc
        labels.append(label.strip())
    if not series:
        raise ValueError(f"{path} holds no series after @data; expected a UCR .ts file")
    return series, labels


def to_length(series: np.ndarray, length: int) -> np.ndarray:
    """The series resampled to `length` points by linear interpolation (NaN readings filled first)."""
    s = np.asarray(series, np.float64)
    ok = np.isfinite(s)
    if not ok.any():
        return np.zeros(length)
    s = np.interp(np.arange(len(s)), np.flatnonzero(ok), s[ok])
    return np.interp(np.linspace(0, len(s) - 1, length), np.arange(len(s)), s)


def load_task(task: str, max_length: int = MAX_LENGTH) -> Dataset:
    """One bundled electricity task as a Dataset of (N, length, 1, 1) series in [0, 1] and labels 0..K-1."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose digits or one of {sorted(TASKS)} (--task)")
    name = TASKS[task]
    series, labels = [], []
    for part in ("TRAIN", "TEST"):
        s, lab = read_ts(sktime_data_dir() / name / f"{name}_{part}.ts")
        series += s
        labels += lab
    lengths = {len(s) for s in series}
    length = lengths.pop() if len(lengths) == 1 and max(len(s) for s in series) <= max_length else max_length
    x = np.stack([to_length(s, length) for s in series])
    lo, hi = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
    x = (x - lo) / np.where(hi > lo, hi - lo, 1.0)
    classes = sorted(set(labels), key=lambda c: (len(c), c))
    y = np.array([classes.index(c) for c in labels], np.int64)
    return Dataset(x.astype(np.float32)[:, :, None, None], y)
