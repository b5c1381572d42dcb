"""Examples on disk as .npz (`x` inputs, `y` integer labels): read once, checked, every problem one ValueError.

Used where a user hands the runtime a file: a device's local data (`python -m edge run --data`) and the
aggregator's held-out set (`python -m cloud aggregate --holdout`). Numpy and the standard library only.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np


def load_examples(path: Path, what: str, fix: str, labels_required: bool,
                  lowest_label: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """(x as float32, y as int64 or None) of the .npz at `path`.

    FileNotFoundError when it is missing, ValueError when it is not an .npz archive or its arrays are not
    examples: x numeric with at least one example, all finite; y (required when labels_required) one
    integer label >= lowest_label per example. Every message names `what`, the file and ends with `fix`."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what} {p} not found; {fix}")
    if p.is_dir():
        raise ValueError(f"{what} {p} is a directory; pass the .npz file ({fix})")
    try:
        arrays = read_npz(p)
    except ValueError as exc:
        raise ValueError(f"{what} {p} is not a readable .npz archive ({exc}); {fix}") from None
    wanted = ("x", "y") if labels_required else ("x",)
    missing = [name for name in wanted if name not in arrays]
    if missing:
        raise ValueError(f"{what} {p} has no array {' or '.join(repr(m) for m in missing)}; it holds "
                         f"{sorted(arrays)} ({fix})")
    x = arrays["x"]
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool) or x.ndim < 2 or len(x) == 0:
        raise ValueError(f"{what} {p}: x must be a non-empty numeric array, one example per row, got dtype "
                         f"{x.dtype} and shape {x.shape}; {fix}")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what} {p}: x holds NaN or infinity; {fix}")
    if "y" not in arrays:
        return x, None
    y = arrays["y"]
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.number):
        raise ValueError(f"{what} {p}: y must be one number per example ({len(x)}), got dtype {y.dtype} and "
                         f"shape {y.shape}; {fix}")
    if not (np.all(np.isfinite(y)) and np.all(y == np.round(y)) and np.all(y >= lowest_label)):
        raise ValueError(f"{what} {p}: y must hold integer labels >= {lowest_label}; {fix}")
    return x, y.astype(np.int64)


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz archive (no pickles); ValueError saying in one line why it cannot be read."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        text = str(exc).strip()
        raise ValueError(text.splitlines()[0] if text else type(exc).__name__) from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError("a single .npy array, not an .npz archive of named arrays")
    try:
        with loaded as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # a damaged member
        text = str(exc).strip()
        raise ValueError(text.splitlines()[0] if text else type(exc).__name__) from None


def load_labelled_examples(path: Path, what: str, fix: str) -> tuple[np.ndarray, np.ndarray]:
    """load_examples with labels required: (x as float32, y as int64 labels >= 0)."""
    x, y = load_examples(path, what, fix, labels_required=True)
    assert y is not None  # labels_required
    return x, y
