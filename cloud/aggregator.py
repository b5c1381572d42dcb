"""The aggregator as an MQTT service: publish the fleet, run rounds, FedAvg, checkpoint.

Rounds close on a quorum of accepted updates or a deadline, whichever comes first. Every
rejection is logged and published in round/<r>/result. After each round the global weights
and state are checkpointed, so a restarted aggregator resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from cloud.accounting import PrivacyLedger
from cloud.fleet_bundle import FleetBundle
from cloud.checkpoint import AggregatorState, load_checkpoint, save_checkpoint
from cloud.round_inbox import RoundInbox
from cloud.strategy import DpMode, FedAvgConfig, aggregate
from edge.mqtt_session import MqttSession
from edge.plan import DevicePlan
from edge.topics import FleetTopics
from edge.wire import WeightsMeta, encode_weights

log = logging.getLogger("dmskd.aggregator")

Evaluate = Callable[[dict[str, np.ndarray]], dict]


@dataclass(frozen=True)
class RoundPolicy:
    """When a round closes: enough accepted updates, or the deadline."""

    rounds: int
    quorum: int
    deadline_s: float = 120.0


class AggregatorService:
    """Subscribes to updates, averages them and publishes the next global student.

    ledger: the privacy accountant of a DP run (None without DP); rounds are spent against it."""

    def __init__(self, fleet: str, session: MqttSession, devices: list[str], initial_weights: dict[str, np.ndarray],
                 config: FedAvgConfig, policy: RoundPolicy, ledger: PrivacyLedger | None = None,
                 checkpoint_dir: str | Path | None = None, evaluate: Evaluate | None = None, seed: int = 0,
                 on_round_end: Callable[[dict], None] | None = None) -> None:
        self.fleet, self.session, self.devices = fleet, session, frozenset(devices)
        self.topics = FleetTopics(fleet)
        self.config, self.policy, self.ledger = config, policy, ledger
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.evaluate, self.seed, self.on_round_end = evaluate, seed, on_round_end
        self.weights = {k: np.asarray(v, np.float32) for k, v in initial_weights.items()}
        self.template = {k: tuple(v.shape) for k, v in self.weights.items()}
        self.state = AggregatorState(next_round=0, version=0, rounds_spent=0)
        self._resume()
        self._inbox: RoundInbox | None = None
        self._cond = threading.Condition()
        self._retained_model: tuple[int, int] | None = None  # (version, chunks) of the model left on the broker
        session.subscribe(self.topics.all_updates, self._on_update)
        session.on_error(self._on_chunk_error)

    @classmethod
    def from_bundle(cls, bundle: FleetBundle, session: MqttSession, checkpoint_dir: str | Path | None = None,
                    evaluate: Evaluate | None = None, seed: int = 0,
                    on_round_end: Callable[[dict], None] | None = None) -> "AggregatorService":
        """The service a bundle describes (DP mode, clip, noise, epsilon budget, quorum, deadline)."""
        st = bundle.settings
        mode = DpMode.parse(st.dp_mode)
        ledger = None
        if mode is not DpMode.NONE:
            participation = min(1.0, st.quorum / max(1, len(bundle.plans)))
            ledger = PrivacyLedger(st.noise_multiplier, participation, st.delta, st.max_epsilon)
        config = FedAvgConfig(mode, st.clip, st.noise_multiplier if mode is DpMode.CENTRAL else 0.0)
        return cls(st.fleet, session, [p.device for p in bundle.plans], bundle.initial_weights, config,
                   RoundPolicy(st.rounds, st.quorum, st.deadline_s), ledger, checkpoint_dir, evaluate, seed,
                   on_round_end)

    def publish_fleet(self, plans: list[DevicePlan], shards: dict[str, bytes], student_program: bytes) -> None:
        """Retain the student program, every shard and every device's plan on the broker."""
        hashes = {p.student_hash for p in plans}
        for h in hashes:
            self.session.publish(self.topics.student_program(h), student_program, retain=True)
        for shard_id, blob in shards.items():
            self.session.publish(self.topics.shard(shard_id), blob, retain=True)
        for p in plans:
            self.session.publish(self.topics.plan(p.device), p.to_json(), retain=True)

    def run(self) -> list[dict]:
        """Run the remaining rounds; return the per-round history."""
        while self.state.next_round < self.policy.rounds:
            if self.ledger is not None and not self.ledger.can_spend_round():
                log.error("stopping before round %d: it would exceed epsilon=%s", self.state.next_round,
                          self.ledger.max_epsilon)
                break
            self._run_round(self.state.next_round)
        self._publish_model(round_=self.policy.rounds)  # tells devices the schedule is over
        return self.state.history

    def _run_round(self, r: int) -> None:
        started = time.monotonic()
        with self._cond:
            self._inbox = RoundInbox(r, self.state.version, self.fleet, self.devices, self.template,
                                     self.config.dp_mode, self.config.clip)
        self._publish_model(round_=r)
        deadline = started + self.policy.deadline_s
        with self._cond:
            while len(self._inbox.accepted) < self.policy.quorum and time.monotonic() < deadline:
                self._cond.wait(timeout=max(0.0, deadline - time.monotonic()))
            inbox, self._inbox = self._inbox, None
        updates = [inbox.accepted[d] for d in sorted(inbox.accepted)]
        if updates:
            result = aggregate(self.weights, updates, self.config, seed=self.seed * 100_003 + r)
            self.weights = result.weights
            if self.ledger is not None:
                self.ledger.spend_round()
        else:
            log.error("round %d closed with no valid update; the global student is unchanged", r)
        record = {"round": r, "accepted": sorted(inbox.accepted), "rejected": inbox.rejected,
                  "seconds": time.monotonic() - started}
        if self.ledger is not None:
            record["epsilon"] = self.ledger.epsilon
        if self.evaluate is not None:
            record.update(self.evaluate(self.weights))
        self.state = AggregatorState(r + 1, self.state.version + 1,
                                     self.ledger.rounds_spent if self.ledger else 0, self.state.history + [record])
        self.session.publish(self.topics.result(r), json.dumps(record).encode(), qos=1)
        if self.checkpoint_dir is not None:
            save_checkpoint(self.checkpoint_dir, self.weights, self.state)
        if self.on_round_end is not None:
            self.on_round_end(record)

    def _publish_model(self, round_: int) -> None:
        v = self.state.version
        blob = encode_weights(self.weights, WeightsMeta(self.fleet, v, round_))
        chunks = self.session.publish(self.topics.model(v), blob, retain=True)
        previous, self._retained_model = self._retained_model, (v, chunks)
        if previous is not None and previous[0] == v - 1:
            self.session.clear_retained(self.topics.model(previous[0]), previous[1])

    def _on_update(self, topic: str, payload: bytes) -> None:
        device, round_ = _parse_update_topic(topic)
        with self._cond:
            inbox = self._inbox
            if inbox is None:
                log.warning("update from %s for round %s arrived between rounds; rejected", device, round_)
                return
            before = len(inbox.rejected)
            accepted = inbox.offer(device, round_, payload)
            if len(inbox.rejected) > before:
                log.warning("round %d: rejected update from %s: %s", inbox.round_, *inbox.rejected[-1])
            elif accepted is None:
                log.info("round %d: duplicate update from %s ignored (idempotent resend)", inbox.round_, device)
            self._cond.notify_all()

    def _on_chunk_error(self, topic: str, reason: str) -> None:
        if "/update/" not in topic:
            return
        device, _ = _parse_update_topic(topic)
        with self._cond:
            if self._inbox is not None:
                self._inbox.reject(device, f"chunk rejected: {reason}")
                log.warning("round %d: rejected chunk from %s: %s", self._inbox.round_, device, reason)

    def _resume(self) -> None:
        if self.checkpoint_dir is None:
            return
        found = load_checkpoint(self.checkpoint_dir)
        if found is None:
            return
        weights, state = found
        if {k: tuple(v.shape) for k, v in weights.items()} != self.template:
            raise ValueError(f"checkpoint in {self.checkpoint_dir} is for another student architecture; "
                             f"point --checkpoint (or the simulator's --run-dir) at a fresh directory")
        self.weights, self.state = weights, state
        if self.ledger is not None:
            self.ledger.rounds_spent = state.rounds_spent
        log.info("resumed from checkpoint: round %d, version %d", state.next_round, state.version)


def _parse_update_topic(topic: str) -> tuple[str, int]:
    parts = topic.split("/")
    try:
        return parts[-1], int(parts[-3])
    except (IndexError, ValueError):
        return parts[-1] if parts else "?", -1
