"""The smart-meter tasks from sktime's bundled .ts files, and a series teacher every target can run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simulator.meter_tasks import TASKS, load_task, read_ts, to_length

TS = """# a comment
@problemName Tiny
@univariate true
@classLabel true a b
@data
0.0,1.0,2.0:a
3.0,?,5.0,6.0:b
"""


def test_read_ts_returns_every_series_with_its_label(tmp_path: Path) -> None:
    path = tmp_path / "tiny.ts"
    path.write_text(TS.replace("?", "NaN"))
    series, labels = read_ts(path)
    assert labels == ["a", "b"] and [len(s) for s in series] == [3, 4]
    np.testing.assert_array_equal(series[0], [0.0, 1.0, 2.0])


@pytest.mark.parametrize("body, words", [
    ("@data\n1,2,x:a\n", "tiny.ts:2: a reading is not a number"),
    ("@data\n", "holds no series after @data"),
    ("@data\n1,2:3:a\n", "expected one univariate series"),
], ids=["non-numeric", "empty", "multivariate"])
def test_a_malformed_ts_file_is_named_with_its_line(tmp_path: Path, body: str, words: str) -> None:
    path = tmp_path / "tiny.ts"
    path.write_text(body)
    with pytest.raises(ValueError, match=words):
        read_ts(path)


def test_to_length_fills_missing_readings_and_resamples_linearly() -> None:
    got = to_length(np.array([0.0, np.nan, 2.0, 3.0]), 7)
    np.testing.assert_allclose(got, [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0])


@pytest.mark.parametrize("task, shape, classes", [("italy-power", (1096, 24, 1, 1), 2),
                                                  ("plaid", (1074, 256, 1, 1), 11),
                                                  ("acsf1", (200, 256, 1, 1), 10)])
def test_bundled_tasks_load_as_series_in_0_1_with_their_classes(task: str, shape: tuple, classes: int) -> None:
    data = load_task(task)
    assert data.x.shape == shape and data.x.dtype == np.float32
    assert data.x.min() == 0.0 and data.x.max() == 1.0
    assert sorted(set(data.y.tolist())) == list(range(classes))


def test_an_unknown_task_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown task 'gas'.*--task"):
        load_task("gas")
    assert set(TASKS) == {"plaid", "acsf1", "italy-power"}


def test_a_series_teacher_exports_to_ops_every_target_runs() -> None:
    """Conv1D is built as Conv2D with (3, 1) kernels and (2, 1) pools: the image op sets cover it."""
    from cloud.teacher import TeacherConfig, build_teacher
    from export.op_support import TARGETS, model_ops, supported_ops
    from export.shards import export_int8_shard
    from export.teacher_dir import prefix_model

    teacher = build_teacher(TeacherConfig(input_shape=(24, 1, 1), num_classes=2, blocks=((8, True), (16, False))))
    calibration = np.random.default_rng(0).uniform(0, 1, (32, 24, 1, 1)).astype(np.float32)
    ops = model_ops(export_int8_shard(prefix_model(teacher, 2), calibration))
    assert {"CONV_2D", "MAX_POOL_2D", "FULLY_CONNECTED"} <= ops
    for target in TARGETS:
        allowed = supported_ops(target)
        assert allowed is None or ops <= allowed, (target, sorted(ops - allowed))
