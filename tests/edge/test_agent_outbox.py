"""An update stays in the device's on-disk outbox, and is resent, until a signed round result acknowledges it."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator

import numpy as np

from edge.agent import DeviceAgent
from edge.mqtt_session import MqttSession
from edge.outbox import UpdateOutbox
from edge.signed_artifact import generate_signing_key, sign
from edge.topics import FleetTopics
from edge.wire import UpdateMeta, ack_digest, decode_update, encode_update

FLEET, DEVICE = "outbox-test", "dev-a"


def _update_blob() -> bytes:
    return encode_update({"w": np.arange(6, dtype=np.float32).reshape(2, 3)},
                         UpdateMeta(FLEET, DEVICE, 4, 4, 12, 1.0, 0.0, "none"))


def _agent(broker, tmp_path, key, resend_interval_s: float = 10.0) -> DeviceAgent:
    return DeviceAgent(DEVICE, FLEET, MqttSession(f"{FLEET}-{DEVICE}", broker.host, broker.port),
                       np.zeros((3, 8, 8, 1), np.float32), None, key.public_key(),
                       seed=np.random.SeedSequence(0), outbox_dir=tmp_path, resend_interval_s=resend_interval_s)


class _Listener:
    """The aggregator's side of the test: hears updates on round 4, publishes signed round results."""

    def __init__(self, broker, key) -> None:
        self.key, self.received, self.got = key, [], threading.Event()
        self.session = MqttSession("outbox-listener", broker.host, broker.port)
        self.session.subscribe(FleetTopics(FLEET).update(4, DEVICE), self._on_update)
        self.session.connect()

    def _on_update(self, topic: str, payload: bytes) -> None:
        self.received.append(payload)
        self.got.set()

    def close(self) -> None:
        self.session.clear_retained(FleetTopics(FLEET).cohort(DEVICE), 1)  # the broker outlives the test
        self.session.close()

    def publish_result(self, acked: list[bytes]) -> None:
        """The next round's notice to the device, acknowledging the first of `acked` (none: null)."""
        topic = FleetTopics(FLEET).cohort(DEVICE)
        digest = ack_digest(acked[0]) if acked else None
        notice = {"round": 5, "selected": False, "ack": {"round": 4, "update": digest}}
        self.session.publish(topic, sign(self.key, topic, 5, json.dumps(notice).encode()), retain=True)


def _wait_until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@contextlib.contextmanager
def _device_with_outbox(broker, tmp_path, resend_interval_s: float = 10.0,
                        stranger_results: bool = False) -> Iterator[tuple[DeviceAgent, _Listener, bytes]]:
    """A device started with one unacknowledged round-4 update in its outbox, and the listener that hears it
    (signing results with the fleet key, or with a stranger's)."""
    key, blob = generate_signing_key(), _update_blob()
    UpdateOutbox(tmp_path / DEVICE).append(4, blob)
    listener = _Listener(broker, generate_signing_key() if stranger_results else key)
    agent = _agent(broker, tmp_path, key, resend_interval_s)
    try:
        agent.start()
        yield agent, listener, blob
    finally:
        agent.stop()
        listener.close()


def _outbox(tmp_path) -> dict[int, bytes]:
    """What the device's outbox file holds, read as a restarted device would."""
    return UpdateOutbox(tmp_path / DEVICE).load()


def test_update_in_outbox_is_resent_on_start_and_kept_until_acknowledged(broker, tmp_path):
    with _device_with_outbox(broker, tmp_path) as (agent, listener, blob):
        assert listener.got.wait(10)
        assert listener.received[0] == blob
        assert decode_update(listener.received[0])[1].update_id == f"{DEVICE}:4:4"
        time.sleep(0.3)
        assert _outbox(tmp_path), "a PUBACK alone must not empty the outbox"
        listener.publish_result([blob])
        assert _wait_until(lambda: 4 in agent.acknowledged)
        assert not _outbox(tmp_path)


def test_unacknowledged_update_is_resent_until_the_result_arrives(broker, tmp_path):
    with _device_with_outbox(broker, tmp_path, resend_interval_s=0.2) as (agent, listener, blob):
        assert _wait_until(lambda: len(listener.received) >= 3), "no resend while unacknowledged"
        listener.publish_result([blob])
        assert _wait_until(lambda: 4 in agent.acknowledged)
        settled = len(listener.received)
        time.sleep(0.8)
        assert len(listener.received) <= settled + 1, "resends went on after the acknowledgement"


def test_a_result_that_does_not_list_the_update_drops_it_unacknowledged(broker, tmp_path):
    with _device_with_outbox(broker, tmp_path) as (agent, listener, _):
        assert listener.got.wait(10)
        listener.publish_result([b"someone else's update"])
        assert _wait_until(lambda: not _outbox(tmp_path))
        assert 4 not in agent.acknowledged


def test_a_result_signed_by_a_stranger_acknowledges_nothing(broker, tmp_path):
    with _device_with_outbox(broker, tmp_path, stranger_results=True) as (agent, listener, blob):
        assert listener.got.wait(10)
        listener.publish_result([blob])
        assert _wait_until(lambda: any("cohort" in topic for topic, _ in agent.refused))
        assert 4 not in agent.acknowledged
        assert _outbox(tmp_path)
