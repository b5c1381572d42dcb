"""The aggregator as an MQTT adapter of the round engine: receive, wait, apply, publish, checkpoint.

All round logic (cohort, admission, aggregation, privacy, seeding, records) is the engine's
(cloud/round_engine.py). This service only moves bytes: it publishes the fleet and each round's
global model, tells every device privately whether it was sampled for the round (round/<r>/cohort/<device>,
which only that device may read: amplification by sampling needs the sample kept secret), offers
every arriving update to the open round's inbox, closes the round once every cohort member (or a
quorum) was accepted or at a deadline, publishes a round summary on round/<r>/result (counts and
epsilon, no device names: the cohort stays secret) and checkpoints, so a restarted aggregator
resumes where it stopped. Everything it publishes is signed with the fleet key
(edge.signed_artifact): plans, shards and the student program under a publication counter that
grows across restarts, models under their version, cohort and result messages under the round.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud.checkpoint import load_checkpoint, save_checkpoint
from cloud.fleet_bundle import FleetBundle, engine_config
from cloud.round_engine import Evaluate, OpenRound, RoundEngine, RoundRecord, RoundState, state_from_json, state_to_json
from edge.mqtt_session import MqttSession
from edge.plan import DevicePlan
from edge.signed_artifact import sign
from edge.topics import FleetTopics

log = logging.getLogger("dmskd.aggregator")


@dataclass(frozen=True)
class RoundPolicy:
    """When a round closes: `quorum` accepted updates, or `deadline_s` seconds after it opened."""

    quorum: int
    deadline_s: float = 120.0


class AggregatorService:
    """Subscribes to updates and drives `engine` round by round over `session`."""

    def __init__(self, session: MqttSession, engine: RoundEngine, initial_weights: dict[str, np.ndarray],
                 seed: np.random.SeedSequence, policy: RoundPolicy, signing_key: Ed25519PrivateKey,
                 checkpoint_dir: str | Path | None = None,
                 on_round_end: Callable[[RoundRecord], None] | None = None) -> None:
        self.session, self.engine, self.policy = session, engine, policy
        self.signing_key = signing_key
        self.topics = FleetTopics(engine.config.fleet)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.on_round_end = on_round_end
        self.state: RoundState = self._resume(engine.init(initial_weights, seed))
        self._open: OpenRound | None = None
        self._cond = threading.Condition()
        self._retained_model: tuple[int, int] | None = None  # (version, chunks) of the model left on the broker
        self._retained_cohort: int | None = None  # the round whose cohort messages are retained on the broker
        self._publication = 0
        session.subscribe(self.topics.all_updates, self._on_update)
        session.on_error(self._on_chunk_error)

    @classmethod
    def from_bundle(cls, bundle: FleetBundle, session: MqttSession, seed: np.random.SeedSequence,
                    signing_key: Ed25519PrivateKey, checkpoint_dir: str | Path | None = None,
                    evaluate: Evaluate | None = None,
                    on_round_end: Callable[[RoundRecord], None] | None = None,
                    insecure_seeded_noise: bool = False) -> AggregatorService:
        """The service a bundle describes; seed is the server's SeedSequence (edge.seeding.FleetSeeds),
        which draws the DP noise too only with insecure_seeded_noise (tests, simulations)."""
        st = bundle.settings
        engine = RoundEngine(engine_config(bundle, insecure_seeded_noise), evaluate)
        return cls(session, engine, bundle.initial_weights, seed, RoundPolicy(st.quorum, st.deadline_s),
                   signing_key, checkpoint_dir, on_round_end)

    @property
    def weights(self) -> dict[str, np.ndarray]:
        return self.state.weights

    @property
    def epsilon(self) -> float | None:
        return self.state.ledger.epsilon if self.state.ledger is not None else None

    def publish_fleet(self, plans: list[DevicePlan], shards: dict[str, bytes], student_program: bytes) -> None:
        """Retain the student program, every shard and every device's plan on the broker, signed."""
        counter = self._next_publication()
        for h in {p.student_hash for p in plans}:
            self._publish_signed(self.topics.student_program(h), student_program, counter)
        for shard_id, blob in shards.items():
            self._publish_signed(self.topics.shard(shard_id), blob, counter)
        for p in plans:
            self._publish_signed(self.topics.plan(p.device), p.to_json(), counter)

    def _next_publication(self) -> int:
        """A counter above every earlier publication, this process's or a previous one's (microseconds)."""
        self._publication = max(time.time_ns() // 1000, self._publication + 1)
        return self._publication

    def _publish_signed(self, topic: str, payload: bytes, counter: int, retain: bool = True, wait: bool = True) -> int:
        return self.session.publish(topic, sign(self.signing_key, topic, counter, payload), retain=retain, wait=wait)

    def run(self) -> list[dict]:
        """Run rounds until the engine stops (schedule done or budget spent); return the history."""
        while (reason := self.engine.stop_reason(self.state)) is None:
            self._run_round()
        level = logging.INFO if self.state.round >= self.engine.config.rounds else logging.ERROR
        log.log(level, "stopping before round %d: %s", self.state.round, reason)
        self._publish_model(self.engine.model_payload(self.state, round_=self.engine.config.rounds))
        return list(self.state.history)

    def _run_round(self) -> None:
        opened = self.engine.open_round(self.state)
        with self._cond:
            self._open = opened
        self._publish_cohort(opened)
        self._publish_model(opened.model_payload)
        deadline = opened.opened_at + self.policy.deadline_s
        needed = min(self.policy.quorum, len(opened.cohort))
        with self._cond:
            while len(opened.inbox.accepted) < needed and time.monotonic() < deadline:
                self._cond.wait(timeout=max(0.0, deadline - time.monotonic()))
            self._open = None
        if not opened.inbox.accepted:
            log.error("round %d closed with no valid update; the global student is unchanged", opened.round)
        self.state, record = self.engine.apply(self.state, opened)
        summary = {"round": record.round, "accepted": len(record.accepted), "rejected": len(record.rejected),
                   **({"epsilon": record.epsilon} if record.epsilon is not None else {}), **record.metrics}
        self._publish_signed(self.topics.result(record.round), json.dumps(summary).encode(), record.round,
                             retain=False)
        if self.checkpoint_dir is not None:
            save_checkpoint(self.checkpoint_dir, self.state.weights, state_to_json(self.state, self.engine.config))
        if self.on_round_end is not None:
            self.on_round_end(record)

    def _publish_cohort(self, opened: OpenRound) -> None:
        """Tell each device of the plan, on its own topic, whether it was sampled; clear the last round's."""
        selected = set(opened.cohort)
        previous, self._retained_cohort = self._retained_cohort, opened.round
        for device in self.engine.config.devices:
            if previous is not None and previous != opened.round:
                self.session.clear_retained(self.topics.cohort(previous, device), 1)
            decision = json.dumps({"round": opened.round, "selected": device in selected}).encode()
            self._publish_signed(self.topics.cohort(opened.round, device), decision, opened.round, wait=False)

    def _publish_model(self, blob: bytes) -> None:
        v = self.state.version
        chunks = self._publish_signed(self.topics.model(v), blob, v)
        previous, self._retained_model = self._retained_model, (v, chunks)
        if previous is not None and previous[0] == v - 1:
            self.session.clear_retained(self.topics.model(previous[0]), previous[1])

    def _on_update(self, topic: str, payload: bytes) -> None:
        from cloud.rejections import RejectionReason, sanitise_device, worth_logging

        device, round_ = _parse_update_topic(topic)
        with self._cond:
            opened = self._open
            if opened is None:
                log.warning("update from %s for round %s arrived between rounds; rejected (%s)",
                            sanitise_device(device), round_, RejectionReason.BETWEEN_ROUNDS.value)
                return
            inbox = opened.inbox
            before = inbox.rejected.total
            accepted = inbox.offer(device, round_, payload)
            rejection = inbox.rejected.last if inbox.rejected.total > before else None
            if rejection is not None:
                count = inbox.rejected.count(rejection.reason)
                if worth_logging(count):
                    log.warning("round %d: rejected update from %s: %s: %s (%d with this reason this round)",
                                inbox.round_, rejection.device, rejection.reason.value, rejection.detail, count)
            elif accepted is None:
                log.info("round %d: duplicate update from %s ignored (idempotent resend)", inbox.round_,
                         sanitise_device(device))
            self._cond.notify_all()

    def _on_chunk_error(self, topic: str, reason: str) -> None:
        if "/update/" not in topic:
            return
        from cloud.rejections import RejectionReason, worth_logging

        device, _ = _parse_update_topic(topic)
        with self._cond:
            if self._open is not None:
                inbox = self._open.inbox
                rejection = inbox.reject(device, RejectionReason.CHUNK_REJECTED, reason)
                count = inbox.rejected.count(RejectionReason.CHUNK_REJECTED)
                if worth_logging(count):
                    log.warning("round %d: rejected chunk from %s: %s (%d chunks rejected this round)",
                                self._open.round, rejection.device, rejection.detail, count)

    def _resume(self, fresh: RoundState) -> RoundState:
        if self.checkpoint_dir is None:
            return fresh
        found = load_checkpoint(self.checkpoint_dir)
        if found is None:
            return fresh
        weights, raw = found
        if {k: tuple(v.shape) for k, v in weights.items()} != {k: tuple(v.shape) for k, v in fresh.weights.items()}:
            raise ValueError(f"checkpoint in {self.checkpoint_dir} is for another student architecture; "
                             f"point --checkpoint (or the simulator's --run-dir) at a fresh directory")
        state = state_from_json(raw, weights, self.engine)
        log.info("resumed from checkpoint: round %d, version %d", state.round, state.version)
        return state


def _parse_update_topic(topic: str) -> tuple[str, int]:
    parts = topic.split("/")
    try:
        return parts[-1], int(parts[-3])
    except (IndexError, ValueError):
        return parts[-1] if parts else "?", -1
