"""--engine ray gives the local engine's result: the same seeds, the same device code, the same order of sums.

One small local Ray cluster for the module (2 CPUs, a 128 MiB object store, no dashboard), shut down after."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cloud.strategy import DpMode
from simulator.federation import run_federation, run_in_process
from simulator.ray_cluster import RaySettings, RayUnavailable, head_address, probe_head, ray_session
from simulator.ray_federation import device_groups, run_federation_on_ray
from simulator.ray_fit import owner, plan_tasks

pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_cpus():
    with ray_session(RaySettings(num_cpus=2, object_store_bytes=128 * 2**20)) as cpus:
        yield cpus


def seeded_central(config):
    """Central DP with seeded noise: the sum is exact (integer grid), so equal results must be equal bits."""
    return dataclasses.replace(config, rounds=2, dp=DpMode.CENTRAL, noise_multiplier=0.3, insecure_seeded_noise=True)


def assert_same_bits(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype == np.float32
        assert a[name].tobytes() == b[name].tobytes(), name


def test_in_process_fits_on_ray_actors_give_the_local_weights_bit_for_bit(ray_cpus, tiny_config, tiny_cloud):
    """Batches of one device, so consecutive devices train on different actors and come back interleaved."""
    from simulator.ray_fit import RayFanOut

    config = seeded_central(tiny_config)
    local = run_in_process(config, tiny_cloud, 0.3, fleet="rayfit")
    fan_out = RayFanOut(ray_cpus, batch=1)
    try:
        on_ray = run_in_process(config, tiny_cloud, 0.3, fleet="rayfit", fan_out=fan_out)
    finally:
        fan_out.close()
    assert_same_bits(local.state.weights, on_ray.state.weights)
    assert any(not np.array_equal(w, tiny_cloud.student_weights[n]) for n, w in on_ray.state.weights.items())
    assert [r.accepted for r in on_ray.records] == [r.accepted for r in local.records]
    assert on_ray.bytes_up == local.bytes_up


def test_devices_on_ray_actors_over_mqtt_give_the_local_engines_weights(ray_cpus, broker, tiny_config, tiny_cloud,
                                                                        tmp_path):
    """Each actor hosts a group of DeviceAgents on its own MqttLoop; the aggregator runs here."""
    config = seeded_central(tiny_config)
    local = run_federation(config, tiny_cloud, broker.host, broker.port, tmp_path / "local", 0.3, fleet="raylocal")
    on_ray = run_federation_on_ray(config, tiny_cloud, broker.host, broker.port, tmp_path / "ray", 0.3,
                                   hosts=ray_cpus, fleet="rayhosts")
    assert_same_bits(local.final_weights, on_ray.final_weights)
    assert [h["accepted"] for h in on_ray.history] == [h["accepted"] for h in local.history]
    assert len(on_ray.history) == config.rounds
    assert sorted(on_ray.device_traffic) == sorted(local.device_traffic)
    assert all(any(t.direction == "up" for t in traffic) for traffic in on_ray.device_traffic.values())
    assert on_ray.epsilon == local.epsilon


def test_a_round_is_cut_into_tasks_of_one_ownership_block_in_cohort_order():
    position = {f"d{i}": i for i in range(10)}
    cohort = ["d0", "d1", "d2", "d4", "d5", "d9"]  # a Poisson-sampled round skips some devices
    tasks = plan_tasks(cohort, position, batch=3, actors=2)
    assert tasks == [(0, ["d0", "d1", "d2"]), (1, ["d4", "d5"]), (1, ["d9"])]
    assert [d for _, devices in tasks for d in devices] == cohort
    assert all(owner(position[d], 3, 2) == a for a, devices in tasks for d in devices)


def test_devices_are_dealt_to_hosts_in_contiguous_groups_of_nearly_equal_size():
    assert device_groups(5, 2) == [range(0, 3), range(3, 5)]
    assert device_groups(2, 4) == [range(0, 1), range(1, 2)]
    assert sum(len(g) for g in device_groups(10_001, 7)) == 10_001


def test_a_ray_address_where_nothing_listens_fails_at_once_naming_it_and_the_fix():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again once the block ends
    with pytest.raises(RayUnavailable, match=rf"no Ray cluster answers at --ray-address 127.0.0.1:{port} .*"
                                             r"ray start --head"):
        probe_head(f"127.0.0.1:{port}")
    with pytest.raises(RayUnavailable, match="is not HOST:PORT"):
        head_address("10.0.0.5")
    assert head_address("ray://head.lan:10001") == ("head.lan", 10001)
    assert head_address("auto") is None


def test_the_local_engine_never_imports_ray():
    """ray loads only inside --engine ray (simulator.ray_cluster.ray_session, the engine modules)."""
    import subprocess
    import sys

    code = ("import sys; import simulator.__main__, simulator.experiment, simulator.dp_scaling, simulator.compare, "
            "simulator.engine_flags, simulator.ray_fit, simulator.ray_federation; "
            "sys.exit('ray' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
