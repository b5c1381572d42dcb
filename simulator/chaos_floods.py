"""What a foreign MQTT client (no key, no plan, anonymous on the broker) throws at a fleet in the chaos benchmark.

- `partial_chunk_flood`: chunk streams that never complete (every chunk of a big message but its last)
  on the aggregator's update topics and the devices' model topic;
- `garbage_flood`: many small messages at QoS 0 (random bytes, chunk-framed random bytes, the malformed
  update table of simulator.malformed_updates) on every topic a fleet client reads;
- `oversized`: 20 MB and 100 MB messages, chunked (complete, hash-correct) and as one MQTT packet.
Each takes a `stop` event (the run ended) and returns `FloodStats`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import paho.mqtt.client as mqtt

from edge.chunking import DEFAULT_CHUNK_LIMIT, split_message
from edge.topics import FleetTopics

MIB = 1024 * 1024
STRANGERS = ("intruder", "dev999", "x" * 200)


@dataclass
class FloodStats:
    messages: int = 0  # MQTT publishes
    payload_bytes: int = 0
    seconds: float = 0.0
    refused_connections: int = 0  # a packet over the broker's limit: the broker closed the connection
    started_at: float = field(default_factory=time.monotonic)

    def during(self, start: float, end: float) -> float:
        """The share of this flood's span that fell within [start, end] (the run's rounds)."""
        if self.seconds <= 0:
            return float(start <= self.started_at <= end)
        overlap = min(end, self.started_at + self.seconds) - max(start, self.started_at)
        return max(0.0, overlap) / self.seconds

    def add(self, payload: bytes | bytearray) -> None:
        self.messages += 1
        self.payload_bytes += len(payload)


class Flooder:
    """A paho client of its own; publishes are paced by waiting for the last one every `window` messages."""

    def __init__(self, host: str, port: int, client_id: str, window: int = 1000) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        self.client.max_inflight_messages_set(100)
        self.client.connect(host, port)
        self.client.loop_start()
        self.window, self._since = window, 0

    def send(self, topic: str, payload: bytes, qos: int = 0, stats: FloodStats | None = None) -> None:
        info = self.client.publish(topic, payload, qos=qos)
        if stats is not None:
            stats.add(payload)
        self._since += 1
        if self._since >= self.window:
            self._since = 0
            self.drain(info)

    @staticmethod
    def drain(info: mqtt.MQTTMessageInfo, timeout: float = 30.0) -> None:
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):  # not connected (paho reconnects) or the message was dropped
            time.sleep(0.5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def partial_chunk_flood(flooder: Flooder, topics: FleetTopics, devices: Sequence[str], current_round: Callable[[], int],
                        total_bytes: int, stop: threading.Event, message_bytes: int = 4 * MIB,
                        chunk_limit: int = 1000 * 1024) -> FloodStats:
    """total_bytes of first chunks, half on update topics (the fleet's devices and strangers, the open round
    and others) and half on model topics (versions ahead of the open round), none of them completing."""
    stats, started = FloodStats(), time.monotonic()
    payload = np.random.default_rng(0).bytes(message_bytes)
    i = 0
    while stats.payload_bytes < total_bytes and not stop.is_set():
        r = current_round()
        if i % 2 == 0:
            sender = (*devices, *STRANGERS)[(i // 2) % (len(devices) + len(STRANGERS))]
            base = topics.update(r + (i // 2) % 3 - 1 if (i // 2) % 5 == 4 else r, sender)
        else:
            base = topics.model(r + 1 + (i // 2) % 4)
        chunks = split_message(payload, f"flood{i:07d}", chunk_limit)[:-1]
        for index, chunk in enumerate(chunks):
            flooder.send(f"{base}/{index}", chunk, qos=1, stats=stats)
        i += 1
    stats.seconds = time.monotonic() - started
    return stats


def malformed_update_blobs() -> list[bytes]:
    """The payloads of simulator.malformed_updates' case table, or none if it cannot be imported."""
    try:
        from simulator import malformed_updates
        return [case.build() for case in malformed_updates.CASES]
    except Exception:  # another engineer's table, possibly mid-edit: the flood goes on without it
        return []


def garbage_flood(flooder: Flooder, topics: FleetTopics, devices: Sequence[str], rounds: int,
                  current_round: Callable[[], int], count: int, stop: threading.Event,
                  rng: np.random.Generator) -> FloodStats:
    """count QoS 0 messages on update, model, plan, cohort, status and result topics."""
    stats, started = FloodStats(), time.monotonic()
    names = (*devices, *STRANGERS)
    malformed = [split_message(b, f"m{k}") for k, b in enumerate(malformed_update_blobs())]
    raw = [rng.bytes(int(n)) for n in rng.integers(1, 3000, size=256)]
    framed = [split_message(b, f"g{k}")[0] for k, b in enumerate(raw)]
    truncated = [c[:int(rng.integers(1, len(c)))] for c in framed]
    for k in range(count):
        if stop.is_set():
            break
        r = current_round() + int(rng.integers(-1, 2))
        device = names[int(rng.integers(len(names)))]
        family = k % 6
        base = (topics.update(r, device), topics.model(max(0, r) + int(rng.integers(0, 3))), topics.plan(device),
                topics.cohort(device), topics.status(device), topics.result(r))[family]
        kind = int(rng.integers(4))
        if family == 0 and malformed and kind == 3:
            for index, chunk in enumerate(malformed[k % len(malformed)]):
                flooder.send(f"{base}/{index}", chunk, stats=stats)
            continue
        pool = (raw, framed, truncated, framed)[kind]
        flooder.send(f"{base}/0", pool[k % len(pool)], stats=stats)
    stats.seconds = time.monotonic() - started
    return stats


def oversized(host: str, port: int, topics: FleetTopics, devices: Sequence[str], current_round: Callable[[], int],
              stop: threading.Event, sizes: Sequence[int] = (20 * 10**6, 100 * 10**6), bursts: int = 2,
              pause_s: float = 2.0) -> FloodStats:
    """`bursts` times: every size chunked (at the devices' 128 KB) onto a device's update topic of the open round
    and onto the next model topic, then as one MQTT packet onto each (over mosquitto's packet limit)."""
    stats, started = FloodStats(), time.monotonic()
    chunked = Flooder(host, port, "chaos-oversized", window=50)
    try:
        for burst in range(bursts):
            for size in sizes:
                payload = np.random.default_rng(size + burst).bytes(size)
                r = current_round()
                for base in (topics.update(r, devices[burst % len(devices)]), topics.model(r + 1)):
                    if stop.is_set():
                        return stats
                    for index, chunk in enumerate(split_message(payload, f"big{burst}-{size}", DEFAULT_CHUNK_LIMIT)):
                        chunked.send(f"{base}/{index}", chunk, qos=1, stats=stats)
                    stats.refused_connections += _one_packet(host, port, f"{base}/0", payload, stats)
            stop.wait(pause_s)
    finally:
        chunked.close()
        stats.seconds = time.monotonic() - started
    return stats


def _one_packet(host: str, port: int, topic: str, payload: bytes, stats: FloodStats) -> int:
    """Publish payload unchunked from a fresh client; 1 if the broker closed the connection instead."""
    closed = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"chaos-packet-{len(payload)}",
                         protocol=mqtt.MQTTv311, reconnect_on_failure=False)
    client.on_disconnect = lambda *_: closed.set()
    client.connect(host, port)
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1)
        stats.add(payload)
        deadline = time.monotonic() + 30
        while not (info.is_published() or closed.is_set()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return int(not info.is_published())
    finally:
        client.disconnect()
        client.loop_stop()
