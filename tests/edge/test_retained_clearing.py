"""A shorter message replacing a chunked retained one leaves no stale chunk on the broker (the step topic)."""

from __future__ import annotations

import threading
import time
import uuid

import paho.mqtt.client as mqtt

from edge.mqtt_session import MqttSession


def _retained_chunks(broker, topic: str) -> dict[str, bytes]:
    """What a fresh subscriber to topic/+ is handed as retained, after a short quiet."""
    got: dict[str, bytes] = {}
    done = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"probe-{uuid.uuid4().hex[:8]}")
    client.on_message = lambda c, u, msg: got.__setitem__(msg.topic, bytes(msg.payload))
    client.on_subscribe = lambda *args: done.set()
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.subscribe(f"{topic}/+", qos=1)
        assert done.wait(10)
        time.sleep(0.5)
    finally:
        client.loop_stop()
        client.disconnect()
    return got


def test_clearing_from_the_new_count_removes_only_the_leftover_chunks(broker):
    topic = f"dmskd/clearing-{uuid.uuid4().hex[:8]}/step"
    session = MqttSession("clearing-test", broker.host, broker.port, chunk_limit=1024)
    session.connect()
    try:
        assert session.publish(topic, bytes(2500), retain=True, wait=True) == 3  # as the last round's step
        assert session.publish(topic, b"new", retain=True, wait=True) == 1  # this round's: one chunk
        session.clear_retained(topic, 3, first=1)
        time.sleep(0.3)
        left = _retained_chunks(broker, topic)
        assert sorted(left) == [f"{topic}/0"] and left[f"{topic}/0"].endswith(b"new")
        session.clear_retained(topic, 1)
        time.sleep(0.3)
        assert _retained_chunks(broker, topic) == {}
    finally:
        session.close()
