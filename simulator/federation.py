"""Run a fleet over a real MQTT broker (one aggregator and N device agents, each its own client), or the
same fleet in memory (run_in_process): one bundle, one round engine, one set of seeds for both."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud.aggregator import AggregatorService
from cloud.aggregator_worker import AggregatorWorker, worker_will
from cloud.evaluation import student_evaluator
from cloud.fleet_bundle import FleetBundle, RoundSettings, engine_config, save_bundle
from cloud.reducer import ShardedAggregatorService
from cloud.round_engine import Evaluate, RoundEngine, RoundRecord
from edge.agent import DeviceAgent
from edge.artifact_cache import ArtifactCache
from edge.broker_credentials import BrokerCredentials
from edge.device_workers import DeviceWorkers
from edge.mqtt_loop import MqttLoop
from edge.mqtt_session import MqttSession, TrafficRecord
from edge.plan import DevicePlan
from edge.seeding import FleetSeeds
from edge.shard_runtime import ShardRunner
from edge.signed_artifact import generate_signing_key
from edge.student_runtime import TrainableStudent
from edge.topics import FleetTopics
from edge.wire import content_hash
from simulator.artifacts import CloudArtifacts
from simulator.config import ExperimentConfig
from simulator.in_process import SEQUENTIAL, FanOut, InProcessRun, StudentClient, run_rounds

log = logging.getLogger("dmskd.simulator")

DEVICE_WORKER_THREADS = 2  # this machine's cores; LiteRT and numpy release the GIL while they compute


@dataclass
class FederationOutcome:
    """What the run produced: per-round history, final weights, every device's traffic."""

    history: list[dict]
    final_weights: dict[str, np.ndarray]
    device_traffic: dict[str, list[TrafficRecord]]
    epsilon: float | None
    device_refusals: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # (topic, reason) per device


def fleet_evaluator(program: bytes | TrainableStudent, art: CloudArtifacts) -> Evaluate:
    """Accuracy on the test split and, mean over devices, on every device's own held-out data."""
    return student_evaluator(program, art.split.test.x, art.split.test.y,
                             [(h.x, h.y) for h in art.split.device_holdout])


def fleet_bundle(config: ExperimentConfig, art: CloudArtifacts, noise_multiplier: float, fleet: str) -> FleetBundle:
    """What the aggregator publishes for this experiment: plans, shards, student, round settings."""
    student_hash = content_hash(art.student_program)
    plans = [DevicePlan(fleet, a.device_id, a.shard_id, content_hash(art.shards[a.shard_id]), student_hash,
                        config.rounds, config.dp.value, noise_multiplier, config.training, config.labelled_fraction,
                        max_examples=len(data.x), update_bits=config.update_bits, model_bits=config.model_bits)
             for a, data in zip(art.assignments, art.split.devices, strict=True)]
    settings = RoundSettings(fleet, config.rounds, config.dp.value, config.training.clip, noise_multiplier,
                             config.delta,
                             config.target_epsilon, deadline_s=config.deadline_s,
                             sampling_rate=config.sampling_rate, quorum_fraction=config.quorum_fraction,
                             model_bits=config.model_bits)
    return FleetBundle(settings, plans, art.student_program, art.start_weights, art.shards)


def resend_interval_for(devices: int) -> float:
    """Silence before a simulated device resends: 10 s, or longer where one round of the whole fleet in this
    process takes longer (about 5 ms per device on 2 cores), so that waiting is not mistaken for a loss."""
    return max(10.0, 0.01 * devices)


def run_federation(config: ExperimentConfig, art: CloudArtifacts, host: str, port: int, run_dir: Path,
                   noise_multiplier: float, fleet: str = "demo",
                   on_round_end: Callable[[RoundRecord], None] | None = None,
                   credentials: Callable[[str], BrokerCredentials] | None = None,
                   signing_key: Ed25519PrivateKey | None = None, aggregators: int = 1,
                   aggregator_processes: bool = False) -> FederationOutcome:
    """Start agents and the aggregator, run all rounds, stop everything, return the outcome.

    signing_key: the fleet's key, whose public half every device pins (None: a fresh one for this run).

    credentials: what each client presents to the broker, by identity (a device id, or `<fleet>-aggregator`),
    e.g. from a `python -m cloud provision` directory; None connects every client anonymously.

    aggregators: 1 runs the single aggregator; K > 1 a coordinator and K workers sharing the updates
    (cloud/reducer.py, cloud/aggregator_worker.py), each worker a client of its own: a thread here, or with
    aggregator_processes a `python -m cloud aggregate-worker` process (unseeded rounding, anonymous clients)."""
    bundle = fleet_bundle(config, art, noise_multiplier, fleet)
    topics = FleetTopics(fleet)
    seeds = FleetSeeds.from_seed(config.seed, len(bundle.plans))
    key = signing_key or generate_signing_key()

    # every device session on one network thread (edge/mqtt_loop.py: epoll, no select() ceiling at ~338 sessions);
    # the aggregator keeps a thread of its own, so a busy fleet never delays its reads
    device_loop = MqttLoop(name=f"{fleet}-devices-mqtt")
    # and their work on a pool of a few threads (edge/device_workers.py), the artefacts and interpreters shared
    # (edge/artifact_cache.py): the same handlers as a device's own thread, without 10,000 threads and copies
    workers, artifacts = DeviceWorkers(threads=DEVICE_WORKER_THREADS, name=f"{fleet}-devices"), ArtifactCache()

    def session(client_id: str, identity: str, will: tuple[str, bytes] | None = None,
                loop: MqttLoop | None = None) -> MqttSession:
        creds = credentials(identity) if credentials is not None else BrokerCredentials()
        return MqttSession(client_id, host, port, config.chunk_limit, will=will, tls=creds.tls,
                           username=creds.username, password=creds.password, loop=loop)

    agents = []
    for plan, data, seed in zip(bundle.plans, art.split.devices, seeds.devices):
        device_session = session(f"{fleet}-{plan.device}", plan.device, will=(topics.status(plan.device), b"offline"),
                                 loop=device_loop)
        agents.append(DeviceAgent(plan.device, fleet, device_session, data.x, data.visible_labels(), key.public_key(),
                                  seed=seed, outbox_dir=run_dir / "outbox",
                                  noise_seeded=config.insecure_seeded_noise, workers=workers, artifacts=artifacts,
                                  resend_interval_s=resend_interval_for(len(bundle.plans))))
    agg_session = session(f"{fleet}-aggregator", f"{fleet}-aggregator")
    service_type = AggregatorService if aggregators == 1 else ShardedAggregatorService
    shard_workers = []
    worker_procs = start_worker_processes(bundle, run_dir, host, port, aggregators, config, credentials) \
        if aggregator_processes and aggregators > 1 else []
    for i in range(aggregators if aggregators > 1 and not worker_procs else 0):
        worker_id = f"w{i}"
        worker_session = session(f"{fleet}-aggregator-{worker_id}", f"{fleet}-aggregator",
                                 will=worker_will(fleet, worker_id))
        shard_workers.append(AggregatorWorker.from_bundle(bundle, worker_session, seeds.server, worker_id,
                                                          insecure_seeded_noise=config.insecure_seeded_noise))
    service = service_type.from_bundle(
        bundle, agg_session, seeds.server, key, checkpoint_dir=run_dir / "checkpoint",
        evaluate=fleet_evaluator(art.student_program, art),
        on_round_end=on_round_end, insecure_seeded_noise=config.insecure_seeded_noise)
    for shard_worker in shard_workers:
        shard_worker.session.connect()
    agg_session.connect()
    workers.start()
    try:
        if isinstance(service, ShardedAggregatorService):
            service.wait_for_workers(aggregators)
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
        workers.stop()
        for shard_worker in shard_workers:
            shard_worker.session.close()
        stop_worker_processes(worker_procs)
        agg_session.close()
    return FederationOutcome(history, service.weights, {a.device_id: list(a.session.traffic) for a in agents},
                             service.epsilon, {a.device_id: list(a.refused) for a in agents})


def start_worker_processes(bundle: FleetBundle, run_dir: Path, host: str, port: int, count: int,
                           config: ExperimentConfig, credentials: object) -> list[subprocess.Popen]:
    """`count` `python -m cloud aggregate-worker` processes for the bundle (saved under run_dir), logging there."""
    if config.insecure_seeded_noise or credentials is not None:
        raise ValueError("aggregator worker processes draw secure rounding and connect anonymously: drop "
                         "--insecure-seeded-noise and broker credentials, or run the workers as threads")
    bundle_dir = save_bundle(run_dir / "bundle", bundle)
    procs = []
    for i in range(count):
        with open(run_dir / f"aggregator-w{i}.log", "w") as out:
            procs.append(subprocess.Popen([sys.executable, "-m", "cloud", "aggregate-worker", "--bundle",
                                           str(bundle_dir), "--broker", f"{host}:{port}", "--id", f"w{i}"],
                                          stdout=out, stderr=subprocess.STDOUT))
    return procs


def stop_worker_processes(procs: list[subprocess.Popen], timeout_s: float = 10.0) -> None:
    """Wait for workers told the schedule is done; kill any still running after timeout_s."""
    for proc in procs:
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("aggregator worker process %d did not stop; killing it", proc.pid)
            proc.kill()
            proc.wait()


def run_in_process(config: ExperimentConfig, art: CloudArtifacts, noise_multiplier: float, fleet: str = "demo",
                   on_round_end: Callable[[RoundRecord], None] | None = None,
                   float_noise: bool = False, fan_out: FanOut = SEQUENTIAL) -> InProcessRun:
    """The fleet of run_federation without a broker: same bundle, engine, seeds and device code, in memory.

    float_noise: central noise from the float Gaussian instead of the discrete one (seeded comparisons only).
    fan_out: where the clients' fits run (simulator.ray_fit.RayFanOut: on a Ray cluster)."""
    bundle = fleet_bundle(config, art, noise_multiplier, fleet)
    seeds = FleetSeeds.from_seed(config.seed, len(bundle.plans))
    student = TrainableStudent.from_bytes(art.student_program)
    runners = {sid: ShardRunner.from_bytes(blob) for sid, blob in bundle.shards.items()}
    clients = {plan.device: StudentClient.from_shard_logits(plan, student, data.x, data.visible_labels(),
                                                            runners[plan.shard_id].logits(data.x), seed,
                                                            insecure_seeded_noise=config.insecure_seeded_noise)
               for plan, data, seed in zip(bundle.plans, art.split.devices, seeds.devices)}
    engine_settings = engine_config(bundle, config.insecure_seeded_noise)
    if float_noise:
        engine_settings = replace(engine_settings, aggregation=replace(engine_settings.aggregation, float_noise=True))
    engine = RoundEngine(engine_settings, fleet_evaluator(student, art))
    return run_rounds(engine, engine.init(bundle.initial_weights, seeds.server), clients, on_round_end, fan_out)
