"""The aggregator as an MQTT adapter of the round engine: receive, wait, apply, publish, checkpoint.

All round logic (cohort, admission, aggregation, privacy, seeding, records) is the engine's
(cloud/round_engine.py); when a round closes is cloud/round_closing.py's. This service only moves
bytes: it publishes the fleet and a manifest after it, each round's global model (retained whole on
model/<v>, and, with model_bits < 32, as the quantised step from version v-1 on step, which is what
devices download: edge.model_step), and tells every device privately whether it was sampled
(cohort/<device>, which only that device may read: amplification by sampling needs the sample kept
secret). The step and the notices replace their last round's retained message: nothing to clear. It
offers every arriving update to the open round's inbox and closes the round on a quorum, when every
cohort device still online has answered (devices' status topic and Last Will), or at the deadline. It
then publishes a retained round result on round/<r>/result (counts and epsilon; no device names: the
cohort stays secret), acknowledges each sender's update in that device's next cohort notice, and
checkpoints, so a restarted aggregator resumes where it stopped (without the last step: devices then
fetch the full model).

Everything it publishes is signed with the fleet key (edge.signed_artifact) and kept: when it
reconnects to a broker it republishes all of it (a restarted broker without persistence has lost
every retained message), and when a device announces itself online it republishes that device's
plan and cohort notice. Plans, shards, the program and the manifest carry a publication counter
that grows across restarts, models their version, cohort and result messages their round.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud.checkpoint import load_checkpoint, save_checkpoint
from cloud.fleet_bundle import FleetBundle, engine_config
from cloud.rejections import RejectionReason, sanitise_device
from cloud.round_closing import ONLINE, DeviceLiveness, RoundPolicy, close_reason
from cloud.round_engine import Evaluate, OpenRound, RoundEngine, RoundRecord, RoundState, state_from_json, state_to_json
from edge.log_rate import worth_logging
from edge.mqtt_session import MqttSession
from edge.plan import DevicePlan
from edge.signed_artifact import sign
from edge.topics import FleetTopics
from edge.wire import ACK_DIGEST_CHARS

log = logging.getLogger("dmskd.aggregator")

REPUBLISH_INTERVAL_S = 5.0  # a device announcing itself online more often gets its plan again at most this often
# only the first accepted update of a round and the one reaching its quorum wake the round's thread (a wake per
# update cost the network thread a tenth of its time at 1,000 devices); once one came in, it looks this often
UPDATE_CHECK_INTERVAL_S = 0.05




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
        # (version, chunks of the full model, chunks of its step) left retained on the broker
        self._retained_model: tuple[int, int, int] | None = None
        self._start_model: tuple[int, int] | None = None  # (round, version) of the model publish_fleet retained
        # the last closed round, its accepted updates' digests by device, its cohort: the next notices carry them
        self._acks: tuple[int, dict[str, str], frozenset[str]] = (-1, {}, frozenset())
        self._retained_result: tuple[int, int] | None = None  # (round, chunks) of the result left on the broker
        self._publication = 0
        self._signed: dict[str, bytes] = {}  # topic -> signed envelope of everything retained: what a broker may lose
        self.liveness = DeviceLiveness(frozenset(engine.config.devices))
        self._republish_all = False
        self._republish_devices: set[str] = set()
        self._last_republish: dict[str, float] = {}
        self._grace_spent: set[str] = set()  # never-heard-from devices a round already waited unheard_grace_s for
        self.republished = 0  # republications done (broker reconnects and device announcements)
        self.late_updates = 0  # updates that arrived for a round already closed (resends, mostly)
        self.duplicate_updates = 0  # resends of an update the open round had already accepted
        session.stream_of = update_sender_stream  # a sender's partial updates share one bound, whatever round
        self._subscribe_updates()
        session.subscribe(self.topics.all_status, self._on_status)
        session.on_error(self._on_chunk_error)
        session.on_connect(self._on_connect)

    def _subscribe_updates(self) -> None:
        """Where admitted updates come from: the devices' update topics (a sharded coordinator: its workers)."""
        self.session.subscribe(self.topics.all_updates, self._on_update)

    @classmethod
    def from_bundle(cls, bundle: FleetBundle, session: MqttSession, seed: np.random.SeedSequence,
                    signing_key: Ed25519PrivateKey, checkpoint_dir: str | Path | None = None,
                    evaluate: Evaluate | None = None,
                    on_round_end: Callable[[RoundRecord], None] | None = None,
                    insecure_seeded_noise: bool = False, policy: RoundPolicy | None = None) -> AggregatorService:
        """The service a bundle describes; seed is the server's SeedSequence (edge.seeding.FleetSeeds),
        which draws the DP noise too only with insecure_seeded_noise (tests, simulations); policy: when
        rounds close (default: the bundle's quorum fraction and deadline)."""
        st = bundle.settings
        engine = RoundEngine(engine_config(bundle, insecure_seeded_noise), evaluate)
        policy = policy or RoundPolicy(st.quorum_fraction, st.deadline_s)
        return cls(session, engine, bundle.initial_weights, seed, policy, signing_key, checkpoint_dir, on_round_end)

    @property
    def weights(self) -> dict[str, np.ndarray]:
        return self.state.weights

    @property
    def epsilon(self) -> float | None:
        return self.state.ledger.epsilon if self.state.ledger is not None else None

    def publish_fleet(self, plans: list[DevicePlan], shards: dict[str, bytes], student_program: bytes) -> None:
        """Retain the student program, every shard, every device's plan, the model the next round starts from and
        then the manifest, signed; return once the broker acknowledged the manifest (it acknowledges in order:
        MQTT 3.1.1 §4.6, so all of it). The start model is part of the set-up, so that the first round, like
        every later one, sends devices a cohort notice and (from round 1) a step, not the whole model."""
        counter = self._next_publication()
        for h in {p.student_hash for p in plans}:
            self._publish_signed(self.topics.student_program(h), student_program, counter)
        for shard_id, blob in shards.items():
            self._publish_signed(self.topics.shard(shard_id), blob, counter)
        for p in plans:
            self._publish_signed(self.topics.plan(p.device), p.to_json(), counter)
        if self.engine.stop_reason(self.state) is None:
            self._publish_model(self.engine.model_payload(self.state), self.engine.model_step_payload(self.state))
            self._start_model = (self.state.round, self.state.version)
        manifest = {"fleet": self.engine.config.fleet, "devices": len(plans), "rounds": self.engine.config.rounds}
        self._publish_signed(self.topics.manifest, json.dumps(manifest).encode(), counter, wait=True)

    def _next_publication(self) -> int:
        """A counter above every earlier publication, this process's or a previous one's (microseconds)."""
        self._publication = max(time.time_ns() // 1000, self._publication + 1)
        return self._publication

    def _publish_signed(self, topic: str, payload: bytes, counter: int, retain: bool = True, wait: bool = False) -> int:
        """Publish signed (and keep it, if retained, to republish). Only the fleet's first publication waits for
        PUBACKs: later ones must not stall a round while a broker restarts (paho resends them on reconnect)."""
        envelope = sign(self.signing_key, topic, counter, payload)
        if retain:
            self._signed[topic] = envelope
        return self.session.publish(topic, envelope, retain=retain, wait=wait)

    def _clear_retained(self, topic: str, chunks: int, first: int = 0) -> None:
        """Clear a retained message (first = 0: it is no longer republished), or its chunks from `first` on (what a
        shorter message on the same topic left behind)."""
        if first == 0:
            self._signed.pop(topic, None)
        self.session.clear_retained(topic, chunks, first)

    def run(self) -> list[dict]:
        """Run rounds until the engine stops (schedule done or budget spent); return the history."""
        while (reason := self.engine.stop_reason(self.state)) is None:
            self._run_round()
        level = logging.INFO if self.state.round >= self.engine.config.rounds else logging.ERROR
        log.log(level, "stopping before round %d: %s", self.state.round, reason)
        if self._acks[0] >= 0:
            self._publish_cohort(self.state.round, set())  # the last round's acknowledgements, nobody selected
        try:  # the signed final model ends every device's run: wait until the broker holds it
            last = self.engine.config.rounds
            self._publish_model(self.engine.model_payload(self.state, round_=last),
                                self.engine.model_step_payload(self.state, round_=last), wait=True)
        except TimeoutError as exc:
            log.error("the final model was not acknowledged by the broker (%s); devices keep waiting for it", exc)
        return list(self.state.history)

    def _run_round(self) -> None:
        opened = self.engine.open_round(self.state)
        with self._cond:
            self._open = opened
        self._announce_round(opened)
        # the model (one message for all) before the notices (one per device): a device starts as soon as its
        # notice comes, not after the whole cohort's were signed and sent (a second at 10,000 devices)
        if self._start_model != (opened.round, opened.base_version):  # not already retained by publish_fleet
            self._publish_model(opened.model_payload, opened.step_payload)
        self._start_model = None
        self._publish_cohort(opened.round, set(opened.cohort))
        reason = self._wait_for_close(opened)
        log.info("round %d closes: %s (%d of %d cohort devices accepted)", opened.round, reason,
                 len(opened.inbox.accepted), len(opened.cohort))
        if not opened.inbox.accepted:
            log.error("round %d closed with no valid update; the global student is unchanged", opened.round)
        self.state, record = self.engine.apply(self.state, opened)
        summary = {"round": record.round, "accepted": len(record.accepted), "rejected": len(record.rejected),
                   **({"epsilon": record.epsilon} if record.epsilon is not None else {}), **record.metrics}
        # each device's acknowledgement goes on its own topic with its next notice: O(1) bytes per device, where
        # a list of every digest in one result would cost every device the whole fleet's list (O(N^2) in all)
        self._acks = (record.round, {d: h[:ACK_DIGEST_CHARS] for d, h in opened.inbox.accepted_digests.items()},
                      frozenset(opened.cohort))
        self._publish_result(record.round, json.dumps(summary).encode())
        if self.checkpoint_dir is not None:
            save_checkpoint(self.checkpoint_dir, self.state.weights, state_to_json(self.state, self.engine.config))
        if self.on_round_end is not None:
            self.on_round_end(record)

    def _announce_round(self, opened: OpenRound) -> None:
        """What must hear of an opening round before any device can answer it: nobody here (the reducer's
        workers, in cloud/reducer.py)."""

    def _wait_for_close(self, opened: OpenRound) -> str:
        """Wait until the round may close (cloud.round_closing), republishing what devices or a broker lost."""
        while True:
            with self._cond:
                elapsed = time.monotonic() - opened.opened_at
                # a device never heard from is waited for its grace once, not in every round until it boots
                gone = self.liveness.offline | (self._grace_spent - self.liveness.heard)
                reason = close_reason(self.policy, opened.cohort, opened.inbox.accepted, gone, elapsed,
                                      self.liveness.heard)
                if reason is not None:
                    self._open, opened.closed_by, opened.closed_at = None, reason, time.monotonic()
                    if opened.inbox.accepted and elapsed >= self.policy.unheard_grace_s:
                        self._grace_spent |= set(opened.cohort) - self.liveness.heard
                    return reason
                if not (self._republish_all or self._republish_devices):
                    until = self.policy.deadline_s if elapsed >= self.policy.unheard_grace_s \
                        else self.policy.unheard_grace_s
                    timeout = max(0.0, until - elapsed)
                    if opened.inbox.accepted:  # the other closing conditions change with updates that do not wake
                        timeout = min(timeout, UPDATE_CHECK_INTERVAL_S)
                    self._cond.wait(timeout=timeout)
                everything, devices = self._republish_all, self._republish_devices
                self._republish_all, self._republish_devices = False, set()
            self._republish(everything, devices)

    def _republish(self, everything: bool, devices: set[str]) -> None:
        """Publish again what a restarted broker lost (everything), or what a device coming online needs."""
        if everything:
            topics = list(self._signed)
            log.warning("reconnected to the broker: republishing %d retained messages", len(topics))
        else:
            own = {d: (self.topics.plan(d), self.topics.cohort(d)) for d in devices}
            topics = [t for pair in own.values() for t in pair if t in self._signed]
        for topic in topics:
            self.session.publish(topic, self._signed[topic], retain=True, wait=False)
        self.republished += bool(topics)

    def _publish_result(self, round_: int, summary: bytes) -> None:
        """Retain this round's result (the acknowledgement a reconnecting device reads) and clear the last one."""
        chunks = self._publish_signed(self.topics.result(round_), summary, round_)
        previous, self._retained_result = self._retained_result, (round_, chunks)
        if previous is not None and previous[0] != round_:
            self._clear_retained(self.topics.result(previous[0]), previous[1])

    def _publish_cohort(self, round_: int, selected: set[str]) -> None:
        """Tell each device of the plan, on its own topic, whether it was sampled for `round_` and, if it was in
        the last round's cohort, whether its update was accepted (`ack`: the update's sha256 prefix, or null); each
        replaces the device's last notice. After the last round, `round_` = the schedule's end, nobody selected."""
        acked_round, acks, asked = self._acks
        for device in self.engine.config.devices:
            notice: dict = {"round": round_, "selected": device in selected}
            if device in asked:
                notice["ack"] = {"round": acked_round, "update": acks.get(device)}
            self._publish_signed(self.topics.cohort(device), json.dumps(notice).encode(), round_)

    def _publish_model(self, blob: bytes, step: bytes | None = None, wait: bool = False) -> None:
        """Retain the full model (for a device that holds no base) and the step to it (what devices download,
        replacing the last step; its chunks beyond the new one's count are cleared); clear the previous version's
        model. With `wait`, return once the broker acknowledged both (in order)."""
        v = self.state.version
        chunks = self._publish_signed(self.topics.model(v), blob, v, wait=wait and step is None)
        step_chunks = 0 if step is None else self._publish_signed(self.topics.model_step, step, v, wait=wait)
        previous, self._retained_model = self._retained_model, (v, chunks, step_chunks)
        if previous is not None and previous[0] == v - 1:
            self._clear_retained(self.topics.model(previous[0]), previous[1])
        if previous is not None and previous[2] > step_chunks:
            self._clear_retained(self.topics.model_step, previous[2], first=step_chunks)

    def _on_update(self, topic: str, payload: bytes) -> None:
        device, round_ = _parse_update_topic(topic)
        with self._cond:
            opened = self._open
            if opened is None or 0 <= round_ < opened.round:
                # a resend for a closed round (its result had not reached the sender yet), or between rounds:
                # nothing to admit, and no rejection of the open round's
                self.late_updates += 1
                if worth_logging(self.late_updates):
                    log.info("update from %s for closed round %s ignored (%d so far)", sanitise_device(device),
                             round_, self.late_updates)
                return
            inbox = opened.inbox
            before = inbox.rejected.total
            accepted = inbox.offer(device, round_, payload)
            if accepted is not None:
                opened.last_accepted_at = time.monotonic()
                count = len(inbox.accepted)
                if count == 1 or count >= self.policy.quorum(len(opened.cohort)):
                    self._cond.notify_all()  # the round may close now, or looks every UPDATE_CHECK_INTERVAL_S from now
            rejection = inbox.rejected.last if inbox.rejected.total > before else None
            if rejection is not None:
                count = inbox.rejected.count(rejection.reason)
                if worth_logging(count):
                    log.warning("round %d: rejected update from %s: %s: %s (%d with this reason this round)",
                                inbox.round_, rejection.device, rejection.reason.value, rejection.detail, count)
            elif accepted is None:
                self.duplicate_updates += 1
                if worth_logging(self.duplicate_updates):
                    log.info("round %d: duplicate update from %s ignored (idempotent resend; %d so far)",
                             inbox.round_, sanitise_device(device), self.duplicate_updates)

    def _on_status(self, topic: str, payload: bytes) -> None:
        device = topic.rsplit("/", 1)[-1]
        with self._cond:
            seen_before = device in self.liveness.heard
            change = self.liveness.observe(device, payload)
            if change is None:
                return
            log.debug("device %s is %s", device, change.decode())
            now = time.monotonic()
            last = self._last_republish.get(device, -REPUBLISH_INTERVAL_S)
            # a device's first connect finds the broker's retained copies; one coming back may find a broker
            # that lost them (restarted, or flooded): that one gets its plan and cohort notice again
            if change == ONLINE and seen_before and now - last >= REPUBLISH_INTERVAL_S:
                self._last_republish[device] = now
                self._republish_devices.add(device)
            self._cond.notify_all()

    def _on_connect(self, reconnected: bool) -> None:
        if reconnected:
            with self._cond:
                self._republish_all = True
                self._cond.notify_all()

    def _on_chunk_error(self, topic: str, reason: str) -> None:
        if "/update/" not in topic:
            return
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


def update_sender_stream(topic: str) -> str:
    """The reassembly stream of a logical topic: `update/<sender>` for updates of any round, else the topic."""
    parts = topic.split("/")
    return f"update/{parts[-1]}" if len(parts) >= 3 and parts[-2] == "update" else topic


def _parse_update_topic(topic: str) -> tuple[str, int]:
    parts = topic.split("/")
    try:
        return parts[-1], int(parts[-3])
    except (IndexError, ValueError):
        return parts[-1] if parts else "?", -1
