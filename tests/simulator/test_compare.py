"""`compare` on 2 devices x 2 rounds: all rows, three files, bytes and accuracies that make sense."""

from __future__ import annotations

import dataclasses
import json

import pytest

from edge.plan import TrainingSettings
from simulator.compare import CompareSettings, run_compare

METHODS = ["FedAvg", "FedCompress", "FedKD", "DP-FedAvg", "DMSKD", "DMSKD + central DP"]


@pytest.fixture(scope="module")
def two_device_cloud(tiny_cloud):
    """The session's tiny fleet cut to its first 2 devices (same split, teacher, shards, student)."""
    split = dataclasses.replace(tiny_cloud.split, devices=tiny_cloud.split.devices[:2])
    return dataclasses.replace(tiny_cloud, split=split, assignments=tiny_cloud.assignments[:2])


@pytest.fixture(scope="module")
def compared(two_device_cloud, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    settings = CompareSettings(rounds=2, seed=0, target_epsilon=8.0, training=TrainingSettings(local_epochs=1))
    return out, {r.method: r for r in run_compare(two_device_cloud, settings, out, show_progress=False)}


def test_compare_writes_json_markdown_and_plot(compared):
    out, results = compared
    assert list(results) == METHODS
    data = json.loads((out / "compare.json").read_text())
    assert [m["method"] for m in data["methods"]] == METHODS
    assert data["context"]["devices"] == 2 and data["context"]["rounds"] == 2
    md = (out / "compare.md").read_text()
    assert all(f"| {m} |" in md for m in METHODS)
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_row_has_an_accuracy_per_round_and_payload_bytes(compared, two_device_cloud):
    _, results = compared
    test_examples = len(two_device_cloud.split.test)
    for r in results.values():
        assert len(r.accuracy_per_round) == 2
        # every accuracy is a count of correct test examples over the test split
        for a in [r.initial_accuracy, *r.accuracy_per_round]:
            assert abs(a * test_examples - round(a * test_examples)) < 1e-6
        value_bytes = 1 if r.method == "FedCompress" else 4  # uint8 codes or float32 values, 2 devices
        assert all(value_bytes * r.params * 2 < up < (value_bytes * r.params * 2) * 1.1 + 20_000
                   for up in r.bytes_up_per_round), r.method
        assert r.bytes_total == sum(r.bytes_per_round) + r.one_off_bytes


def test_the_federated_methods_learn(compared):
    _, results = compared
    for name in ("FedAvg", "FedCompress", "FedKD", "DMSKD"):
        assert results[name].final_accuracy > results[name].initial_accuracy, name


def test_fedcompress_uploads_a_quarter_of_fedavg_and_downloads_the_same(compared):
    _, results = compared
    fedavg, fedcompress = results["FedAvg"], results["FedCompress"]
    ratio = sum(fedcompress.bytes_up_per_round) / sum(fedavg.bytes_up_per_round)
    assert 0.24 < ratio < 0.27
    assert fedcompress.bytes_down_per_round == fedavg.bytes_down_per_round


def test_privacy_and_one_off_downloads(compared, two_device_cloud):
    _, results = compared
    for name in ("DP-FedAvg", "DMSKD + central DP"):
        assert results[name].epsilon == pytest.approx(8.0, abs=0.05)
        assert results[name].noise_multiplier > 0
    assert all(results[n].epsilon == 0 for n in ("FedAvg", "FedCompress", "FedKD", "DMSKD"))
    full = two_device_cloud.prefix_shards[max(two_device_cloud.prefix_shards)]
    program = len(two_device_cloud.student_program)
    assert results["FedKD"].one_off_bytes == 2 * (len(full) + program)
    planned = sum(len(two_device_cloud.shards[a.shard_id]) for a in two_device_cloud.assignments)
    assert results["DMSKD"].one_off_bytes == planned + 2 * program
    assert results["FedAvg"].one_off_bytes == 0


@pytest.mark.parametrize("args, message", [
    (["--rounds", "0"], "must be at least 1"),
    (["--target-epsilon", "0"], "--target-epsilon must be positive"),
], ids=["zero-rounds", "zero-epsilon"])
def test_compare_verb_rejects_bad_flags_before_training(args, message, tmp_path, capsys):
    from simulator.__main__ import main

    assert main(["compare", "--out", str(tmp_path), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "compare.json").exists()
