"""Data sets the user already has on disk, read into a simulator.data.Dataset (nothing is downloaded).

load_dataset(path) picks the format from the path:
  - a directory with train-images-idx3-ubyte[.gz]: MNIST IDX files (t10k-* test files appended if present);
  - a .npz file: Keras-style mnist.npz (x_train, y_train[, x_test, y_test]);
  - a directory with data_batch_1: CIFAR-10 python pickles (data_batch_1..5[, test_batch]);
  - a directory with train/<wnid>/images/ (or wnids.txt): Tiny-ImageNet, its train split, resized;
  - any other directory with subfolders: an image folder <root>/<class>/*.png|jpg|jpeg|bmp, resized;
  - a .csv (or .parquet, with pyarrow) file: meter readings, one series per row, plus a label column.
Images come back as float32 (N, H, W, C) in [0, 1], series as (N, L, 1, 1) min-max scaled over the set;
labels as int64 0..K-1. A bad input raises ValueError or FileNotFoundError naming the file and the format.
"""

from __future__ import annotations

import csv
import gzip
import pickle
import struct
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simulator.data import Dataset

IDX = "MNIST IDX files (train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz], optionally t10k-*)"
NPZ = "a Keras-style mnist.npz holding x_train, y_train (and optionally x_test, y_test)"
CIFAR = "CIFAR-10 python batches (data_batch_1..5, optionally test_batch: pickled dicts with b'data', b'labels')"
IMAGES = "an image folder <root>/<class>/*.png|jpg|jpeg|bmp (or tiny-imagenet-200/train/<wnid>/images/*.JPEG)"
SERIES = "meter readings: one series per row, numeric reading columns and a 'label' (or 'class') column"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
LABEL_COLUMNS = ("label", "class")
FORMATS = (IDX, NPZ, CIFAR, IMAGES, SERIES + " (.csv, or .parquet with pyarrow)")


def _bad(path: Path, problem: str, expected: str) -> ValueError:
    return ValueError(f"{path}: {problem} (expected {expected})")


def num_classes(data: Dataset) -> int:
    """How many classes the labels span (labels from load_dataset are 0..K-1)."""
    return int(data.y.max()) + 1 if len(data.y) else 0


def load_dataset(path: str | Path, *, image_size: tuple[int, int] = (32, 32)) -> Dataset:
    """The data set at path, its format detected from the path (see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory (expected one of: {'; '.join(FORMATS)})")
    if path.is_file():
        suffix = path.suffix.lower()
        loaders = {".npz": load_keras_npz, ".csv": load_series_csv, ".parquet": load_series_parquet}
        if suffix not in loaders:
            raise _bad(path, f"unknown file type {suffix or '(none)'!r}", "a .npz, .csv or .parquet file, or a "
                       "directory holding " + "; ".join((IDX, CIFAR, IMAGES)))
        data = loaders[suffix](path)
    elif _find(path, "train-images-idx3-ubyte"):
        data = load_mnist_idx(path)
    elif (path / "data_batch_1").is_file():
        data = load_cifar10(path)
    elif (path / "train").is_dir() and ((path / "wnids.txt").is_file() or any((path / "train").glob("*/images"))):
        data = load_image_folder(path / "train", image_size)
    elif any(p.is_dir() for p in path.iterdir()):
        data = load_image_folder(path, image_size)
    else:
        raise _bad(path, "directory matches no known layout: looked for train-images-idx3-ubyte[.gz], "
                   "data_batch_1, train/<wnid>/images/ and class subfolders", "; ".join(FORMATS[:4]))
    _, y = np.unique(data.y, return_inverse=True)  # 0..K-1, order kept
    return Dataset(data.x, y.astype(np.int64).reshape(-1))


def _find(directory: Path, name: str) -> Path | None:
    return next((c for c in (directory / name, directory / f"{name}.gz") if c.is_file()), None)


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """One IDX file (gzip or not) as a uint8 array of the shape its big-endian header gives."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as exc:
        raise _bad(path, f"cannot read ({exc})", IDX) from exc
    found = struct.unpack(">I", raw[:4])[0] if len(raw) >= 4 else None
    if found != magic:
        raise _bad(path, f"wrong IDX magic number {found}, not {magic}", IDX)
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise _bad(path, f"truncated IDX header: {len(raw)} bytes, the header alone is {header}", IDX)
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected, present = int(np.prod(dims)), len(raw) - header
    if present < expected:
        raise _bad(path, f"truncated IDX file: header {dims} claims {expected} data bytes, {present} present "
                   f"({expected - present} bytes missing)", IDX)
    return np.frombuffer(raw, np.uint8, expected, header).reshape(dims)


def load_mnist_idx(directory: Path) -> Dataset:
    """MNIST IDX images and labels in directory; the t10k-* test files are appended when present."""
    xs, ys = [], []
    for split in ("train", "t10k"):
        images = _find(directory, f"{split}-images-idx3-ubyte")
        if images is None:
            continue
        labels = _find(directory, f"{split}-labels-idx1-ubyte")
        if labels is None:
            raise FileNotFoundError(f"{directory / f'{split}-labels-idx1-ubyte'}[.gz]: missing, needed for "
                                    f"{images.name} (expected {IDX})")
        x, y = _read_idx(images, 2051), _read_idx(labels, 2049)
        if len(x) != len(y):
            raise _bad(labels, f"{len(y)} labels for the {len(x)} images of {images.name}", IDX)
        xs.append(x)
        ys.append(y)
    return Dataset((np.concatenate(xs).astype(np.float32) / 255.0)[..., None], np.concatenate(ys).astype(np.int64))


def _images_to_unit(x: np.ndarray, path: Path, expected: str) -> np.ndarray:
    if x.ndim not in (3, 4) or not np.issubdtype(x.dtype, np.number):
        raise _bad(path, f"images of shape {x.shape} and dtype {x.dtype}, not (N, H, W[, C]) numbers", expected)
    x = x.astype(np.float32)
    if x.size and x.max() > 1.0:
        x /= 255.0
    return x if x.ndim == 4 else x[..., None]


def load_keras_npz(path: Path) -> Dataset:
    """A Keras-style .npz (x_train, y_train, optionally x_test, y_test), train and test concatenated."""
    try:
        with np.load(path) as arrays:
            found = sorted(arrays.files)
            parts = {k: arrays[k] for k in ("x_train", "y_train", "x_test", "y_test") if k in found}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise _bad(path, f"cannot read ({exc})", NPZ) from exc
    if "x_train" not in parts or "y_train" not in parts:
        raise _bad(path, f"has no x_train/y_train arrays (found {found})", NPZ)
    splits = ("train", "test") if "x_test" in parts and "y_test" in parts else ("train",)
    xs = [_images_to_unit(parts[f"x_{s}"], path, NPZ) for s in splits]
    ys = [parts[f"y_{s}"].reshape(-1).astype(np.int64) for s in splits]
    for s, x, y in zip(splits, xs, ys):
        if len(x) != len(y):
            raise _bad(path, f"{len(y)} labels y_{s} for {len(x)} images x_{s}", NPZ)
    return Dataset(np.concatenate(xs), np.concatenate(ys))


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as f:
            # The user's own local file, not data from the wire: unpickling it is as safe as the file.
            batch = pickle.load(f, encoding="bytes")
    except Exception as exc:  # unpickling can raise nearly anything on a damaged file
        raise _bad(path, f"cannot unpickle ({type(exc).__name__}: {exc})", CIFAR) from exc
    if not isinstance(batch, dict) or b"data" not in batch:
        raise _bad(path, "not a dict with b'data'", CIFAR)
    labels = batch.get(b"labels", batch.get(b"fine_labels"))
    data = np.asarray(batch[b"data"])
    if data.ndim != 2 or data.shape[1] != 3072 or labels is None or len(labels) != len(data):
        raise _bad(path, f"b'data' of shape {data.shape} with {None if labels is None else len(labels)} b'labels', "
                   "not (N, 3072) and N labels", CIFAR)
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), np.asarray(labels, np.int64)


def load_cifar10(directory: Path) -> Dataset:
    """CIFAR-10 python batches data_batch_1..5 (those present) and test_batch, concatenated."""
    files = [directory / f"data_batch_{i}" for i in range(1, 6)] + [directory / "test_batch"]
    batches = [_read_cifar_batch(f) for f in files if f.is_file()]
    x = np.concatenate([b[0] for b in batches]).astype(np.float32) / 255.0
    return Dataset(x, np.concatenate([b[1] for b in batches]))


def load_image_folder(root: Path, size: tuple[int, int] = (32, 32)) -> Dataset:
    """<root>/<class>/**/*.png|jpg|jpeg|bmp, class = subfolder (sorted), resized to size (H, W).

    RGB, or 1 channel if every image is grayscale ("L")."""
    files: list[Path] = []
    labels: list[int] = []
    subfolders = sorted(d for d in root.iterdir() if d.is_dir())
    for d in subfolders:
        images = sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if images:
            labels += [labels[-1] + 1 if labels else 0] * len(images)
            files += images
    if not files:
        raise _bad(root, f"no images in its subfolders {[d.name for d in subfolders]}", IMAGES)
    try:
        from PIL import Image
    except ImportError as exc:
        raise ValueError(f"{root}: reading an image folder needs Pillow (pip install Pillow)") from exc
    arrays, gray = [], True
    for f in files:
        try:
            with Image.open(f) as im:
                gray = gray and im.mode == "L"
                arrays.append(np.asarray(im.convert("RGB").resize((size[1], size[0]), Image.Resampling.BILINEAR)))
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise _bad(f, f"cannot read image ({exc})", IMAGES) from exc
    x = np.stack(arrays).astype(np.float32) / 255.0
    return Dataset(x[..., :1] if gray else x, np.asarray(labels, np.int64))


def _series(path: Path, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Dataset:
    """A table of one series per row (numeric readings + a label column) as a Dataset."""
    names = [str(c).strip().lower() for c in columns]
    label_col = next((names.index(n) for n in LABEL_COLUMNS if n in names), None)
    if label_col is None:
        raise _bad(path, f"no 'label' (or 'class') column among {list(columns)}", SERIES)
    reading_cols = [i for i in range(len(columns)) if i != label_col]
    if not rows or not reading_cols:
        raise _bad(path, f"{len(rows)} rows and {len(reading_cols)} reading columns, need at least one of each", SERIES)
    x = np.empty((len(rows), len(reading_cols)), np.float64)
    for r, row in enumerate(rows):
        if len(row) != len(columns):
            raise _bad(path, f"row {r + 1} has {len(row)} cells, the header {len(columns)}", SERIES)
        for j, c in enumerate(reading_cols):
            try:
                x[r, j] = float(row[c])
            except (TypeError, ValueError):
                raise _bad(path, f"non-numeric reading {row[c]!r} in column {columns[c]!r}, row {r + 1}",
                           SERIES) from None
    if not np.isfinite(x).all():
        raise _bad(path, "readings include NaN or infinity", SERIES)
    span = x.max() - x.min()
    x = (x - x.min()) / span if span > 0 else np.zeros_like(x)
    raw = [str(row[label_col]).strip() for row in rows]
    try:
        keys: list[float] | list[str] = [float(v) for v in raw]  # numeric labels sort as numbers
    except ValueError:
        keys = raw
    _, y = np.unique(np.asarray(keys), return_inverse=True)
    return Dataset(x.astype(np.float32)[:, :, None, None], y.astype(np.int64).reshape(-1))


def load_series_csv(path: Path) -> Dataset:
    """Meter readings as CSV: a header row, one series per row, a 'label' (or 'class') column."""
    try:
        with path.open(newline="") as f:
            table = [row for row in csv.reader(f) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise _bad(path, f"cannot read CSV ({exc})", SERIES) from exc
    if not table:
        raise _bad(path, "empty file", SERIES)
    return _series(path, table[0], table[1:])


def load_series_parquet(path: Path) -> Dataset:
    """Meter readings as Parquet (needs pyarrow), laid out as for load_series_csv."""
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ValueError(f"{path}: reading Parquet needs pyarrow: pip install pyarrow, or convert the file to CSV "
                         f"(expected {SERIES})") from exc
    try:
        table = pq.read_table(path).to_pydict()
    except (OSError, ValueError) as exc:
        raise _bad(path, f"cannot read Parquet ({exc})", SERIES) from exc
    columns = list(table)
    return _series(path, columns, [list(r) for r in zip(*table.values())])
