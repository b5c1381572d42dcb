"""A device downloads the global model as a step from the version it holds, over the real broker; a device
that missed a version fetches the full model, and a step it did not get from the fleet key changes nothing."""

from __future__ import annotations

import time

import numpy as np
import pytest

from edge.agent import DeviceAgent
from edge.model_step import quantised_step
from edge.mqtt_session import MqttSession
from edge.plan import DevicePlan
from edge.signed_artifact import generate_signing_key, sign
from edge.topics import FleetTopics
from edge.wire import ModelStepMeta, WeightsMeta, encode_model_step, encode_weights

DEVICE = "dev-s"
V0 = {"w": np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4), "b": np.zeros(4, np.float32)}


def _wait_until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


class _Fleet:
    """The aggregator's side: signed, retained full models and steps, and the versions they chain."""

    def __init__(self, broker, fleet: str) -> None:
        self.key, self.fleet, self.topics = generate_signing_key(), fleet, FleetTopics(fleet)
        self.session = MqttSession(f"{fleet}-aggregator", broker.host, broker.port).connect()
        self.retained: list[str] = []
        self.models = {0: V0}

    def publish(self, topic: str, payload: bytes, counter: int, key=None) -> None:
        self.session.publish(topic, sign(key or self.key, topic, counter, payload), retain=True, wait=True)
        self.retained.append(topic)

    def plan(self) -> None:
        plan = DevicePlan(self.fleet, DEVICE, "s0", "0" * 16, "1" * 16, rounds=10, update_bits=8, model_bits=8)
        self.publish(self.topics.plan(DEVICE), plan.to_json(), 1)

    def full(self, version: int) -> None:
        blob = encode_weights(self.models[version], WeightsMeta(self.fleet, version, version))
        self.publish(self.topics.model(version), blob, version)

    def step(self, version: int, key=None, deliver: bool = True) -> None:
        """Version `version` = version-1 plus a quantised step (made here, as the engine does)."""
        rng = np.random.default_rng(version)
        target = {k: v + rng.normal(0, 0.05, v.shape).astype(np.float32) for k, v in self.models[version - 1].items()}
        wire, self.models[version] = quantised_step(self.models[version - 1], target, 8, rng)
        blob = encode_model_step(wire, ModelStepMeta(self.fleet, version, version, version - 1, "sq8-delta"))
        if deliver:
            self.publish(self.topics.model_step, blob, version, key)

    def close(self) -> None:
        for topic in self.retained:  # the broker outlives the test
            self.session.clear_retained(topic, 1)
        self.session.close()


@pytest.fixture
def fleet_and_device(broker, request):
    fleet = _Fleet(broker, f"steps-{request.node.name[-40:].replace('_', '-')}")
    fleet.plan()
    fleet.full(0)
    agent = DeviceAgent(DEVICE, fleet.fleet, MqttSession(f"{fleet.fleet}-{DEVICE}", broker.host, broker.port),
                        np.zeros((3, 8, 8, 1), np.float32), None, fleet.key.public_key(),
                        seed=np.random.SeedSequence(0))
    agent.start()
    try:
        assert _wait_until(lambda: agent.latest_model is not None and not agent._full_model_subscribed)
        yield fleet, agent
    finally:
        agent.stop()
        fleet.close()


def _held(agent: DeviceAgent) -> int:
    return -1 if agent.latest_model is None else agent.latest_model[0]


def _downloads(agent: DeviceAgent, topic: str) -> int:
    return sum(1 for r in agent.session.traffic if r.direction == "down" and r.topic == topic)


def test_a_device_rebuilds_each_version_from_its_step_and_never_downloads_the_full_model_again(
        fleet_and_device) -> None:
    fleet, agent = fleet_and_device
    for v in (1, 2):
        fleet.step(v)
        fleet.full(v)
        assert _wait_until(lambda v=v: _held(agent) == v)
        assert all(agent.latest_model[2][k].tobytes() == fleet.models[v][k].tobytes() for k in V0)
    assert _downloads(agent, fleet.topics.model(0)) == 1
    assert _downloads(agent, fleet.topics.model(1)) == _downloads(agent, fleet.topics.model(2)) == 0
    assert _downloads(agent, fleet.topics.model_step) == 2  # each version's step, once


def test_a_device_that_missed_a_version_fetches_the_full_model_then_goes_back_to_steps(fleet_and_device) -> None:
    fleet, agent = fleet_and_device
    fleet.step(1, deliver=False)  # this device was away for version 1
    fleet.step(2)
    fleet.full(2)
    assert _wait_until(lambda: _held(agent) == 2)
    assert all(agent.latest_model[2][k].tobytes() == fleet.models[2][k].tobytes() for k in V0)
    assert _downloads(agent, fleet.topics.model(2)) == 1
    assert _wait_until(lambda: not agent._full_model_subscribed)  # and drops the full model's topic again
    fleet.step(3)
    assert _wait_until(lambda: _held(agent) == 3)


def test_a_step_signed_by_a_stranger_is_refused_and_the_held_model_kept(fleet_and_device) -> None:
    fleet, agent = fleet_and_device
    fleet.step(1, key=generate_signing_key())
    assert _wait_until(lambda: any("step" in t for t, _ in agent.refused))
    assert _held(agent) == 0 and agent.latest_model[2]["w"].tobytes() == V0["w"].tobytes()
