"""`python -m simulator run --engine ray`: the fleet of run_federation with its devices on a Ray cluster.

The aggregator stays on the driver (this process), on its own MQTT session; the devices are dealt, in
contiguous groups, to one simulator.ray_device_host.DeviceHost actor per CPU of the cluster, and each actor
runs its group as the real edge code does (DeviceAgents on one shared MqttLoop). The driver ships each device
its data, its seed (the same edge.seeding.FleetSeeds child as the local engine's) and the fleet's public key,
nothing else: plans, shards, program and models come over the broker, signed. So the workers must reach the
broker: `broker_host` is the address they dial (the aggregator dials `host`), e.g. the LAN name of the machine
that runs mosquitto when the cluster spans machines. Same seed, same bundle, same engine: the same result as
the local engine (bit for bit where the sum is exact: central DP on its integer grid; DP off sums float64 in
arrival order, which no MQTT run fixes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud.aggregator import AggregatorService
from cloud.round_engine import RoundRecord
from edge.broker_credentials import BrokerCredentials
from edge.mqtt_session import MqttSession
from edge.seeding import FleetSeeds
from edge.signed_artifact import generate_signing_key
from simulator.artifacts import CloudArtifacts
from simulator.config import ExperimentConfig
from simulator.federation import (
    FederationOutcome,
    fleet_bundle,
    fleet_evaluator,
    host_settings,
    hosted_devices,
    wait_for_setup,
)
from simulator.ray_device_host import DeviceHost

log = logging.getLogger("dmskd.simulator")


def device_groups(count: int, hosts: int) -> list[range]:
    """Contiguous device index ranges, one per host, sizes differing by at most one (empty hosts dropped)."""
    hosts = max(1, min(hosts, count))
    base, extra = divmod(count, hosts)
    starts = [i * base + min(i, extra) for i in range(hosts + 1)]
    return [range(a, b) for a, b in zip(starts, starts[1:]) if b > a]


def run_federation_on_ray(config: ExperimentConfig, art: CloudArtifacts, host: str, port: int, run_dir: Path,
                          noise_multiplier: float, hosts: int, broker_host: str | None = None, fleet: str = "demo",
                          on_round_end: Callable[[RoundRecord], None] | None = None,
                          credentials: Callable[[str], BrokerCredentials] | None = None,
                          signing_key: Ed25519PrivateKey | None = None) -> FederationOutcome:
    """run_federation's run with the devices on `hosts` Ray actors of the running session (ray_cluster).

    broker_host: the broker's address as the workers dial it (None: `host`)."""
    import ray

    bundle = fleet_bundle(config, art, noise_multiplier, fleet)
    seeds = FleetSeeds.from_seed(config.seed, len(bundle.plans))
    key = signing_key or generate_signing_key()
    login = credentials or (lambda identity: BrokerCredentials())
    devices = hosted_devices(bundle, art, seeds, login)
    settings = host_settings(config, fleet, broker_host or host, port, key, run_dir, worker_threads=0,
                             resend_interval_s=10.0)  # a thread per agent, as a real device has
    groups = device_groups(len(devices), hosts)
    actors: list[Any] = [ray.remote(num_cpus=1)(DeviceHost).remote(settings) for _ in groups]

    agg_creds = login(f"{fleet}-aggregator")
    agg_session = MqttSession(f"{fleet}-aggregator", host, port, config.chunk_limit, tls=agg_creds.tls,
                              username=agg_creds.username, password=agg_creds.password)
    service = AggregatorService.from_bundle(
        bundle, agg_session, seeds.server, key, checkpoint_dir=run_dir / "checkpoint",
        evaluate=fleet_evaluator(art.student_program, art),
        on_round_end=on_round_end, insecure_seeded_noise=config.insecure_seeded_noise)
    agg_session.connect()
    reports: dict = {}
    try:
        started = ray.get([actor.start.remote([devices[i] for i in group])
                           for actor, group in zip(actors, groups, strict=True)])
        log.info("%d devices started on %d Ray actors (%s)", sum(started), len(actors), started)
        service.publish_fleet(bundle.plans, bundle.shards, bundle.student_program)
        setup_seconds = wait_for_setup(
            lambda timeout: sum(ray.get([actor.wait_prepared.remote(timeout) for actor in actors])), len(devices))
        history = service.run()
        ray.get([actor.wait.remote(10.0) for actor in actors])
    finally:
        for actor in actors:
            try:
                reports.update(ray.get(actor.stop.remote()))
            except Exception:  # a lost actor must not hide the run's result
                log.exception("stopping a device host failed")
            ray.kill(actor)
        agg_session.close()
    order = [plan.device for plan in bundle.plans if plan.device in reports]  # the local engine's order
    return FederationOutcome(history, service.weights, {d: reports[d].traffic for d in order},
                             service.epsilon, {d: reports[d].refused for d in order}, setup_seconds)
