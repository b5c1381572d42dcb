"""`python -m simulator` under the edge/cli.py convention: wrong flags fail fast with one line naming the fix,
before any training (in-process: main(argv)); exit 2 for a wrong command line, 1 for a failed run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.plan import TrainingSettings
from simulator.__main__ import build_parser, main
from simulator.data import Dataset, dirichlet_partition, federated_split
from simulator.device_pool import DeviceSampling, pool_sample

from ..cli_helpers import assert_every_flag_documented, call, free_port, one_error_line, verbs

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("args, code, words", [
    (["--dp", "central"], 2, ("--dp central needs --target-epsilon or --noise-multiplier",)),
    (["--devices", "0"], 2, ("argument --devices: must be at least 1",)),
    (["--broker", "nonsense"], 2, ("argument --broker: bad broker address 'nonsense'", "expected 'host:port'")),
    (["--dp", "sometimes"], 2, ("argument --dp: invalid choice: 'sometimes'",)),
    (["--dirichlet-alpha", "0"], 2, ("argument --dirichlet-alpha: must be positive",)),
    (["--clip", "-1"], 2, ("argument --clip: must be positive",)),
    (["--broker", "127.0.0.1:{port}"], 1, ("no MQTT broker answers at 127.0.0.1:", "omit --broker")),
    (["--devices", "15", "--dirichlet-alpha", "0.01", "--device-sampling", "partition"], 1,
     ("raise --dirichlet-alpha", "fewer --devices", "--device-sampling pool")),
    (["--devices", "200", "--device-sampling", "partition"], 1,
     ("cannot give 200 devices 8 each", "pass --devices 101 or fewer", "--device-sampling pool")),
    (["--samples-per-device", "0"], 2, ("argument --samples-per-device: must be at least 1",)),
    (["--device-sampling", "lots"], 2, ("argument --device-sampling: invalid choice: 'lots'",)),
    (["--device-processes", "0"], 2, ("argument --device-processes: must be auto or a whole number of at least 1, "
                                      "got '0'",)),
    (["--device-processes", "many"], 2, ("argument --device-processes: must be auto", "got 'many'")),
    (["--engine", "ray", "--device-processes", "2"], 2, ("--device-processes splits the local engine's devices",
                                                         "drop --device-processes")),
], ids=["dp-without-budget", "zero-devices", "bad-broker-address", "unknown-dp-mode", "zero-dirichlet-alpha",
        "negative-clip", "broker-not-running", "split-too-skewed", "too-many-devices-to-partition",
        "zero-samples-per-device", "unknown-device-sampling", "zero-device-processes", "words-for-device-processes",
        "device-processes-with-ray"])
def test_run_rejects_bad_flags_with_the_fix_before_training(args, code, words, tmp_path, capsys):
    args = [a.format(port=free_port()) for a in args]
    got, out, err = call(main, ["run", "--run-dir", str(tmp_path), *args], capsys)
    assert got == code, err
    one_error_line(err, *words)
    assert not (tmp_path / "metrics.json").exists()


def split_error_messages() -> list[str]:
    """Every error the partition, the pool and the split raise for a bad fleet, skew or size."""
    y = np.repeat(np.arange(10), 20)
    data = Dataset(np.zeros((200, 2, 2, 1), np.float32), y)
    calls = [lambda d=devices, a=alpha: dirichlet_partition(y, d, a, np.random.default_rng(0))
             for devices, alpha in ((1000, 1.0), (20, 1e-3), (0, 1.0), (2, 0.0))]
    calls += [lambda: dirichlet_partition(y, 2, 1.0, np.random.default_rng(0), min_size=1000),
              lambda: federated_split(data, 500, 0, sampling="partition"),
              lambda: federated_split(data, 5, 0, sampling="pool", samples_per_device=0),
              lambda: federated_split(data, 0, 0, sampling="pool"),
              lambda: federated_split(data, 5, 0, sampling="pool", alpha=0.0),
              lambda: federated_split(data, 5, 0, sampling="sometimes"),
              lambda: federated_split(data, 5, 0, cloud_fraction=0.9),
              lambda: pool_sample(y[:0], np.full((2, 10), 0.1), 3, np.random.default_rng(0))]
    messages = []
    for bad in calls:
        with pytest.raises(ValueError) as exc:
            bad()
        messages.append(str(exc.value))
    return messages


@pytest.mark.parametrize("verb", ["run", "compare", "prepare", "audit"])
def test_the_split_errors_name_only_flags_that_the_verb_has(verb):
    flags = {s for a in verbs(build_parser())[verb]._actions for s in a.option_strings}
    messages = split_error_messages()
    named = {m for text in messages for m in re.findall(r"--[a-z][a-z-]+", text)}
    assert {"--devices", "--dirichlet-alpha", "--min-samples-per-device", "--device-sampling",
            "--samples-per-device", "--cloud-fraction"} <= named <= flags, (named - flags, messages)


def test_run_with_100_devices_gets_its_data_from_the_pool(monkeypatch, tmp_path, capsys):
    """The case that failed on its own split (issue 11) now reaches the federation, every device with 32 samples."""
    from simulator.artifacts import train_cloud_teacher

    seen = {}

    def fake_run(config, run_dir, status=print, **kwargs):
        split, _, _ = train_cloud_teacher(config, status)
        seen.update(devices=len(split.devices), sizes={len(d) for d in split.devices}, scheme=split.sampling.scheme)
        raise ConnectionError("stop here")

    monkeypatch.setattr("simulator.experiment.run_experiment", fake_run)
    code, out, err = call(main, ["run", "--run-dir", str(tmp_path), "--devices", "100", "--teacher-epochs", "1"],
                          capsys)
    assert code == 1 and seen == {"devices": 100, "sizes": {32}, "scheme": "pool"}, err
    assert "100 devices draw 32 training and 8 held-out examples each" in out
    one_error_line(err, "stop here")


def test_run_passes_the_sampling_flags_to_the_config(monkeypatch, tmp_path, capsys):
    seen = {}

    def fake_run(config, run_dir, **kwargs):
        seen.update(sampling=config.device_sampling, k=config.samples_per_device)
        raise ConnectionError("stop here")

    monkeypatch.setattr("simulator.experiment.run_experiment", fake_run)
    call(main, ["run", "--run-dir", str(tmp_path), "--device-sampling", "pool", "--samples-per-device", "7"], capsys)
    assert seen == {"sampling": DeviceSampling.POOL, "k": 7}
    call(main, ["run", "--run-dir", str(tmp_path)], capsys)
    assert seen == {"sampling": DeviceSampling.AUTO, "k": 32}


def test_run_passes_device_processes_to_the_config_auto_as_none(monkeypatch, tmp_path, capsys):
    seen = []

    def fake_run(config, run_dir, **kwargs):
        seen.append(config.device_processes)
        raise ConnectionError("stop here")

    monkeypatch.setattr("simulator.experiment.run_experiment", fake_run)
    for flags in (["--device-processes", "3"], ["--device-processes", "auto"], []):
        call(main, ["run", "--run-dir", str(tmp_path), *flags], capsys)
    assert seen == [3, None, None]


def test_run_passes_the_split_and_training_flags_to_the_config(monkeypatch, tmp_path, capsys):
    seen = {}

    def fake_run(config, run_dir, **kwargs):
        seen.update(alpha=config.dirichlet_alpha, min_size=config.min_samples_per_device, training=config.training)
        raise ConnectionError("stop here")

    monkeypatch.setattr("simulator.experiment.run_experiment", fake_run)
    code, _, err = call(main, ["run", "--run-dir", str(tmp_path), "--dirichlet-alpha", "0.3",
                               "--min-samples-per-device", "5", "--alpha", "0.2", "--tau", "4", "--clip", "0.5"],
                        capsys)
    assert code == 1 and (seen["alpha"], seen["min_size"]) == (0.3, 5)
    assert (seen["training"].alpha, seen["training"].tau, seen["training"].clip) == (0.2, 4.0, 0.5)
    assert seen["training"].lr == TrainingSettings().lr  # an untouched flag keeps the one default
    one_error_line(err, "stop here")


@pytest.mark.parametrize("args, words", [
    (["dp-scaling", "--fleet-sizes", "10,x"], "argument --fleet-sizes: expected comma-separated integers"),
    (["dp-scaling", "--delta", "2"], "argument --delta: must be between 0 and 1"),
    (["teacher", "--out", "t", "--epochs", "0"], "argument --epochs: must be at least 1"),
    (["teacher"], "the following arguments are required: --out"),
    (["prepare", "--out", "p", "--colour", "red"], "unrecognized arguments: --colour red"),
    (["compare", "--delta", "0"], "argument --delta: must be between 0 and 1"),
    (["fly"], "invalid choice: 'fly'"),
], ids=["bad-fleet-sizes", "bad-delta", "zero-epochs", "no-out", "unknown-flag", "compare-delta", "unknown-verb"])
def test_other_verbs_reject_bad_flags_with_exit_2(args, words, capsys):
    code, out, err = call(main, args, capsys)
    assert code == 2 and out == ""
    one_error_line(err, words, "--help")


def test_prepare_rejects_zero_devices_with_exit_2(tmp_path, capsys):
    code, _, err = call(main, ["prepare", "--out", str(tmp_path), "--devices", "0"], capsys)
    assert code == 2
    one_error_line(err, "argument --devices: must be at least 1")


def test_every_flag_has_help_and_every_verb_shows_defaults(capsys):
    parser = build_parser()
    assert_every_flag_documented(parser)
    for verb in verbs(parser):
        code, out, _ = call(main, [verb, "--help"], capsys)
        assert code == 0 and "(default:" in out, verb
    _, out, _ = call(main, ["run", "--help"], capsys)
    assert "--dirichlet-alpha" in out and "(default: 1.0)" in " ".join(out.split())


def test_python_m_simulator_help_works():
    proc = subprocess.run([sys.executable, "-m", "simulator", "run", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--dirichlet-alpha" in proc.stdout and "(default: 10)" in " ".join(proc.stdout.split())


@pytest.mark.parametrize("text, value", [("none", 0.0), ("all", 1.0), ("0.1", 0.1)])
def test_device_labels_take_none_all_or_a_fraction(text, value, monkeypatch, tmp_path, capsys):
    seen = {}

    def fake_run(config, run_dir, **kwargs):
        seen.update(labels=config.labelled_fraction, warm=config.warm_start, cloud=config.cloud_fraction)
        raise ConnectionError("stop here")

    monkeypatch.setattr("simulator.experiment.run_experiment", fake_run)
    code, _, _ = call(main, ["run", "--run-dir", str(tmp_path), "--device-labels", text, "--cold-start",
                             "--cloud-fraction", "0.1"], capsys)
    assert code == 1 and seen == {"labels": value, "warm": False, "cloud": 0.1}


@pytest.mark.parametrize("args, words", [
    (["run", "--device-labels", "lots"], 'argument --device-labels: expected "none", "all", a fraction'),
    (["run", "--device-labels", "1.5"], 'argument --device-labels: expected "none", "all", a fraction'),
    (["compare", "--seeds", "0,x"], "argument --seeds: expected comma-separated integers"),
], ids=["word", "above-one", "bad-seed-list"])
def test_bad_label_and_seed_flags_exit_2(args, words, capsys):
    code, _, err = call(main, args, capsys)
    assert code == 2
    one_error_line(err, words)


def test_compare_names_an_unknown_method_key(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("simulator.artifacts.prepare_cloud", lambda *a, **k: pytest.fail("must not train"))
    code, _, err = call(main, ["compare", "--methods", "dmskd,fedsgd", "--out", str(tmp_path)], capsys)
    assert code == 2
    one_error_line(err, "unknown methods ['fedsgd']")
