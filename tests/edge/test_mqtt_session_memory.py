"""A flood of chunks that never complete, over the real broker, leaves the receiver's memory bounded."""

from __future__ import annotations

import threading
import time

import numpy as np
import paho.mqtt.client as mqtt

from edge.chunking import split_message
from edge.mqtt_session import MqttSession

KIB = 1024


def test_a_flood_of_incomplete_chunk_streams_is_evicted_and_a_real_message_still_arrives(broker) -> None:
    received: list[bytes] = []
    arrived = threading.Event()
    receiver = MqttSession("flood-receiver", broker.host, broker.port)
    receiver.reassembly.max_total_bytes = 2 * 1024 * KIB
    receiver.subscribe("dmskd/flood/round/+/update/+", lambda t, p: (received.append(p), arrived.set()))
    receiver.connect()
    attacker = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="flooder", protocol=mqtt.MQTTv311)
    attacker.connect(broker.host, broker.port)
    attacker.loop_start()
    flood = 120  # 120 x 256 KiB stored = 30 MiB without a bound
    try:
        for i in range(flood):
            chunk = split_message(bytes(4 * 1024 * KIB), f"f{i}", 256 * KIB + 1024)[0]
            attacker.publish(f"dmskd/flood/round/0/update/d{i % 7}/0", chunk, qos=1).wait_for_publish(10)
        deadline = time.monotonic() + 20
        while sum(receiver.reassembly.evictions.values()) < flood - 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert receiver.reassembly.stored_bytes <= 2 * 1024 * KIB
        assert sum(receiver.reassembly.evictions.values()) >= flood - 10
        honest = np.arange(100_000, dtype=np.float32).tobytes()
        sender = MqttSession("honest", broker.host, broker.port, chunk_limit=64 * KIB).connect()
        sender.publish("dmskd/flood/round/0/update/good", honest)
        sender.close()
        assert arrived.wait(10) and received == [honest]
    finally:
        attacker.loop_stop()
        attacker.disconnect()
        receiver.close()
