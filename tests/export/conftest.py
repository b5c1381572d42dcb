"""A tiny two-exit teacher for fast export checks, trained once per session on digits.

The default four-exit teacher (`default_teacher_dir`) is tests/conftest.py's, shared with tests/cloud."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..teachers import make_teacher_dir
from .helpers import TINY


@pytest.fixture(scope="session")
def tiny_teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny two-exit teacher (helpers.TINY) trained 8 epochs, saved with export.teacher_dir."""
    return make_teacher_dir(tmp_path_factory.mktemp("tiny_teacher"), TINY, epochs=8)


@pytest.fixture(scope="session")
def tiny_teacher(tiny_teacher_dir: Path):
    """The tiny teacher loaded as the exporter reads it (export.teacher_dir.TeacherBundle)."""
    from export.teacher_dir import load_teacher_dir

    return load_teacher_dir(tiny_teacher_dir)
