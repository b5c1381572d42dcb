"""simulator.loaders: tiny files in every supported format, and every bad input named with its file and format."""

from __future__ import annotations

import gzip
import pickle
import struct
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simulator.loaders import load_dataset, num_classes

RNG = np.random.default_rng(0)


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """A hand-written IDX file: big-endian magic, big-endian dims, then the uint8 data."""
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()


def write_idx(directory: Path, split: str, images: np.ndarray, labels: np.ndarray, gz: bool = False) -> None:
    directory.mkdir(exist_ok=True)
    files = ((f"{split}-images-idx3-ubyte", images, 2051), (f"{split}-labels-idx1-ubyte", labels, 2049))
    for name, array, magic in files:
        data = idx_bytes(array, magic)
        if gz:
            with gzip.open(directory / f"{name}.gz", "wb") as f:
                f.write(data)
        else:
            (directory / name).write_bytes(data)


def mnist_like(n: int) -> np.ndarray:
    images = RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255
    return images


def write_cifar_batch(path: Path, data: np.ndarray, labels: list[int]) -> None:
    with path.open("wb") as f:
        pickle.dump({b"batch_label": b"x", b"data": data, b"labels": labels}, f)


def cifar_like(n: int) -> np.ndarray:
    """n images, channel-first rows of 3072: red plane 10 + i, green 100, blue 200."""
    planes = [np.full((n, 1024), 100, np.uint8) for _ in range(3)]
    planes[0] = (10 + np.arange(n, dtype=np.uint8))[:, None].repeat(1024, 1)
    planes[2][:] = 200
    return np.concatenate(planes, axis=1)


def write_image_folder(root: Path, classes: dict[str, list[tuple[str, object]]], suffix: str = ".png") -> None:
    """classes: name -> [(mode, colour)], one image each, sizes differing to exercise the resize."""
    for name, images in classes.items():
        (root / name).mkdir(parents=True)
        for i, (mode, colour) in enumerate(images):
            Image.new(mode, (20 + 3 * i, 24), colour).save(root / name / f"{name}_{i}{suffix}")


# --- MNIST IDX -----------------------------------------------------------------------------------------------------

def test_mnist_idx_directory_loads_as_float32_nhwc_images_in_the_unit_range(tmp_path: Path) -> None:
    images = mnist_like(5)
    write_idx(tmp_path / "mnist", "train", images, np.array([0, 1, 2, 3, 4]))
    data = load_dataset(tmp_path / "mnist")
    assert data.x.shape == (5, 28, 28, 1) and data.x.dtype == np.float32
    assert data.x.min() == 0.0 and data.x.max() == 1.0
    np.testing.assert_allclose(data.x[..., 0], images / 255.0, rtol=1e-6)
    assert data.y.dtype == np.int64 and data.y.tolist() == [0, 1, 2, 3, 4]


def test_mnist_idx_train_and_t10k_files_are_concatenated_train_first(tmp_path: Path) -> None:
    train, test = mnist_like(5), mnist_like(2)
    write_idx(tmp_path, "train", train, np.array([0, 1, 2, 0, 1]))
    write_idx(tmp_path, "t10k", test, np.array([2, 2]))
    data = load_dataset(str(tmp_path))
    assert len(data) == 7
    np.testing.assert_allclose(data.x[5:, ..., 0], test / 255.0, rtol=1e-6)
    assert data.y.tolist() == [0, 1, 2, 0, 1, 2, 2]


def test_gzipped_idx_files_read_the_same_as_plain_ones(tmp_path: Path) -> None:
    images, labels = mnist_like(5), np.array([4, 3, 2, 1, 0])
    write_idx(tmp_path / "plain", "train", images, labels)
    write_idx(tmp_path / "gz", "train", images, labels, gz=True)
    write_idx(tmp_path / "gz", "t10k", images[:2], labels[:2], gz=True)
    plain, gz = load_dataset(tmp_path / "plain"), load_dataset(tmp_path / "gz")
    np.testing.assert_array_equal(gz.x[:5], plain.x)
    assert gz.y.tolist() == [4, 3, 2, 1, 0, 4, 3]


def test_truncated_idx_file_names_the_file_and_the_bytes_missing(tmp_path: Path) -> None:
    write_idx(tmp_path, "train", mnist_like(5), np.arange(5))
    images = tmp_path / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(ValueError) as info:
        load_dataset(tmp_path)
    message = str(info.value)
    assert str(images) in message and "MNIST IDX" in message
    assert "100 bytes missing" in message and str(5 * 28 * 28) in message


# --- Keras npz -----------------------------------------------------------------------------------------------------

def test_keras_npz_concatenates_train_and_test(tmp_path: Path) -> None:
    path = tmp_path / "mnist.npz"
    x_train, x_test = mnist_like(4), mnist_like(2)
    np.savez(path, x_train=x_train, y_train=np.array([0, 1, 0, 1], np.uint8), x_test=x_test,
             y_test=np.array([2, 2], np.uint8))
    data = load_dataset(path)
    assert data.x.shape == (6, 28, 28, 1) and data.x.dtype == np.float32
    assert data.x.min() >= 0.0 and data.x.max() <= 1.0
    np.testing.assert_allclose(data.x[4:, ..., 0], x_test / 255.0, rtol=1e-6)
    assert data.y.dtype == np.int64 and data.y.tolist() == [0, 1, 0, 1, 2, 2]


def test_keras_npz_without_test_arrays_loads_the_train_arrays(tmp_path: Path) -> None:
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=mnist_like(3), y_train=np.array([1, 0, 1]))
    data = load_dataset(path)
    assert data.x.shape == (3, 28, 28, 1) and data.y.tolist() == [1, 0, 1]


def test_labels_that_skip_values_are_renumbered_0_to_k_minus_1(tmp_path: Path) -> None:
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=mnist_like(4), y_train=np.array([7, 3, 7, 9]))
    data = load_dataset(path)
    assert data.y.tolist() == [1, 0, 1, 2]
    assert num_classes(data) == 3


# --- CIFAR-10 ------------------------------------------------------------------------------------------------------

def test_cifar_batches_become_nhwc_rgb_with_the_test_batch_appended(tmp_path: Path) -> None:
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    write_cifar_batch(root / "data_batch_1", cifar_like(3), [0, 1, 2])
    write_cifar_batch(root / "data_batch_2", cifar_like(2), [3, 4])
    write_cifar_batch(root / "test_batch", cifar_like(2)[::-1], [9, 0])
    data = load_dataset(root)
    assert data.x.shape == (7, 32, 32, 3) and data.x.dtype == np.float32
    assert data.x.min() >= 0.0 and data.x.max() <= 1.0
    np.testing.assert_allclose(data.x[1, 5, 7], np.array([11, 100, 200]) / 255.0, rtol=1e-6)  # channels last
    np.testing.assert_allclose(data.x[5, :, :, 0], 11 / 255.0, rtol=1e-6)  # test_batch after the data batches
    assert data.y.tolist() == [0, 1, 2, 3, 4, 5, 0]  # 9 renumbered to 5
    assert num_classes(data) == 6


# --- image folders -------------------------------------------------------------------------------------------------

def test_image_folder_classes_are_the_sorted_subfolders_resized_to_the_size_asked(tmp_path: Path) -> None:
    red, blue = ("RGB", (255, 0, 0)), ("RGB", (0, 0, 255))
    write_image_folder(tmp_path, {"dog": [blue] * 3, "cat": [red] * 3})
    data = load_dataset(tmp_path, image_size=(16, 12))
    assert data.x.shape == (6, 16, 12, 3) and data.x.dtype == np.float32
    assert data.y.tolist() == [0, 0, 0, 1, 1, 1]  # cat before dog
    np.testing.assert_allclose(data.x[0, 8, 6], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(data.x[5, 8, 6], [0.0, 0.0, 1.0])


def test_an_all_grayscale_image_folder_keeps_one_channel(tmp_path: Path) -> None:
    write_image_folder(tmp_path, {"a": [("L", 0)] * 3, "b": [("L", 255)] * 3}, suffix=".bmp")
    data = load_dataset(tmp_path)
    assert data.x.shape == (6, 32, 32, 1)
    assert data.x[:3].max() == 0.0 and data.x[3:].min() == 1.0


def test_mixed_grayscale_and_colour_images_all_become_rgb(tmp_path: Path) -> None:
    write_image_folder(tmp_path, {"a": [("L", 128), ("RGB", (0, 255, 0))], "b": [("RGBA", (0, 0, 255, 255))]},
                       suffix=".png")
    data = load_dataset(tmp_path)
    assert data.x.shape == (3, 32, 32, 3)
    np.testing.assert_allclose(data.x[0, 0, 0], [128 / 255.0] * 3, rtol=1e-6)
    assert data.y.tolist() == [0, 0, 1]


def test_tiny_imagenet_tree_loads_its_train_split_at_32x32_rgb(tmp_path: Path) -> None:
    root = tmp_path / "tiny-imagenet-200"
    wnids = ["n01443537", "n01629819"]
    root.mkdir()
    (root / "wnids.txt").write_text("\n".join(wnids))
    for k, wnid in enumerate(wnids):
        images = root / "train" / wnid / "images"
        images.mkdir(parents=True)
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for i in range(2):
            Image.new("RGB", (64, 64), (255 * k, 0, 0)).save(images / f"{wnid}_{i}.JPEG")
    (root / "val" / "images").mkdir(parents=True)  # a split it does not read
    Image.new("RGB", (64, 64)).save(root / "val" / "images" / "val_0.JPEG")
    data = load_dataset(root)
    assert data.x.shape == (4, 32, 32, 3) and data.x.dtype == np.float32
    assert data.y.tolist() == [0, 0, 1, 1]
    assert data.x[:2, ..., 0].max() < 0.05 and data.x[2:, ..., 0].min() > 0.95


# --- meter readings ------------------------------------------------------------------------------------------------

def test_csv_meter_readings_become_series_min_max_scaled_over_the_whole_set(tmp_path: Path) -> None:
    path = tmp_path / "meters.csv"
    path.write_text("t0,t1,t2,label\n2,4,6,washer\n10,12,-2,oven\n0,1,2,washer\n")
    data = load_dataset(path)
    assert data.x.shape == (3, 3, 1, 1) and data.x.dtype == np.float32
    assert data.x.min() == 0.0 and data.x.max() == 1.0
    np.testing.assert_allclose(data.x[0, :, 0, 0], [4 / 14, 6 / 14, 8 / 14], rtol=1e-6)  # not per row
    assert data.y.tolist() == [1, 0, 1]  # oven, washer sorted


def test_csv_label_column_may_be_named_class_and_numeric_labels_sort_as_numbers(tmp_path: Path) -> None:
    path = tmp_path / "meters.csv"
    path.write_text("Class,a,b\n10,1,2\n2,3,4\n10,5,6\n")
    data = load_dataset(path)
    assert data.x.shape == (3, 2, 1, 1)
    assert data.y.tolist() == [1, 0, 1]


def test_parquet_without_pyarrow_says_to_install_it_or_convert_to_csv(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "meters.parquet"
    path.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # importing it now fails, installed or not
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ValueError) as info:
        load_dataset(path)
    message = str(info.value)
    assert str(path) in message and "pip install pyarrow" in message and "CSV" in message


# --- bad inputs ----------------------------------------------------------------------------------------------------

def _missing_path(tmp: Path) -> tuple[Path, Path]:
    return tmp / "nowhere", tmp / "nowhere"


def _unknown_layout(tmp: Path) -> tuple[Path, Path]:
    (tmp / "README.txt").write_text("hello")
    return tmp, tmp


def _unknown_file_type(tmp: Path) -> tuple[Path, Path]:
    (tmp / "data.txt").write_text("1,2,3")
    return tmp / "data.txt", tmp / "data.txt"


def _wrong_magic(tmp: Path) -> tuple[Path, Path]:
    write_idx(tmp, "train", mnist_like(2), np.arange(2))
    (tmp / "train-images-idx3-ubyte").write_bytes(idx_bytes(mnist_like(2), 2049))
    return tmp, tmp / "train-images-idx3-ubyte"


def _truncated_idx_header(tmp: Path) -> tuple[Path, Path]:
    write_idx(tmp, "train", mnist_like(2), np.arange(2))
    (tmp / "train-labels-idx1-ubyte").write_bytes(struct.pack(">I", 2049) + b"\x00\x00")
    return tmp, tmp / "train-labels-idx1-ubyte"


def _truncated_gzip(tmp: Path) -> tuple[Path, Path]:
    write_idx(tmp, "train", mnist_like(2), np.arange(2), gz=True)
    gz = tmp / "train-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:30])
    return tmp, gz


def _missing_labels(tmp: Path) -> tuple[Path, Path]:
    write_idx(tmp, "train", mnist_like(2), np.arange(2))
    write_idx(tmp, "t10k", mnist_like(2), np.arange(2))
    (tmp / "t10k-labels-idx1-ubyte").unlink()
    return tmp, tmp / "t10k-labels-idx1-ubyte"


def _label_count_mismatch(tmp: Path) -> tuple[Path, Path]:
    write_idx(tmp, "train", mnist_like(3), np.arange(2))
    return tmp, tmp / "train-labels-idx1-ubyte"


def _npz_without_x_train(tmp: Path) -> tuple[Path, Path]:
    np.savez(tmp / "mnist.npz", images=mnist_like(2))
    return tmp / "mnist.npz", tmp / "mnist.npz"


def _npz_not_a_zip(tmp: Path) -> tuple[Path, Path]:
    (tmp / "mnist.npz").write_bytes(b"not a zip at all")
    return tmp / "mnist.npz", tmp / "mnist.npz"


def _cifar_missing_data(tmp: Path) -> tuple[Path, Path]:
    with (tmp / "data_batch_1").open("wb") as f:
        pickle.dump({b"labels": [0]}, f)
    return tmp, tmp / "data_batch_1"


def _cifar_not_a_pickle(tmp: Path) -> tuple[Path, Path]:
    write_cifar_batch(tmp / "data_batch_1", cifar_like(2), [0, 1])
    (tmp / "test_batch").write_bytes(b"\x80\x04garbage")
    return tmp, tmp / "test_batch"


def _cifar_wrong_shape(tmp: Path) -> tuple[Path, Path]:
    write_cifar_batch(tmp / "data_batch_1", np.zeros((2, 100), np.uint8), [0, 1])
    return tmp, tmp / "data_batch_1"


def _image_folder_without_images(tmp: Path) -> tuple[Path, Path]:
    (tmp / "cat").mkdir()
    (tmp / "cat" / "notes.txt").write_text("no pictures here")
    return tmp, tmp


def _corrupt_image(tmp: Path) -> tuple[Path, Path]:
    write_image_folder(tmp, {"cat": [("RGB", (1, 2, 3))]})
    (tmp / "cat" / "broken.png").write_bytes(b"\x89PNG not really")
    return tmp, tmp / "cat" / "broken.png"


def _csv_case(text: str) -> Callable[[Path], tuple[Path, Path]]:
    """A bad-input case: m.csv holding `text`, named in the error."""

    def build(tmp: Path) -> tuple[Path, Path]:
        (tmp / "m.csv").write_text(text)
        return tmp / "m.csv", tmp / "m.csv"

    return build


BAD_INPUTS: dict[str, tuple[Callable[[Path], tuple[Path, Path]], type[Exception], list[str]]] = {
    "missing-path": (_missing_path, FileNotFoundError, ["no such file", "MNIST IDX", "CIFAR-10", "meter readings"]),
    "unknown-layout": (_unknown_layout, ValueError, ["looked for", "train-images-idx3-ubyte", "data_batch_1"]),
    "unknown-file-type": (_unknown_file_type, ValueError, ["'.txt'", ".npz, .csv or .parquet"]),
    "wrong-idx-magic": (_wrong_magic, ValueError, ["magic number 2049, not 2051", "MNIST IDX"]),
    "truncated-idx-header": (_truncated_idx_header, ValueError, ["truncated IDX header", "MNIST IDX"]),
    "truncated-gzip": (_truncated_gzip, ValueError, ["cannot read", "MNIST IDX"]),
    "missing-idx-labels": (_missing_labels, FileNotFoundError, ["missing", "t10k-images-idx3-ubyte", "MNIST IDX"]),
    "idx-label-count": (_label_count_mismatch, ValueError, ["2 labels for the 3 images", "MNIST IDX"]),
    "npz-without-x-train": (_npz_without_x_train, ValueError, ["x_train", "['images']", "mnist.npz"]),
    "npz-not-a-zip": (_npz_not_a_zip, ValueError, ["cannot read", "mnist.npz holding x_train"]),
    "cifar-missing-data": (_cifar_missing_data, ValueError, ["b'data'", "CIFAR-10"]),
    "cifar-not-a-pickle": (_cifar_not_a_pickle, ValueError, ["cannot unpickle", "CIFAR-10"]),
    "cifar-wrong-shape": (_cifar_wrong_shape, ValueError, ["(2, 100)", "CIFAR-10"]),
    "image-folder-without-images": (_image_folder_without_images, ValueError, ["no images", "['cat']", "image folder"]),
    "corrupt-image": (_corrupt_image, ValueError, ["cannot read image", "image folder"]),
    "csv-non-numeric-reading": (_csv_case("meter,t0,label\nkitchen,1.5,a\nhall,2.5,b\n"), ValueError,
                                ["'kitchen'", "column 'meter'", "meter readings"]),
    "csv-without-label-column": (_csv_case("t0,t1\n1,2\n3,4\n"), ValueError,
                                 ["'label' (or 'class') column", "['t0', 't1']"]),
    "csv-ragged-row": (_csv_case("t0,t1,label\n1,2,a\n3,b\n"), ValueError, ["row 2 has 2 cells", "meter readings"]),
    "csv-with-nan": (_csv_case("t0,t1,label\n1,nan,a\n3,4,b\n"), ValueError, ["NaN", "meter readings"]),
    "empty-csv": (_csv_case(""), ValueError, ["empty", "meter readings"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_input_raises_an_error_naming_the_file_and_the_format_expected(tmp_path: Path, case: str) -> None:
    build, error, phrases = BAD_INPUTS[case]
    path, culprit = build(tmp_path)
    with pytest.raises(error) as info:
        load_dataset(path)
    assert type(info.value) is error  # not a subclass leaking from numpy, pickle or PIL
    message = str(info.value)
    assert str(culprit) in message
    for phrase in phrases:
        assert phrase in message
