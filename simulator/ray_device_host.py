"""A host of a group of simulated devices, each a real edge.agent.DeviceAgent over its own MQTT session: a Ray
actor (simulator.ray_federation), a child process (simulator.device_group_process) or run_federation's own process.

The group shares one edge.mqtt_loop.MqttLoop (one epoll thread) and, where `HostSettings.worker_threads` is set,
one edge.device_workers.DeviceWorkers pool and edge.artifact_cache.ArtifactCache (else each agent has a thread of
its own, as a real device does); the host only builds the agents, starts them and, once the run is over, stops
them and hands back what each device saw (traffic, refusals). Everything a device acts on still comes over
MQTT from the aggregator on the driver: plan, shard, student program, models, cohort notices, results, all
signed by the fleet key, whose public half travels here as raw bytes. Imports edge only (no TensorFlow, no
cloud/): the host loads nothing a device would not.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.agent import DeviceAgent
from edge.artifact_cache import ArtifactCache
from edge.broker_credentials import BrokerCredentials
from edge.device_workers import DeviceWorkers
from edge.mqtt_loop import MqttLoop
from edge.mqtt_session import MqttSession, TrafficRecord
from edge.topics import FleetTopics

log = logging.getLogger("dmskd.simulator")


@dataclass(frozen=True)
class HostedDevice:
    """One device as shipped to its host: id, local data (labels as the device sees them), seed, broker login."""

    device_id: str
    x: np.ndarray
    y: np.ndarray | None
    seed: np.random.SeedSequence
    credentials: BrokerCredentials = BrokerCredentials()


@dataclass(frozen=True)
class HostSettings:
    """What every device of a host shares: the fleet, where the broker is, the fleet's public key, seeded noise,
    and how its agents run: worker_threads > 0, on one shared pool of that many threads; 0, a thread each."""

    fleet: str
    broker_host: str
    broker_port: int
    chunk_limit: int
    fleet_public_key: bytes  # raw Ed25519
    outbox_dir: str | None
    noise_seeded: bool
    worker_threads: int = 0
    resend_interval_s: float = 10.0  # edge.agent.DeviceAgent's: silence before an unacknowledged update is resent


@dataclass
class DeviceReport:
    """What one device saw during the run, handed back to the driver."""

    traffic: list[TrafficRecord]
    refused: list[tuple[str, str]]
    finished: bool


class DeviceHost:
    """The host: `start(devices)` connects and starts their agents, `wait` until they end, `stop` reports."""

    def __init__(self, settings: HostSettings) -> None:
        self.settings = settings
        self.agents: list[DeviceAgent] = []
        self.workers: DeviceWorkers | None = None

    def start(self, devices: list[HostedDevice]) -> int:
        """Connect every device's session (on one shared loop) and start its agent; return how many started."""
        s = self.settings
        key = Ed25519PublicKey.from_public_bytes(s.fleet_public_key)
        loop = MqttLoop(name=f"{s.fleet}-devices-mqtt")
        topics = FleetTopics(s.fleet)
        outbox = Path(s.outbox_dir) if s.outbox_dir else None
        artifacts = None
        if s.worker_threads > 0:
            self.workers = DeviceWorkers(threads=s.worker_threads, name=f"{s.fleet}-devices").start()
            artifacts = ArtifactCache()
        for device in devices:
            creds = device.credentials
            session = MqttSession(f"{s.fleet}-{device.device_id}", s.broker_host, s.broker_port, s.chunk_limit,
                                  will=(topics.status(device.device_id), b"offline"), tls=creds.tls,
                                  username=creds.username, password=creds.password, loop=loop)
            agent = DeviceAgent(device.device_id, s.fleet, session, device.x, device.y, key, seed=device.seed,
                                outbox_dir=outbox, noise_seeded=s.noise_seeded, workers=self.workers,
                                artifacts=artifacts, resend_interval_s=s.resend_interval_s)
            self.agents.append(agent)
            agent.start()
        return len(self.agents)

    def wait_prepared(self, timeout_s: float) -> int:
        """Wait up to timeout_s in all for every agent to hold its plan, shard, student and the start model (its
        samples labelled): the fleet's set-up, before the first round opens; how many are."""
        deadline = time.monotonic() + timeout_s
        return sum(a.prepared.wait(timeout=max(0.0, deadline - time.monotonic())) for a in self.agents)

    def wait(self, timeout_s: float) -> bool:
        """Wait up to timeout_s in all for every agent to have seen the final model; whether all did."""
        deadline = time.monotonic() + timeout_s
        return all(a.finished.wait(timeout=max(0.0, deadline - time.monotonic())) for a in self.agents)

    def stop(self) -> dict[str, DeviceReport]:
        """Stop every agent (a broken one does not hide the others) and report what each saw."""
        reports = {}
        for agent in self.agents:
            try:
                agent.stop()
            except Exception:  # a broken agent must not hide the other devices' reports
                log.exception("stopping %s failed", agent.device_id)
            reports[agent.device_id] = DeviceReport(list(agent.session.traffic), list(agent.refused),
                                                    agent.finished.is_set())
        if self.workers is not None:
            self.workers.stop()
            self.workers = None
        self.agents = []
        return reports
