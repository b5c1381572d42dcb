"""Transitional names for the teacher directory, which lives in export/teacher_dir.py.

Only cloud/plan_command.py, cloud/profile_command.py and simulator/__main__.py still import from
here (their owner moves them to export.teacher_dir); delete this module then.
"""

from __future__ import annotations

from export.teacher_dir import TeacherBundle, check_teacher_dir
from export.teacher_dir import load_teacher_dir as load_teacher_bundle
from export.teacher_dir import save_teacher_dir as save_teacher_bundle

__all__ = ["TeacherBundle", "check_teacher_dir", "load_teacher_bundle", "save_teacher_bundle"]
