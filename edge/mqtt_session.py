"""A thin paho-mqtt 2 session: chunked publish, reassembled delivery, payload byte counting.

Every logical message on topic T travels as chunks on T/<index> (edge/chunking.py), so the
same code carries a 200-byte plan and a 200-KB shard. Handlers receive whole messages on
their logical topic; they run on paho's network thread and must be quick (hand work off).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.chunking import DEFAULT_CHUNK_LIMIT, ChunkAssembler, ChunkError, split_message
from edge.topics import chunk_base

log = logging.getLogger("dmskd.mqtt")

Handler = Callable[[str, bytes], None]
ErrorHandler = Callable[[str, str], None]


@dataclass(frozen=True)
class TrafficRecord:
    """One MQTT payload sent or received by this client, as counted on the wire."""

    direction: str  # "up" (published) or "down" (received)
    topic: str
    nbytes: int


class MqttSession:
    """One MQTT 3.1.1 client: connect, subscribe with handlers, publish chunked, count bytes."""

    def __init__(self, client_id: str, host: str, port: int, chunk_limit: int = DEFAULT_CHUNK_LIMIT,
                 will: tuple[str, bytes] | None = None, keepalive: int = 30) -> None:
        self.client_id = client_id
        self.host, self.port, self.keepalive = host, port, keepalive
        self.chunk_limit = chunk_limit
        self.traffic: list[TrafficRecord] = []
        self._lock = threading.Lock()
        self._handlers: list[tuple[str, Handler]] = []
        self._on_error: ErrorHandler | None = None
        self._assembler = ChunkAssembler()
        self._connected = threading.Event()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                   protocol=mqtt.MQTTv311, clean_session=True)
        self._client.max_queued_messages_set(0)
        if will:
            self._client.will_set(will[0], will[1], qos=1, retain=True)
        self._client.on_connect = self._handle_connect
        self._client.on_message = self._handle_message
        self._client.on_disconnect = self._handle_disconnect

    def on_error(self, handler: ErrorHandler) -> None:
        """Called with (topic, reason) when a chunk or message cannot be reassembled."""
        self._on_error = handler

    def subscribe(self, topic_filter: str, handler: Handler) -> None:
        """Deliver every whole message under topic_filter (chunk level added here) to handler."""
        self._handlers.append((topic_filter, handler))
        if self._connected.is_set():
            self._client.subscribe(topic_filter + "/+", qos=1)

    def connect(self, timeout: float = 10.0) -> MqttSession:
        """Connect and start the network loop; raise ConnectionError naming the broker on failure."""
        try:
            self._client.connect(self.host, self.port, keepalive=self.keepalive)
        except OSError as exc:
            raise ConnectionError(f"cannot reach MQTT broker at {self.host}:{self.port} ({exc}); "
                                  f"start one (mosquitto -p {self.port}) or pass --broker host:port") from exc
        self._client.loop_start()
        if not self._connected.wait(timeout):
            self._client.loop_stop()
            raise ConnectionError(f"MQTT broker at {self.host}:{self.port} did not accept the connection "
                                  f"within {timeout:.0f} s")
        return self

    def close(self) -> None:
        """Disconnect cleanly and stop the network loop."""
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False,
                wait: bool = True, timeout: float = 30.0) -> int:
        """Publish a logical message as chunks; return its chunk count. Waits for PUBACKs if asked."""
        chunks = split_message(payload, message_id=uuid.uuid4().hex[:16], limit=self.chunk_limit)
        infos = []
        for i, chunk in enumerate(chunks):
            infos.append(self._client.publish(f"{topic}/{i}", chunk, qos=qos, retain=retain))
            self._record("up", topic, len(chunk))
        if wait:
            deadline = time.monotonic() + timeout
            for info in infos:
                info.wait_for_publish(max(0.01, deadline - time.monotonic()))
                if not info.is_published():
                    raise TimeoutError(f"publish to {topic} not acknowledged within {timeout:.0f} s")
        return len(chunks)

    def clear_retained(self, topic: str, num_chunks: int) -> None:
        """Remove a retained chunked message from the broker (empty retained publish per chunk)."""
        for i in range(num_chunks):
            self._client.publish(f"{topic}/{i}", b"", qos=1, retain=True)

    def _record(self, direction: str, topic: str, nbytes: int) -> None:
        with self._lock:
            self.traffic.append(TrafficRecord(direction, topic, nbytes))

    def _handle_connect(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags,
                        reason_code: ReasonCode, properties: Properties | None) -> None:
        if reason_code.is_failure:
            log.error("%s: broker refused connection: %s", self.client_id, reason_code)
            return
        for topic_filter, _ in self._handlers:
            client.subscribe(topic_filter + "/+", qos=1)
        self._connected.set()

    def _handle_disconnect(self, client: mqtt.Client, userdata: object, flags: mqtt.DisconnectFlags,
                           reason_code: ReasonCode, properties: Properties | None) -> None:
        self._connected.clear()
        if reason_code.is_failure:
            log.warning("%s: disconnected from broker: %s (paho reconnects)", self.client_id, reason_code)

    def _handle_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if not msg.payload:
            return  # a cleared retained message
        topic = chunk_base(msg.topic)
        self._record("down", topic, len(msg.payload))
        try:
            whole = self._assembler.add(bytes(msg.payload))
        except ChunkError as exc:
            log.warning("%s: dropped chunk on %s: %s", self.client_id, msg.topic, exc)
            if self._on_error:
                self._on_error(topic, str(exc))
            return
        if whole is None:
            return
        for topic_filter, handler in self._handlers:
            if mqtt.topic_matches_sub(topic_filter, topic):
                try:
                    handler(topic, whole)
                except Exception:  # a handler bug must not kill the network thread
                    log.exception("%s: handler for %s failed", self.client_id, topic)
