"""Sharded and hierarchical aggregation over a real broker release what the single aggregator releases.

Scripted devices (one MQTT client) answer each round's model with fixed updates, so runs differ only in who
admits and sums them: the single aggregator, K workers behind a shared subscription, or gateways of meters."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

import numpy as np
import pytest

from cloud.aggregator import AggregatorService
from cloud.aggregator_worker import AggregatorWorker, worker_will
from cloud.reducer import ShardedAggregatorService
from cloud.round_closing import RoundPolicy
from cloud.round_engine import EngineConfig, RoundEngine
from cloud.strategy import DpMode, FedAvgConfig
from edge.mqtt_session import MqttSession
from edge.signed_artifact import generate_signing_key
from edge.topics import FleetTopics
from edge.wire import UpdateMeta, encode_update

TEMPLATE = {"dense/kernel": (12, 5), "dense/bias": (5,)}
DEVICES = tuple(f"m{i}" for i in range(6))
ROUNDS = 2
SEED = 11
CENTRAL = FedAvgConfig(DpMode.CENTRAL, clip=0.5, noise_multiplier=0.6)
NONE = FedAvgConfig(DpMode.NONE, clip=0.5)
fleets = itertools.count()


def update_blob(fleet: str, config: FedAvgConfig, device: str, round_: int) -> bytes:
    rng = np.random.default_rng([int(device[1:]), round_])
    delta = {n: rng.normal(0, 0.05, s).astype(np.float32) for n, s in TEMPLATE.items()}
    meta = UpdateMeta(fleet, device, round_, round_, int(rng.integers(5, 60)), config.clip, 0.0,
                      config.dp_mode.value)
    return encode_update(delta, meta)


class ScriptedDevices:
    """Answers global model v (round v) with every device's fixed update, `copies` times (a resend)."""

    def __init__(self, broker, fleet: str, config: FedAvgConfig, copies: int = 1, resend_after_s: float = 0.0) -> None:
        self.topics, self.fleet, self.config, self.copies = FleetTopics(fleet), fleet, config, copies
        self.resend_after_s = resend_after_s
        self.answered: set[int] = set()
        self.session = MqttSession(f"{fleet}-devices", broker.host, broker.port)
        self.session.subscribe(self.topics.all_models, self._on_model)

    def _on_model(self, topic: str, payload: bytes) -> None:
        version = int(topic.rsplit("/", 1)[-1])
        if version >= ROUNDS or version in self.answered:
            return
        self.answered.add(version)
        self._send(version, self.copies)
        if self.resend_after_s:  # as a device resends what is not yet acknowledged
            threading.Timer(self.resend_after_s, self._send, (version, 1)).start()

    def _send(self, version: int, copies: int) -> None:
        for _ in range(copies):
            for device in DEVICES:
                blob = update_blob(self.fleet, self.config, device, version)
                self.session.publish(self.topics.update(version, device), blob, wait=False)


def engine(fleet: str, config: FedAvgConfig) -> RoundEngine:
    return RoundEngine(EngineConfig(fleet, DEVICES, ROUNDS, aggregation=config, insecure_seeded_noise=True))


Outcome = tuple[dict[str, np.ndarray], list[dict], list[AggregatorWorker]]


def run(broker, config: FedAvgConfig, workers: Callable[[str], list[AggregatorWorker]] | None = None,
        copies: int = 1, resend_after_s: float = 0.0) -> Outcome:
    """Run ROUNDS rounds with the single aggregator (workers None) or a coordinator and its workers."""
    fleet = f"shard{next(fleets)}"
    devices = ScriptedDevices(broker, fleet, config, copies, resend_after_s)
    weights = {n: np.zeros(s, np.float32) for n, s in TEMPLATE.items()}
    session = MqttSession(f"{fleet}-aggregator", broker.host, broker.port)
    kind = AggregatorService if workers is None else ShardedAggregatorService
    service = kind(session, engine(fleet, config), weights, np.random.SeedSequence(SEED),
                   RoundPolicy(deadline_s=20.0), generate_signing_key())
    started = [] if workers is None else workers(fleet)
    for w in started:
        w.session.connect()
    devices.session.connect()
    session.connect()
    try:
        history = service.run()
    finally:
        for w in started:
            w.finished.wait(2)
            w.session.close()
        devices.session.close()
        session.close()
    return service.weights, history, started


def shared_workers(broker, config: FedAvgConfig, count: int) -> Callable[[str], list[AggregatorWorker]]:
    def make(fleet: str) -> list[AggregatorWorker]:
        weights = {n: np.zeros(s, np.float32) for n, s in TEMPLATE.items()}
        sessions = [MqttSession(f"{fleet}-w{i}", broker.host, broker.port, will=worker_will(fleet, f"w{i}"))
                    for i in range(count)]
        return [AggregatorWorker(s, engine(fleet, config), weights, np.random.SeedSequence(SEED), f"w{i}")
                for i, s in enumerate(sessions)]
    return make


def gateways(broker, config: FedAvgConfig, groups: list[tuple[str, ...]]) -> Callable[[str], list[AggregatorWorker]]:
    def make(fleet: str) -> list[AggregatorWorker]:
        weights = {n: np.zeros(s, np.float32) for n, s in TEMPLATE.items()}
        return [AggregatorWorker(MqttSession(f"{fleet}-g{i}", broker.host, broker.port), engine(fleet, config),
                                 weights, np.random.SeedSequence(SEED), f"g{i}", meters=meters)
                for i, meters in enumerate(groups)]
    return make


@pytest.fixture(scope="module")
def flat(broker) -> dict[str, tuple[dict[str, np.ndarray], list[dict]]]:
    """The single aggregator's release of each mode (the reference)."""
    return {mode: run(broker, config)[:2] for mode, config in (("central", CENTRAL), ("none", NONE))}


def test_central_mode_with_two_workers_releases_the_single_aggregators_bytes(broker, flat) -> None:
    weights, history, workers = run(broker, CENTRAL, shared_workers(broker, CENTRAL, 2))
    reference, reference_history = flat["central"]
    assert all(weights[n].tobytes() == reference[n].tobytes() for n in TEMPLATE)
    assert not all(np.array_equal(weights[n], 0) for n in TEMPLATE)
    assert [h["accepted"] for h in history] == [h["accepted"] for h in reference_history] == [list(DEVICES)] * 2
    assert [h["epsilon"] for h in history] == [h["epsilon"] for h in reference_history]


def test_none_mode_with_three_workers_matches_within_summation_order(broker, flat) -> None:
    weights, history, workers = run(broker, NONE, shared_workers(broker, NONE, 3))
    for name in TEMPLATE:
        np.testing.assert_allclose(weights[name], flat["none"][0][name], rtol=1e-6, atol=1e-9)
    assert all(len(h["accepted"]) == len(DEVICES) for h in history)


def test_every_update_lands_in_exactly_one_worker(broker) -> None:
    _, history, workers = run(broker, NONE, shared_workers(broker, NONE, 2))
    assert sum(w.admitted for w in workers) == len(DEVICES) * ROUNDS  # none seen twice, none missed
    assert all(w.admitted > 0 for w in workers)  # the broker spread them


def test_resends_spread_over_workers_count_once(broker, flat) -> None:
    weights, history, workers = run(broker, CENTRAL, shared_workers(broker, CENTRAL, 2), copies=2)
    assert all(weights[n].tobytes() == flat["central"][0][n].tobytes() for n in TEMPLATE)
    assert all(h["rejected"]["total"] == 0 for h in history)


def test_gateways_forward_one_partial_per_round_and_the_upstream_result_equals_the_flat_one(broker, flat) -> None:
    groups = [DEVICES[:3], DEVICES[3:]]
    weights, history, gws = run(broker, CENTRAL, gateways(broker, CENTRAL, groups))
    assert all(weights[n].tobytes() == flat["central"][0][n].tobytes() for n in TEMPLATE)
    assert [g.partials_sent for g in gws] == [ROUNDS, ROUNDS]
    assert [g.admitted for g in gws] == [3 * ROUNDS, 3 * ROUNDS]


class MortalWorker(AggregatorWorker):
    """A worker that dies once its first claim is granted: it reads nothing more, and drops its TCP connection
    without a DISCONNECT, so the broker publishes its Last Will."""

    dead = False

    def _on_update(self, topic: str, payload: bytes) -> None:
        if not self.dead:
            super()._on_update(topic, payload)

    def _on_notice(self, topic: str, payload: bytes) -> None:
        if not self.dead:
            super()._on_notice(topic, payload)

    def _on_grant(self, topic: str, payload: bytes) -> None:
        if self.dead:
            return
        super()._on_grant(topic, payload)
        self.dead = True
        threading.Thread(target=self._drop_connection).start()

    def _drop_connection(self) -> None:
        self.session._client.loop_stop()
        self.session._client.socket().close()


def test_a_worker_dying_mid_round_loses_nothing_its_devices_resend_to_another(broker, flat) -> None:
    def workers(fleet: str) -> list[AggregatorWorker]:
        weights = {n: np.zeros(s, np.float32) for n, s in TEMPLATE.items()}
        sessions = [MqttSession(f"{fleet}-w{i}", broker.host, broker.port, will=worker_will(fleet, f"w{i}"))
                    for i in range(2)]
        return [kind(s, engine(fleet, CENTRAL), weights, np.random.SeedSequence(SEED), f"w{i}")
                for i, (kind, s) in enumerate(zip((MortalWorker, AggregatorWorker), sessions))]

    weights, history, started = run(broker, CENTRAL, workers, resend_after_s=1.0)
    assert started[0].dead and started[0].admitted >= 1 and started[0].partials_sent == 0  # died holding a grant
    assert all(weights[n].tobytes() == flat["central"][0][n].tobytes() for n in TEMPLATE)
    assert [h["accepted"] for h in history] == [list(DEVICES)] * ROUNDS
