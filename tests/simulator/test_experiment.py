"""The run's report facts: per-shard quality on the devices that got each shard."""

from __future__ import annotations

import numpy as np

from edge.shard_runtime import ShardRunner
from simulator.experiment import regime_line, shard_quality


def test_shard_quality_is_measured_on_the_held_out_data_of_the_shards_own_devices(tiny_config, tiny_cloud):
    rows = shard_quality(tiny_cloud, tiny_cloud.cloud_distilled_weights)
    assert set(rows) == {a.shard_id for a in tiny_cloud.assignments}
    for sid, row in rows.items():
        held = [h for a, h in zip(tiny_cloud.assignments, tiny_cloud.split.device_holdout) if a.shard_id == sid]
        assert row["device_holdout_examples"] == sum(len(h) for h in held)
        x, y = np.concatenate([h.x for h in held]), np.concatenate([h.y for h in held])
        expected = np.mean(np.argmax(ShardRunner.from_bytes(tiny_cloud.shards[sid]).logits(x), 1) == y)
        assert row["shard_device_accuracy"] == expected
        # the "federated" weights given are the cloud-distilled ones: both columns must agree
        assert row["federated_device_accuracy"] == row["cloud_distilled_device_accuracy"]


def test_the_run_says_what_devices_know_and_where_it_starts(tiny_config):
    import dataclasses

    assert "no labels (meters)" in regime_line(dataclasses.replace(tiny_config, labelled_fraction=0.0))
    line = regime_line(dataclasses.replace(tiny_config, labelled_fraction=0.1, warm_start=True))
    assert "labels for 10%" in line and "cloud-distilled" in line


def test_the_run_states_what_federation_added_over_its_start_in_examples_and_points():
    from simulator.experiment import federation_verdict

    m = {"warm_start": True, "test_examples": 200, "student_accuracy": 0.90, "cloud_distilled_accuracy": 0.92,
         "student_device_accuracy": 0.80, "cloud_distilled_device_accuracy": 0.75}
    line = federation_verdict(m)
    assert "-4 test examples" in line and "+5.0 points" in line and "--seeds" in line
    assert "cold start" in federation_verdict({**m, "warm_start": False})
