"""A device's local data as the raw sample file the host firmware reads (firmware_stubs/device/README.md).

    offset size        field
    0      8           magic b"DMSKDDT1"
    8      4           n, samples (u32 little-endian)
    12     4           d, features per sample, flattened (u32 little-endian)
    16     4           1 if labels follow, else 0 (u32 little-endian)
    20     4           0 (reserved)
    24     4 * n * d   float32 little-endian features, sample after sample (C order of x)
    then   4 * n       int32 little-endian labels, -1 for an unlabelled sample (only if the flag is 1)

numpy only: the same .npz a `python -m edge run` device reads (x, optionally y) becomes this file.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

MAGIC = b"DMSKDDT1"
HEADER = struct.Struct("<8sIIII")


def samples_bytes(x: np.ndarray, y: np.ndarray | None) -> bytes:
    """The raw sample file of features x (n, ...) and optional integer labels y (n,)."""
    flat = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
    if not np.all(np.isfinite(flat)):
        raise ValueError("device data x holds NaN or infinity; clean the data before converting it")
    out = HEADER.pack(MAGIC, flat.shape[0], flat.shape[1], 0 if y is None else 1, 0) + flat.astype("<f4").tobytes()
    if y is not None:
        labels = np.asarray(y)
        if labels.shape != (flat.shape[0],):
            raise ValueError(f"{labels.shape} labels for {flat.shape[0]} samples; give one label (or -1) per sample")
        out += labels.astype("<i4").tobytes()
    return out


def write_samples(npz_path: Path, out_path: Path) -> Path:
    """Convert a device's .npz (x, optionally y) into the firmware's sample file; return its path."""
    with np.load(npz_path) as data:
        x = data["x"]
        y = data["y"] if "y" in data.files else None
    Path(out_path).write_bytes(samples_bytes(x, y))
    return Path(out_path)
