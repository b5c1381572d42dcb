"""Run a fleet over a real MQTT broker (one aggregator and N device agents, each its own client), or the
same fleet in memory (run_in_process): one bundle, one round engine, one set of seeds for both."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from cloud.aggregator import AggregatorService
from cloud.aggregator_worker import AggregatorWorker, worker_will
from cloud.evaluation import student_evaluator
from cloud.fleet_bundle import FleetBundle, RoundSettings, engine_config, save_bundle
from cloud.reducer import ShardedAggregatorService
from cloud.round_engine import Evaluate, RoundEngine, RoundRecord
from edge.broker_credentials import BrokerCredentials
from edge.mqtt_session import MqttSession, TrafficRecord
from edge.plan import DevicePlan
from edge.seeding import FleetSeeds
from edge.shard_runtime import ShardRunner
from edge.signed_artifact import generate_signing_key
from edge.student_runtime import TrainableStudent
from edge.wire import content_hash
from simulator.artifacts import CloudArtifacts
from simulator.config import ExperimentConfig
from simulator.device_processes import DeviceProcesses, device_process_count
from simulator.in_process import SEQUENTIAL, FanOut, InProcessRun, StudentClient, run_rounds
from simulator.ray_device_host import DeviceHost, DeviceReport, HostedDevice, HostSettings

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
    setup_seconds: float | None = None  # from the set-up's publication until every device was prepared


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
                             model_bits=config.model_bits, chunk_limit=config.chunk_limit)
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
    aggregator_processes a `python -m cloud aggregate-worker` process (unseeded rounding, anonymous clients).

    config.device_processes: the devices in this process (1), or dealt to P child processes
    (simulator.device_processes; None: auto by fleet size); a child that dies fails the run (DeviceProcessFailed)."""
    bundle = fleet_bundle(config, art, noise_multiplier, fleet)
    seeds = FleetSeeds.from_seed(config.seed, len(bundle.plans))
    key = signing_key or generate_signing_key()
    login = credentials or (lambda identity: BrokerCredentials())
    devices = hosted_devices(bundle, art, seeds, login)
    # every device session of a process on one network thread (edge/mqtt_loop.py: epoll, no select() ceiling at
    # ~338 sessions) and their work on a pool of a few threads (edge/device_workers.py), the artefacts and
    # interpreters shared (edge/artifact_cache.py): the same handlers as a device's own thread, without 10,000
    # threads and copies; the aggregator keeps a thread of its own, so a busy fleet never delays its reads
    settings = host_settings(config, fleet, host, port, key, run_dir, DEVICE_WORKER_THREADS,
                             resend_interval_for(len(devices)))
    processes = device_process_count(config.device_processes, len(devices))
    # one process: the devices share this one's interpreter; P > 1: P children, each a DeviceHost of its own
    hosting = DeviceHost(settings) if processes == 1 else DeviceProcesses(settings, processes, run_dir / "devices")

    def session(client_id: str, identity: str, will: tuple[str, bytes] | None = None) -> MqttSession:
        creds = login(identity)
        return MqttSession(client_id, host, port, config.chunk_limit, will=will, tls=creds.tls,
                           username=creds.username, password=creds.password)

    def round_end(record: RoundRecord) -> None:
        if isinstance(hosting, DeviceProcesses):
            hosting.check()  # a dead group of devices fails the run at the end of a round, not at the deadline
        if on_round_end is not None:
            on_round_end(record)

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
        on_round_end=round_end, insecure_seeded_noise=config.insecure_seeded_noise)
    for shard_worker in shard_workers:
        shard_worker.session.connect()
    agg_session.connect()
    reports: dict[str, DeviceReport] = {}
    try:
        if isinstance(service, ShardedAggregatorService):
            service.wait_for_workers(aggregators)
        hosting.start(devices)
        service.publish_fleet(bundle.plans, bundle.shards, bundle.student_program)
        setup_seconds = wait_for_setup(hosting.wait_prepared, len(devices))
        history = service.run()
        hosting.wait(timeout_s=10)
    finally:
        try:
            reports = hosting.stop()  # every device's traffic and refusals (a dead child: DeviceProcessFailed)
        finally:
            for shard_worker in shard_workers:
                shard_worker.session.close()
            stop_worker_processes(worker_procs)
            agg_session.close()
    order = [plan.device for plan in bundle.plans]
    return FederationOutcome(history, service.weights, {d: reports[d].traffic for d in order},
                             service.epsilon, {d: reports[d].refused for d in order}, setup_seconds)


def setup_timeout_for(devices: int) -> float:
    """How long the fleet's set-up may take before the first round opens anyway: 60 s plus 20 ms per device."""
    return 60.0 + 0.02 * devices


def wait_for_setup(wait_prepared: Callable[[float], int], devices: int) -> float:
    """Wait until every device holds its plan, shard, student and the start model (labelled its samples), so
    that the first round measures a round, not the fleet's set-up; the seconds it took. Devices not set up
    in setup_timeout_for(devices) are named by count and the rounds start anyway (they catch up or miss them)."""
    started = time.monotonic()
    prepared = wait_prepared(setup_timeout_for(devices))
    seconds = time.monotonic() - started
    if prepared < devices:
        log.warning("%d of %d devices set up after %.1f s; the first round opens without the other %d",
                    prepared, devices, seconds, devices - prepared)
    else:
        log.info("fleet set up in %.1f s: every device holds its plan, shard, student program and the start "
                 "model, its samples labelled", seconds)
    return seconds


def hosted_devices(bundle: FleetBundle, art: CloudArtifacts, seeds: FleetSeeds,
                   login: Callable[[str], BrokerCredentials]) -> list[HostedDevice]:
    """Every device of the bundle as a host builds it: id, its data (labels as it sees them), seed, login."""
    return [HostedDevice(plan.device, data.x, data.visible_labels(), seed, login(plan.device))
            for plan, data, seed in zip(bundle.plans, art.split.devices, seeds.devices, strict=True)]


def host_settings(config: ExperimentConfig, fleet: str, broker_host: str, port: int, key: Ed25519PrivateKey,
                  run_dir: Path, worker_threads: int, resend_interval_s: float) -> HostSettings:
    """What every host of the fleet's devices shares (the fleet key's public half as raw bytes)."""
    return HostSettings(fleet, broker_host, port, config.chunk_limit,
                        key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw), str(run_dir / "outbox"),
                        config.insecure_seeded_noise, worker_threads, resend_interval_s)


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
