"""Harness for the host-built firmware device (dmskd-firmware): run it, read its log, speak to it as the fleet.

`FirmwareDevice` starts the binary with `python -m edge run`-like flags and collects its log lines on a
thread; `FleetSide` is the aggregator's half of the protocol driven from Python (signed plans, models,
steps and cohort notices; updates heard on the device's topic), so the device's protocol is exercised
without the aggregator when a test needs exact control."""

from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.chunking import DEFAULT_CHUNK_LIMIT
from edge.mqtt_session import MqttSession
from edge.plan import DevicePlan
from edge.signed_artifact import public_pem, sign
from edge.topics import FleetTopics
from edge.wire import WeightsMeta, encode_weights

OUTBOX_MAGIC = b"DMSKDOB1"  # firmware_stubs/device/outbox.h: magic | round (int64 BE) | update blob


def outbox_record(round_: int, blob: bytes) -> bytes:
    """The firmware's outbox record holding `blob` as the unacknowledged update of `round_`."""
    return OUTBOX_MAGIC + round_.to_bytes(8, "big") + blob


class FirmwareDevice:
    """One dmskd-firmware process; its stderr log kept line by line (`lines`), stdout at exit."""

    def __init__(self, binary: Path, device: str, fleet: str, broker: object, data: Path, fleet_key: Path,
                 outbox: Path, extra: list[str] | None = None) -> None:
        self.args = [str(binary), "--device", device, "--fleet", fleet, "--broker",
                     f"{broker.host}:{broker.port}", "--data", str(data),  # type: ignore[attr-defined]
                     "--fleet-key", str(fleet_key), "--outbox", str(outbox), *(extra or [])]
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        with self.proc.stderr:
            for line in self.proc.stderr:
                with self._changed:
                    self.lines.append(line.rstrip("\n"))
                    self._changed.notify_all()

    def log(self) -> str:
        """Everything the device logged so far."""
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 20.0, count: int = 1) -> list[str]:
        """The first `count` log lines matching the regex `pattern`; AssertionError with the log if they do not come."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [line for line in self.lines if regex.search(line)]
                if len(found) >= count:
                    return found[:count]
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no {count} log line(s) matching {pattern!r} within {timeout:.0f} s; "
                                         f"log:\n" + "\n".join(self.lines[-60:]))
                self._changed.wait(min(left, 0.2))

    def kill(self) -> None:
        """SIGKILL: a power cut, no goodbye."""
        self.proc.kill()
        self.proc.wait(10)

    def finish(self, timeout: float = 30.0) -> tuple[int, str]:
        """Wait for the process to end by itself; its exit code and stdout."""
        self.proc.wait(timeout)  # stderr belongs to the reader thread: communicate() would steal its lines
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        self._reader.join(5)
        return self.proc.returncode, out

    def stop(self) -> None:
        """SIGTERM if still running (the device publishes offline and exits), then reap it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(5)  # it reads stderr to its end (the process is gone) and closes it
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class FleetSide:
    """The aggregator's half of the wire for one device, from Python: signed publications, updates heard."""

    def __init__(self, broker: object, fleet: str, device: str, key: Ed25519PrivateKey,
                 chunk_limit: int = DEFAULT_CHUNK_LIMIT) -> None:
        self.fleet, self.device, self.key = fleet, device, key
        self.topics = FleetTopics(fleet)
        self.session = MqttSession(f"fleet-side-{fleet}", broker.host, broker.port,  # type: ignore[attr-defined]
                                   chunk_limit)
        self.updates: list[tuple[str, bytes, float]] = []
        self._heard = threading.Condition()
        self.session.subscribe(f"{self.topics.root}/round/+/update/{device}", self._on_update)
        self.session.connect()

    def _on_update(self, topic: str, payload: bytes) -> None:
        with self._heard:
            self.updates.append((topic, payload, time.monotonic()))
            self._heard.notify_all()

    def wait_updates(self, count: int, timeout: float = 20.0) -> list[bytes]:
        """The first `count` update payloads heard (reassembled); AssertionError if they do not come."""
        deadline = time.monotonic() + timeout
        with self._heard:
            while len(self.updates) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"heard {len(self.updates)} updates from {self.device}, expected {count}")
                self._heard.wait(left)
            return [blob for _, blob, _ in self.updates[:count]]

    def publish_signed(self, topic: str, payload: bytes, counter: int, key: Ed25519PrivateKey | None = None,
                       retain: bool = True) -> None:
        """Sign `payload` for `topic` (with the fleet key, or `key`) and publish it chunked."""
        self.session.publish(topic, sign(key or self.key, topic, counter, payload), retain=retain)

    def publish_plan(self, plan: DevicePlan, counter: int = 1) -> None:
        """The device's retained plan."""
        self.publish_signed(self.topics.plan(plan.device), plan.to_json(), counter)

    def publish_model(self, weights: dict[str, np.ndarray], version: int, round_: int,
                      key: Ed25519PrivateKey | None = None) -> bytes:
        """A retained full model (signed by the fleet key unless `key`); returns the weights blob."""
        blob = encode_weights(weights, WeightsMeta(self.fleet, version, round_))
        self.publish_signed(self.topics.model(version), blob, version, key=key)
        return blob

    def publish_cohort(self, round_: int, selected: bool, acked: tuple[int, bytes | None] | None = None) -> None:
        """The device's notice for `round_`; acked = (round, the update blob accepted, or None: not accepted)."""
        notice: dict[str, object] = {"round": round_, "selected": selected}
        if acked is not None:
            digest = None if acked[1] is None else hashlib.sha256(acked[1]).hexdigest()[:32]
            notice["ack"] = {"round": acked[0], "update": digest}
        self.publish_signed(self.topics.cohort(self.device), json.dumps(notice).encode(), round_)

    def close(self) -> None:
        self.session.close()


def write_fleet_key(key: Ed25519PrivateKey, path: Path) -> Path:
    """The fleet's public key as the PEM a device pins."""
    path.write_bytes(public_pem(key.public_key()))
    return path
