"""The fleet's set-up comes before its first round: every device holds the start model and has labelled its
samples when round 0 opens, so round 0 costs what a later round costs (issue 11: ms per device-round)."""

from __future__ import annotations

import dataclasses
import logging

from edge.broker_credentials import BrokerCredentials
from edge.seeding import FleetSeeds
from edge.signed_artifact import generate_signing_key
from edge.topics import FleetTopics
from simulator.federation import fleet_bundle, host_settings, hosted_devices, run_federation, wait_for_setup
from simulator.ray_device_host import DeviceHost


def test_every_device_holds_the_start_model_before_its_first_notice(broker, tiny_config, tiny_cloud, tmp_path):
    out = run_federation(dataclasses.replace(tiny_config, rounds=2), tiny_cloud, broker.host, broker.port, tmp_path,
                         0.0, fleet="setup")
    topics = FleetTopics("setup")
    assert out.setup_seconds is not None and out.setup_seconds >= 0
    for device, records in out.device_traffic.items():
        down = [r.topic for r in records if r.direction == "down"]
        first_notice = next(i for i, t in enumerate(down) if t.startswith(topics.cohort(device)))
        assert any(t.startswith(topics.model(0)) for t in down[:first_notice]), (device, down[:first_notice + 1])
        assert not any(t.startswith(topics.model(0)) for t in down[first_notice:]), "round 0 sent the model again"
    assert [len(h["accepted"]) for h in out.history] == [tiny_config.devices] * 2


def test_devices_with_nothing_published_are_not_set_up(broker, tiny_config, tiny_cloud, tmp_path):
    """Connected devices of a fleet whose aggregator published nothing yet: none counts as prepared."""
    bundle = fleet_bundle(tiny_config, tiny_cloud, 0.0, "unpublished")
    devices = hosted_devices(bundle, tiny_cloud, FleetSeeds.from_seed(0, len(bundle.plans)),
                             lambda _: BrokerCredentials())
    host = DeviceHost(host_settings(tiny_config, "unpublished", broker.host, broker.port, generate_signing_key(),
                                    tmp_path, 1, 10.0))
    try:
        assert host.start(devices) == len(devices)
        assert host.wait_prepared(0.5) == 0
        assert not any(agent.prepared.is_set() for agent in host.agents)
    finally:
        host.stop()


def test_a_slow_set_up_is_reported_by_count_and_the_rounds_start_anyway(caplog):
    asked = []

    def two_of_five(timeout_s: float) -> int:
        asked.append(timeout_s)
        return 2

    with caplog.at_level(logging.WARNING, logger="dmskd.simulator"):
        seconds = wait_for_setup(two_of_five, 5)
    assert seconds >= 0 and asked == [60.0 + 0.02 * 5]
    assert "2 of 5 devices set up" in caplog.text and "without the other 3" in caplog.text
