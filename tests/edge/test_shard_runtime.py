"""A shard labels a device's samples in one invoke where its graph allows it, and the logits are those of one
invoke per row, bit for bit (the exported graph's own batch of one)."""

from __future__ import annotations

import numpy as np
import pytest

from edge.shard_runtime import ShardRunner


@pytest.fixture(scope="module")
def default_shards(default_teacher_dir) -> dict[int, bytes]:
    """Every prefix of the default four-exit teacher as the full-int8 shard devices run."""
    from export.shards import export_int8_shard
    from export.teacher_dir import load_teacher_dir, prefix_model

    bundle = load_teacher_dir(default_teacher_dir)
    calibration = np.asarray(bundle.calibration_x)
    return {k: export_int8_shard(prefix_model(bundle.model, k), calibration) for k in range(1, bundle.num_exits + 1)}


def _one_row_at_a_time(model: bytes, x: np.ndarray) -> np.ndarray:
    runner = ShardRunner.from_bytes(model)
    return np.concatenate([runner.logits(x[i:i + 1]) for i in range(len(x))])


def test_labelling_all_rows_at_once_gives_the_logits_of_one_row_at_a_time(default_shards, default_teacher_dir):
    from export.teacher_dir import load_teacher_dir

    x = np.asarray(load_teacher_dir(default_teacher_dir).holdout_x[:40], dtype=np.float32)
    for k, model in default_shards.items():
        runner = ShardRunner.from_bytes(model)
        batched = runner.logits(x)
        assert runner._batches is True, f"shard {k} fell back to one row per invoke"
        np.testing.assert_array_equal(batched, _one_row_at_a_time(model, x), err_msg=f"shard {k}")
        for n in (40, 7, 1, 32):  # devices of different sizes share one runner per thread: it resizes both ways
            np.testing.assert_array_equal(runner.logits(x[:n]), batched[:n], err_msg=f"shard {k}, {n} rows")


def test_a_graph_whose_batch_disagrees_stays_row_by_row(default_shards, default_teacher_dir, monkeypatch):
    """The first batched call is checked against row-by-row invokes; a mismatch keeps the runner on those."""
    from export.teacher_dir import load_teacher_dir

    x = np.asarray(load_teacher_dir(default_teacher_dir).holdout_x[:8], dtype=np.float32)
    model = default_shards[1]
    runner = ShardRunner.from_bytes(model)
    real = runner._row_by_row
    monkeypatch.setattr(runner, "_row_by_row", lambda q: real(q) + (1 if len(q) == 2 else 0))  # a graph bound to 1
    logits = runner.logits(x)
    assert runner._batches is False
    monkeypatch.setattr(runner, "_row_by_row", real)
    np.testing.assert_array_equal(logits, _one_row_at_a_time(model, x))
    np.testing.assert_array_equal(runner.logits(x), logits)
