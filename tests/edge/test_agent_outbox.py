"""A device that died before its update was acknowledged resends it from the on-disk outbox."""

from __future__ import annotations

import threading

import numpy as np

from edge.agent import DeviceAgent
from edge.mqtt_session import MqttSession
from edge.signed_artifact import generate_signing_key
from edge.topics import FleetTopics
from edge.wire import UpdateMeta, decode_update, encode_update


def test_unacknowledged_update_in_outbox_is_resent_on_start(broker, tmp_path):
    fleet, device = "outbox-test", "dev-a"
    blob = encode_update({"w": np.arange(6, dtype=np.float32).reshape(2, 3)},
                         UpdateMeta(fleet, device, 4, 4, 12, 1.0, 0.0, "none", f"{device}:4:4"))
    (tmp_path / device).mkdir()
    (tmp_path / device / "round-00004.safetensors").write_bytes(blob)
    received: list[bytes] = []
    got = threading.Event()
    listener = MqttSession("outbox-listener", broker.host, broker.port)
    listener.subscribe(FleetTopics(fleet).update(4, device), lambda t, p: (received.append(p), got.set()))
    listener.connect()
    agent = DeviceAgent(device, fleet, MqttSession(f"{fleet}-{device}", broker.host, broker.port),
                        np.zeros((3, 8, 8, 1), np.float32), None, generate_signing_key().public_key(),
                        seed=np.random.SeedSequence(0), outbox_dir=tmp_path)
    try:
        agent.start()
        assert got.wait(10)
    finally:
        agent.stop()
        listener.close()
    assert received == [blob]
    assert decode_update(received[0])[1].update_id == f"{device}:4:4"
    assert not list((tmp_path / device).glob("*.safetensors"))
