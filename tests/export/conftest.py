"""Teacher directories built once per session: a tiny two-exit teacher for fast checks, and the
default four-exit architecture (cloud.teacher.TeacherConfig()) briefly trained, both on digits."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.teacher import TeacherConfig

from .helpers import TINY, make_teacher_dir


@pytest.fixture(scope="session")
def tiny_teacher_dir(tmp_path_factory) -> Path:
    return make_teacher_dir(tmp_path_factory.mktemp("tiny_teacher"), TINY, epochs=8)


@pytest.fixture(scope="session")
def default_teacher_dir(tmp_path_factory) -> Path:
    return make_teacher_dir(tmp_path_factory.mktemp("default_teacher"), TeacherConfig(), epochs=8)


@pytest.fixture(scope="session")
def tiny_teacher(tiny_teacher_dir):
    from export.teacher_dir import load_teacher_dir

    return load_teacher_dir(tiny_teacher_dir)
