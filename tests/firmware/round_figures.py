"""Seconds and bytes per round of each device of a federation, measured the same way for the firmware and
for Python devices: a sniffer on the broker times each device's update against its cohort notice and
counts the update's chunk bytes on the wire; downlink bytes come from each device's own count."""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict

from edge.agent import DeviceAgent
from edge.mqtt_session import MqttSession
from edge.topics import FleetTopics

ONE_TIME = ("plan", "fleet", "shard", "student")  # streams a device downloads once, not per round
_TRAFFIC = re.compile(r"traffic up (\d+) bytes in \d+ messages, down (\d+) bytes")
_BY_STREAM = re.compile(r"traffic down by stream: (.*)")


class RoundSniffer:
    """Listens to every cohort notice and update of a fleet: when each was heard, and each update's bytes."""

    def __init__(self, broker: object, fleet: str) -> None:
        self.topics = FleetTopics(fleet)
        self.notices: dict[tuple[str, int], float] = {}  # (device, round) -> first notice heard
        self.updates: dict[tuple[str, int], float] = {}  # (device, round) -> first whole update heard
        self._lock = threading.Lock()
        self.session = MqttSession(f"{fleet}-sniffer", broker.host, broker.port)  # type: ignore[attr-defined]
        self.session.subscribe(f"{self.topics.root}/cohort/+", self._on_notice)
        self.session.subscribe(self.topics.all_updates, self._on_update)
        self.session.connect()

    @staticmethod
    def _device_round(topic: str) -> tuple[str, int]:
        parts = topic.split("/")  # dmskd/<fleet>/round/<r>/<kind>/<device>
        return parts[5], int(parts[3])

    def _on_notice(self, topic: str, payload: bytes) -> None:
        with self._lock:
            self.notices.setdefault(self._device_round(topic), time.monotonic())

    def _on_update(self, topic: str, payload: bytes) -> None:
        with self._lock:
            self.updates.setdefault(self._device_round(topic), time.monotonic())

    def seconds_per_round(self, device: str, rounds: int) -> float:
        """Mean seconds from a device's cohort notice to its update being heard, over the rounds it sent."""
        spans = [self.updates[(device, r)] - self.notices[(device, r)] for r in range(rounds)
                 if (device, r) in self.updates and (device, r) in self.notices]
        return sum(spans) / len(spans) if spans else float("nan")

    def update_bytes_per_round(self, device: str, rounds: int) -> float:
        """Mean chunk bytes per round the device published on its update topics (resends included)."""
        sizes: dict[int, int] = defaultdict(int)
        for rec in list(self.session.traffic):  # one record per chunk heard
            if rec.direction == "down" and "/update/" in rec.topic:
                dev, r = self._device_round(rec.topic)
                if dev == device:
                    sizes[r] += rec.nbytes
        return sum(sizes.values()) / rounds

    def close(self) -> None:
        self.session.close()


def _python_down(agent: DeviceAgent, rounds: int) -> tuple[float, int]:
    """A Python device's downlink per round (per-round streams) and its one-time downloads, in chunk bytes."""
    per_round = one_time = 0
    for rec in list(agent.session.traffic):
        if rec.direction != "down":
            continue
        kind = rec.topic.split("/")[2]
        if kind in ONE_TIME:
            one_time += rec.nbytes
        else:
            per_round += rec.nbytes
    return per_round / rounds, one_time


def _firmware_down(stdout: str, rounds: int) -> tuple[float, int]:
    """The firmware's downlink per round and one-time, from its final `traffic down by stream` line."""
    match = _BY_STREAM.search(stdout)
    if match is None:
        return float("nan"), 0
    words = match.group(1).split()
    by_stream = {words[i]: int(words[i + 1]) for i in range(0, len(words) - 1, 2)}
    one_time = by_stream.get("plan", 0) + by_stream.get("manifest", 0)
    return (sum(by_stream.values()) - one_time) / rounds, one_time


def figures_table(sniffer: RoundSniffer, firmware_device: str, firmware_stdout: str,
                  agents: dict[str, DeviceAgent], rounds: int) -> str:
    """One line per device: seconds per round, update bytes per round, downlink per round and one-time."""
    rows = [("device", "runtime", "s/round", "up B/round", "down B/round", "down once B")]
    down, once = _firmware_down(firmware_stdout, rounds)
    rows.append((firmware_device, "firmware (C, TFLM)", f"{sniffer.seconds_per_round(firmware_device, rounds):.3f}",
                 f"{sniffer.update_bytes_per_round(firmware_device, rounds):.0f}", f"{down:.0f}", str(once)))
    for device, agent in agents.items():
        down, once = _python_down(agent, rounds)
        rows.append((device, "python (LiteRT)", f"{sniffer.seconds_per_round(device, rounds):.3f}",
                     f"{sniffer.update_bytes_per_round(device, rounds):.0f}", f"{down:.0f}", str(once)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows)
