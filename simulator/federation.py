"""Run a fleet over a real MQTT broker: one aggregator and N device agents, each its own client."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from cloud.aggregator import AggregatorService
from cloud.fleet_bundle import FleetBundle, RoundSettings
from cloud.serve import student_evaluator
from edge.agent import DeviceAgent
from edge.mqtt_session import MqttSession, TrafficRecord
from edge.plan import DevicePlan
from edge.topics import FleetTopics
from edge.wire import content_hash
from simulator.artifacts import CloudArtifacts
from simulator.config import ExperimentConfig

log = logging.getLogger("dmskd.simulator")


@dataclass
class FederationOutcome:
    """What the run produced: per-round history, final weights, every device's traffic."""

    history: list[dict]
    final_weights: dict[str, np.ndarray]
    device_traffic: dict[str, list[TrafficRecord]]
    epsilon: float | None


def fleet_bundle(config: ExperimentConfig, art: CloudArtifacts, noise_multiplier: float, fleet: str) -> FleetBundle:
    """What the aggregator publishes for this experiment: plans, shards, student, round settings."""
    student_hash = content_hash(art.student_program)
    plans = [DevicePlan(fleet, a.device_id, a.shard_id, content_hash(art.shards[a.shard_id]), student_hash,
                        config.rounds, config.dp.value, config.clip, noise_multiplier, config.local_epochs,
                        config.alpha, config.tau, config.lr) for a in art.assignments]
    settings = RoundSettings(fleet, config.rounds, config.dp.value, config.clip, noise_multiplier, config.delta,
                             config.target_epsilon, quorum=len(plans), deadline_s=config.deadline_s)
    return FleetBundle(settings, plans, art.student_program, art.student_weights, art.shards)


def run_federation(config: ExperimentConfig, art: CloudArtifacts, host: str, port: int, run_dir: Path,
                   noise_multiplier: float, fleet: str = "demo",
                   on_round_end: Callable[[dict], None] | None = None) -> FederationOutcome:
    """Start agents and the aggregator, run all rounds, stop everything, return the outcome."""
    bundle = fleet_bundle(config, art, noise_multiplier, fleet)
    topics = FleetTopics(fleet)
    agents = []
    for i, (plan, data) in enumerate(zip(bundle.plans, art.split.devices)):
        session = MqttSession(f"{fleet}-{plan.device}", host, port, config.chunk_limit,
                              will=(topics.status(plan.device), b"offline"))
        agents.append(DeviceAgent(plan.device, fleet, session, data.x, data.y, seed=config.seed * 1000 + i,
                                  outbox_dir=run_dir / "outbox"))
    agg_session = MqttSession(f"{fleet}-aggregator", host, port, config.chunk_limit)
    service = AggregatorService.from_bundle(
        bundle, agg_session, checkpoint_dir=run_dir / "checkpoint",
        evaluate=student_evaluator(art.student_program, art.split.test.x, art.split.test.y),
        seed=config.seed, on_round_end=on_round_end)
    agg_session.connect()
    try:
        for agent in agents:
            agent.start()
        service.publish_fleet(bundle.plans, bundle.shards, bundle.student_program)
        history = service.run()
        for agent in agents:
            agent.finished.wait(timeout=10)
    finally:
        for agent in agents:
            try:
                agent.stop()
            except Exception:  # a broken agent must not hide the run's result
                log.exception("stopping %s failed", agent.device_id)
        agg_session.close()
    return FederationOutcome(history, service.weights, {a.device_id: list(a.session.traffic) for a in agents},
                             service.ledger.epsilon if service.ledger else None)
