"""The teacher directory: load_teacher_dir reads back what save_teacher_dir wrote; a missing file names the fix."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from export.teacher_dir import TEACHER_FILES, load_teacher_dir


def test_loading_returns_the_saved_accuracies_data_and_model_hash(tiny_teacher_dir: Path) -> None:
    bundle = load_teacher_dir(tiny_teacher_dir)
    meta = json.loads((tiny_teacher_dir / "teacher.json").read_text())
    assert bundle.exit_accuracies == meta["exit_accuracies"] and len(bundle.exit_accuracies) == bundle.num_exits == 2
    assert bundle.directory == tiny_teacher_dir
    assert bundle.model_sha256 == hashlib.sha256((tiny_teacher_dir / "teacher.keras").read_bytes()).hexdigest()
    with np.load(tiny_teacher_dir / "holdout.npz") as h:
        assert np.array_equal(bundle.holdout_y, h["y"]) and bundle.holdout_x.dtype == np.float32


@pytest.mark.parametrize("missing", TEACHER_FILES)
def test_a_missing_file_is_named_with_the_command_that_writes_it(missing: str, tiny_teacher_dir: Path,
                                                                   tmp_path: Path) -> None:
    copy = Path(shutil.copytree(tiny_teacher_dir, tmp_path / "teacher"))
    (copy / missing).unlink()
    with pytest.raises(FileNotFoundError, match=rf"lacks {missing}; create it with `python -m simulator teacher"):
        load_teacher_dir(copy)
