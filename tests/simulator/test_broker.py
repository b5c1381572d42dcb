"""Real brokers on loopback, driven by paho-mqtt 2.2 (CallbackAPIVersion.VERSION2, MQTT 3.1.1)."""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.broker_address import parse_broker_url
from edge.chunking import DEFAULT_CHUNK_LIMIT as CHUNK_LIMIT  # DMSKD's largest chunk (AWS IoT Core's cap)
from simulator.broker import (
    BrokerError,
    EmbeddedBroker,
    MosquittoBroker,
    mosquitto_binary,
    start_broker,
)

TIMEOUT = 5.0  # seconds for any single wait


@pytest.fixture(scope="module", params=["mosquitto", "amqtt"])
def each_broker(request: pytest.FixtureRequest) -> Iterator[MosquittoBroker | EmbeddedBroker]:
    """Each broker kind in turn; mosquitto is skipped only when its binary is absent."""
    if request.param == "mosquitto" and mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    with start_broker(request.param) as running:
        yield running


class _Client:
    """A connected paho client that records what it receives, with Events to wait on."""

    def __init__(self, broker: MosquittoBroker | EmbeddedBroker, name: str) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._subacks: dict[int, threading.Event] = {}
        self._connected = threading.Event()
        self._connect_rc: object = None
        self.paho = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{name}-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        self.paho.on_connect = self._on_connect
        self.paho.on_subscribe = self._on_subscribe
        self.paho.on_message = self._on_message
        self.paho.connect(broker.host, broker.port, keepalive=30)
        self.paho.loop_start()
        assert self._connected.wait(TIMEOUT), f"no CONNACK from {broker!r}"
        assert not self._connect_rc.is_failure, f"connect refused: {self._connect_rc}"

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connect_rc = reason_code
        self._connected.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        with self._lock:
            event = self._subacks.setdefault(mid, threading.Event())
        self.granted = reason_codes
        event.set()

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        with self._arrived:
            self.messages.append(message)
            self._arrived.notify_all()

    def subscribe(self, topic: str, qos: int = 1) -> None:
        with self._lock:
            rc, mid = self.paho.subscribe(topic, qos=qos)
            assert rc == mqtt.MQTT_ERR_SUCCESS
            event = self._subacks.setdefault(mid, threading.Event())
        assert event.wait(TIMEOUT), f"no SUBACK for {topic}"
        assert not self.granted[0].is_failure, f"subscription to {topic} refused: {self.granted[0]}"

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Publish and, for QoS 1, wait for the PUBACK."""
        info = self.paho.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published(), f"no PUBACK for {topic} within {TIMEOUT} s"

    def wait_for(self, count: int) -> list[mqtt.MQTTMessage]:
        with self._arrived:
            ok = self._arrived.wait_for(lambda: len(self.messages) >= count, TIMEOUT)
            got = list(self.messages)
        assert ok, f"expected {count} message(s), got {len(got)}: {[m.topic for m in got]}"
        return got

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()


@contextmanager
def client(broker: MosquittoBroker | EmbeddedBroker, name: str) -> Iterator[_Client]:
    c = _Client(broker, name)
    try:
        yield c
    finally:
        c.close()


def fresh_topic(leaf: str) -> str:
    """Topics are unique per test: retained messages outlive a test on a shared broker."""
    return f"dmskd/test-{uuid.uuid4().hex[:12]}/{leaf}"


def test_qos1_payload_of_128_kib_round_trips_through_broker(each_broker) -> None:
    topic = fresh_topic("model/1")
    payload = os.urandom(CHUNK_LIMIT)
    with client(each_broker, "sub") as sub, client(each_broker, "pub") as pub:
        sub.subscribe(topic, qos=1)
        pub.publish(topic, payload, qos=1)
        (message,) = sub.wait_for(1)
    assert message.topic == topic
    assert message.qos == 1
    assert not message.retain
    assert len(message.payload) == CHUNK_LIMIT
    assert message.payload == payload


def test_retained_message_reaches_late_subscriber(each_broker) -> None:
    topic = fresh_topic("plan/dev-1")
    payload = b"shard=3;version=7;" + os.urandom(1000)
    with client(each_broker, "planner") as pub:
        pub.publish(topic, payload, qos=1, retain=True)
    # The publisher is gone; a device that connects afterwards still gets its plan.
    with client(each_broker, "late") as sub:
        sub.subscribe(topic, qos=1)
        (message,) = sub.wait_for(1)
    assert message.topic == topic
    assert message.retain, "a retained message replayed on subscribe carries the retain flag"
    assert message.payload == payload


def test_retained_message_is_cleared_by_empty_publish(each_broker) -> None:
    topic = fresh_topic("plan/dev-2")
    with client(each_broker, "planner") as pub:
        pub.publish(topic, b"stale plan", qos=1, retain=True)
        pub.publish(topic, b"", qos=1, retain=True)  # MQTT 3.1.1 §3.3.1.3: clears it
    with client(each_broker, "late") as sub:
        sub.subscribe(topic, qos=1)
        # A retained message would be sent right after the SUBACK, ahead of anything
        # published later on the topic: so once this marker arrives, nothing else came.
        sub.publish(topic, b"marker", qos=1)
        messages = sub.wait_for(1)
    assert [(m.payload, m.retain) for m in messages] == [(b"marker", False)]


def test_new_client_receives_no_retained_message_it_did_not_subscribe_to(each_broker) -> None:
    """Stock amqtt 0.12.1 replays on CONNECT the retained messages of every filter anyone
    subscribed to; EmbeddedBroker patches that, mosquitto never does it."""
    other_plan = fresh_topic("plan/dev-3")
    own_plan = fresh_topic("plan/dev-4")
    with client(each_broker, "dev-3") as other:
        other.subscribe(other_plan, qos=1)
        other.publish(other_plan, b"dev-3's plan", qos=1, retain=True)
        other.wait_for(1)
        with client(each_broker, "dev-4") as newcomer:
            newcomer.subscribe(own_plan, qos=1)
            newcomer.publish(own_plan, b"marker", qos=1)
            messages = newcomer.wait_for(1)
    assert [(m.topic, m.payload) for m in messages] == [(own_plan, b"marker")]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "localhost",  # no port
        "127.0.0.1:",
        ":1883",
        "127.0.0.1:port",
        "127.0.0.1:70000",
        "127.0.0.1:0",
        "mqtts://127.0.0.1:8883",  # TLS is not this function's business
        "ws://127.0.0.1:9001",
        "mqtt://127.0.0.1:1883/fleet",
        "mqtt://user:pw@127.0.0.1:1883",
        "mqtt:/127.0.0.1:1883",
        "two words:1883",
        "::1:1883",  # IPv6 needs brackets
    ],
)
def test_parse_broker_url_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match=r"host:port.*mqtt://host:port"):
        parse_broker_url(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:1883", ("127.0.0.1", 1883)),
        ("mqtt://localhost:18830", ("localhost", 18830)),
        ("MQTT://broker.local:1883/", ("broker.local", 1883)),
        (" [::1]:1883 ", ("::1", 1883)),
    ],
)
def test_parse_broker_url_accepts_host_port_forms(text: str, expected: tuple[str, int]) -> None:
    assert parse_broker_url(text) == expected


def test_broker_urls_round_trip_through_parse(each_broker) -> None:
    assert parse_broker_url(each_broker.url) == (each_broker.host, each_broker.port)
    assert each_broker.running


def test_start_broker_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="mosquitto.*amqtt.*auto"):
        start_broker("rabbitmq")


def test_missing_mosquitto_binary_names_the_install_command(monkeypatch) -> None:
    import simulator.broker as broker_module

    monkeypatch.setattr(broker_module, "mosquitto_binary", lambda: None)
    with pytest.raises(BrokerError, match="apt-get install mosquitto"):
        MosquittoBroker()


@pytest.mark.parametrize("kind", ["mosquitto", "amqtt"])
def test_stopped_broker_frees_its_port(kind: str) -> None:
    if kind == "mosquitto" and mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    running = start_broker(kind)
    host, port = running.host, running.port
    running.stop()
    assert not running.running
    with pytest.raises(OSError):
        socket.create_connection((host, port), timeout=1).close()


def test_session_broker_fixture_serves_mqtt(broker) -> None:
    """The conftest broker (mosquitto if installed, DMSKD_TEST_BROKER to force) works."""
    topic = fresh_topic("status/dev-5")
    with client(broker, "dev-5") as c:
        c.subscribe(topic, qos=1)
        c.publish(topic, b"online", qos=1)
        (message,) = c.wait_for(1)
    assert message.payload == b"online"


def test_mosquitto_disconnects_a_client_whose_packet_exceeds_max_packet_size() -> None:
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    with MosquittoBroker(max_packet_size=64 * 1024) as small, client(small, "big") as c:
        dropped = threading.Event()
        c.paho.on_disconnect = lambda *args: dropped.set()
        c.paho.publish(fresh_topic("model/2"), os.urandom(CHUNK_LIMIT), qos=1)
        assert dropped.wait(TIMEOUT), "mosquitto accepted a packet over max_packet_size"
