"""--device-processes: the local engine's devices in child processes give the one-process result, and a child
that dies fails the run naming its group instead of leaving the run to wait on it."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import socket
import time

import numpy as np
import psutil
import pytest

from cloud.strategy import DpMode
from edge.signed_artifact import generate_signing_key
from simulator.config import ExperimentConfig
from simulator.device_processes import DeviceProcesses, DeviceProcessFailed, device_process_count
from simulator.federation import host_settings, run_federation
from simulator.ray_device_host import HostedDevice


def seeded_central(config, processes: int | None):
    """Central DP with seeded noise: the sum is exact (integer grid), so equal results must be equal bits."""
    return dataclasses.replace(config, rounds=2, dp=DpMode.CENTRAL, noise_multiplier=0.3, insecure_seeded_noise=True,
                               device_processes=processes)


def device_children() -> list[psutil.Process]:
    """This process's children that host devices (python -m simulator.device_group_process)."""
    return [p for p in psutil.Process().children() if "simulator.device_group_process" in " ".join(p.cmdline())]


def test_devices_in_two_processes_give_the_one_process_weights_bit_for_bit(broker, tiny_config, tiny_cloud,
                                                                            tmp_path):
    """3 devices in groups of 2 and 1: every device trains in a child, and its traffic comes back to the driver."""
    one = run_federation(seeded_central(tiny_config, 1), tiny_cloud, broker.host, broker.port, tmp_path / "one", 0.3,
                         fleet="procs1")
    two = run_federation(seeded_central(tiny_config, 2), tiny_cloud, broker.host, broker.port, tmp_path / "two", 0.3,
                         fleet="procs2")
    assert sorted(one.final_weights) == sorted(two.final_weights)
    for name, weights in one.final_weights.items():
        assert weights.dtype == two.final_weights[name].dtype == np.float32
        assert weights.tobytes() == two.final_weights[name].tobytes(), name
    assert any(not np.array_equal(w, tiny_cloud.student_weights[n]) for n, w in two.final_weights.items())
    assert [h["accepted"] for h in two.history] == [h["accepted"] for h in one.history]
    assert len(two.history) == 2 and two.epsilon == one.epsilon
    assert list(two.device_traffic) == list(one.device_traffic) == [a.device_id for a in tiny_cloud.assignments]

    def update_bytes(traffic):
        return {d: sum(r.nbytes for r in recs if r.direction == "up" and "/update/" in r.topic)
                for d, recs in traffic.items()}

    assert update_bytes(two.device_traffic) == update_bytes(one.device_traffic)
    assert all(n > 0 for n in update_bytes(two.device_traffic).values())
    assert sorted(two.device_refusals) == sorted(one.device_refusals)
    assert sorted(p.name for p in (tmp_path / "two" / "devices").iterdir()) == ["devices-1.log", "devices-2.log"]
    assert not device_children()


def test_a_child_killed_mid_run_fails_the_run_naming_its_group_and_the_signal(broker, tiny_config, tiny_cloud,
                                                                              tmp_path):
    config = dataclasses.replace(seeded_central(tiny_config, 2), deadline_s=30.0)

    def kill_one_group(record) -> None:
        if record.round == 0:
            os.kill(device_children()[-1].pid, signal.SIGKILL)

    started = time.monotonic()
    with pytest.raises(DeviceProcessFailed) as failed:
        run_federation(config, tiny_cloud, broker.host, broker.port, tmp_path, 0.3, fleet="prockill",
                       on_round_end=kill_one_group)
    message = str(failed.value)
    named = re.match(r"device group (\d) of 2 \((\d) devices, dev\d+\.\.dev\d+\) died during the run", message)
    assert named is not None, message
    assert "killed by SIGKILL (exit code -9)" in message
    assert str(tmp_path / "devices" / f"devices-{named[1]}.log") in message
    assert time.monotonic() - started < config.deadline_s + 30
    assert not device_children()


def test_a_child_that_cannot_reach_the_broker_fails_the_start_with_its_exit_code_and_log_tail(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again once the block ends: nothing listens there
    rng = np.random.default_rng(0)
    devices = [HostedDevice(f"d{i}", rng.random((4, 8, 8, 1), dtype=np.float32), None, np.random.SeedSequence(i))
               for i in range(3)]
    settings = host_settings(ExperimentConfig(devices=3), "nobroker", "127.0.0.1", port, generate_signing_key(),
                             tmp_path, worker_threads=1, resend_interval_s=10.0)
    hosts = DeviceProcesses(settings, 2, tmp_path / "devices")
    with pytest.raises(DeviceProcessFailed) as failed:
        hosts.start(devices)
    message = str(failed.value)
    assert "device group 1 of 2 (2 devices, d0..d1) ended before sending 'started'" in message
    assert "exited with code 1" in message
    assert f"127.0.0.1:{port}" in message and "ConnectionError" in message  # the child's own traceback, tail
    assert hosts.children == [] and not device_children()


@pytest.mark.parametrize("requested, devices, cores, expected", [
    (None, 499, 2, 1), (None, 500, 2, 2), (None, 10_000, 8, 8), (None, 10_000, 1, 1),
    (1, 10_000, 2, 1), (4, 3, 2, 3), (3, 1000, 2, 3),
], ids=["auto-small", "auto-at-threshold", "auto-cores", "auto-one-core", "one", "at-most-one-per-device",
        "more-than-cores"])
def test_device_processes_auto_is_one_below_500_devices_else_one_per_core(requested, devices, cores, expected):
    assert device_process_count(requested, devices, cores) == expected


def test_a_process_count_below_one_names_the_flag():
    with pytest.raises(ValueError, match="--device-processes must be auto or at least 1, got 0"):
        device_process_count(0, 10)


def test_the_device_child_imports_neither_tensorflow_nor_cloud():
    """A child loads what a device would (edge, the host), so P children do not pay TensorFlow's import."""
    import subprocess
    import sys

    code = ("import sys, simulator.device_group_process; "
            "sys.exit(any(m in sys.modules for m in ('tensorflow', 'cloud', 'ray')))")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
