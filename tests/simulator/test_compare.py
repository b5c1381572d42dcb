"""`compare` on 2 devices x 2 rounds: every row, three files, bytes and accuracies that make sense,
the supervised rows left out when devices hold no labels, and the seed study's paired verdicts."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from edge.plan import TrainingSettings
from simulator.baselines.result import MethodResult
from simulator.compare import METHODS as METHOD_NAMES
from simulator.compare import STUDENT_METHODS, CompareSettings, run_compare
from simulator.data import Dataset
from simulator.seed_study import summarise

from ..cli_helpers import call, one_error_line

METHODS = list(METHOD_NAMES.values())
FIXED = ["Teacher (upper bound)", "Student on all data, central (upper bound)", "Cloud-only student",
         "Cloud-distilled student"]
FEDERATED = [m for m in METHODS if m not in FIXED]


@pytest.fixture(scope="module")
def two_device_cloud(tiny_cloud):
    """The session's tiny fleet cut to its first 2 devices (same split, teacher, shards, student)."""
    split = dataclasses.replace(tiny_cloud.split, devices=tiny_cloud.split.devices[:2],
                                device_holdout=tiny_cloud.split.device_holdout[:2])
    return dataclasses.replace(tiny_cloud, split=split, assignments=tiny_cloud.assignments[:2],
                               start_weights=tiny_cloud.cloud_distilled_weights)  # warm start, the default


@pytest.fixture(scope="module")
def unlabelled_cloud(two_device_cloud):
    """The same two devices holding no labels at all (meters)."""
    devices = [Dataset(d.x, d.y, np.zeros(len(d), bool)) for d in two_device_cloud.split.devices]
    return dataclasses.replace(two_device_cloud, split=dataclasses.replace(two_device_cloud.split, devices=devices))


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


def test_rows_trained_without_federation_have_no_rounds_and_no_bytes(compared, two_device_cloud):
    _, results = compared
    for name in FIXED:
        assert results[name].accuracy_per_round == [] and results[name].bytes_total == 0, name
        assert 0 < results[name].final_device_accuracy <= 1
    assert results["Teacher (upper bound)"].final_accuracy == two_device_cloud.teacher_accuracy
    # the teacher's logits reach the cloud-distilled student: it is not the cloud-only one
    only, distilled = two_device_cloud.cloud_only_weights, two_device_cloud.cloud_distilled_weights
    assert any(not np.array_equal(only[n], distilled[n]) for n in only)


def test_federated_student_rows_start_from_the_cloud_distilled_student(compared):
    _, results = compared
    start = results["Cloud-distilled student"].final_accuracy
    for name in ("FedAvg of the student", "FedKD (no sharding)", "DMSKD without KD", "DMSKD"):
        assert results[name].initial_accuracy == start, name


def test_every_federated_row_has_an_accuracy_per_round_and_payload_bytes(compared, two_device_cloud):
    _, results = compared
    test_examples = len(two_device_cloud.split.test)
    for r in (results[n] for n in FEDERATED):
        assert len(r.accuracy_per_round) == 2 and len(r.device_accuracy_per_round) == 2
        # every accuracy is a count of correct test examples over the test split
        for a in [r.initial_accuracy, *r.accuracy_per_round]:
            assert abs(a * test_examples - round(a * test_examples)) < 1e-6
        value_bytes = 1 if r.method == "FedCompress" else 4  # uint8 codes or float32 values, 2 devices
        assert all(value_bytes * r.params * 2 < up < (value_bytes * r.params * 2) * 1.1 + 20_000
                   for up in r.bytes_up_per_round), r.method
        assert r.bytes_total == sum(r.bytes_per_round) + r.one_off_bytes


def test_the_federated_methods_learn(compared):
    _, results = compared
    for name in ("FedAvg", "FedCompress"):  # the teacher rows start from scratch
        assert results[name].final_accuracy > results[name].initial_accuracy + 0.1, name


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
    assert all(results[n].epsilon == 0 for n in ("FedAvg", "FedCompress", "FedKD (no sharding)", "DMSKD"))
    full = two_device_cloud.prefix_shards[max(two_device_cloud.prefix_shards)]
    program = len(two_device_cloud.student_program)
    assert results["FedKD (no sharding)"].one_off_bytes == 2 * (len(full) + program)
    assert results["FedAvg of the student"].one_off_bytes == 2 * program  # no shard
    planned = sum(len(two_device_cloud.shards[a.shard_id]) for a in two_device_cloud.assignments)
    assert results["DMSKD"].one_off_bytes == planned + 2 * program
    assert results["FedAvg"].one_off_bytes == 0


@pytest.mark.parametrize("args, message", [
    (["--rounds", "0"], "argument --rounds: must be at least 1"),
    (["--target-epsilon", "0"], "argument --target-epsilon: must be positive"),
], ids=["zero-rounds", "zero-epsilon"])
def test_compare_verb_rejects_bad_flags_before_training(args, message, tmp_path, capsys):
    from simulator.__main__ import main

    code, _, err = call(main, ["compare", "--out", str(tmp_path), *args], capsys)
    assert code == 2
    one_error_line(err, message)
    assert not (tmp_path / "compare.json").exists()


def test_without_device_labels_the_supervised_rows_are_left_out_and_named(unlabelled_cloud, tmp_path):
    settings = CompareSettings(rounds=1, seed=0, training=TrainingSettings(local_epochs=1),
                               methods=("fedavg", "fedavg-student", "dmskd-no-kd", "dmskd"))
    results = run_compare(unlabelled_cloud, settings, tmp_path, show_progress=False)
    assert [r.method for r in results] == ["DMSKD without KD", "DMSKD"]
    skipped = json.loads((tmp_path / "compare.json").read_text())["context"]["skipped (no device labels)"]
    assert skipped == ["FedAvg", "FedAvg of the student"]


def test_unknown_method_keys_are_named():
    with pytest.raises(ValueError, match=r"unknown methods \['fedsgd'\] \(--methods\)"):
        CompareSettings(methods=("dmskd", "fedsgd"))


def test_student_methods_exclude_exactly_the_full_teacher_rows():
    assert set(METHOD_NAMES) - set(STUDENT_METHODS) == {"fedavg", "fedcompress", "dp-fedavg"}


def _row(method: str, acc: float, dev: float) -> MethodResult:
    return MethodResult(method, acc, initial_device_accuracy=dev)


def test_seed_study_calls_a_row_better_only_beyond_the_paired_spread():
    n = 100
    seeds = [(n, [_row("DMSKD", 0.80, 0.80), _row("A", 0.85, 0.81), _row("B", a, 0.80)])
             for a in (0.82, 0.78, 0.81)]  # A: +5 examples every seed; B: +2, -2, +1
    by = {s.method: s for s in summarise(seeds)}
    assert by["A"].diff_examples_mean == pytest.approx(5.0) and by["A"].diff_examples_sd == pytest.approx(0.0)
    assert by["A"].verdict == "better" and by["A"].device_verdict == "better"
    assert by["B"].diff_examples_mean == pytest.approx(1 / 3) and by["B"].verdict == "within spread"
    assert by["DMSKD"].verdict == "within spread"
    assert by["A"].accuracy_mean == pytest.approx(0.85) and by["B"].accuracy_sd == pytest.approx(0.02081666, rel=1e-5)
