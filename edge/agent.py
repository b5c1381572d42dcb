"""A device on the fleet: receives plan, shard and student over MQTT, trains, publishes updates.

Work runs on the agent's own thread (MQTT callbacks only enqueue). An update is written to
an on-disk outbox before it is published and removed once acknowledged, so a device that
dies mid-publish resends it on restart; its id is deterministic, so the aggregator dedupes.
The device acts only on what the fleet key signed (edge.signed_artifact): an unsigned, forged,
moved or older plan, shard, program, model or cohort message is refused with a logged reason, and
it trains a round only when the aggregator told it, on its own topic, that it was sampled.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.local_training import distillation_targets, labels_in_use, train_round, update_payload
from edge.mqtt_session import MqttSession
from edge.noise_source import InsecureSeededNoise, SecureNoise
from edge.plan import DevicePlan
from edge.seeding import noise_generator, round_generator
from edge.shard_runtime import ShardRunner
from edge.signed_artifact import ReplayGuard, SignatureRejected, open_envelope
from edge.student_runtime import TrainableStudent
from edge.topics import FleetTopics
from edge.wire import PayloadRejected, content_hash, decode_weights

log = logging.getLogger("dmskd.edge")


class DeviceAgent:
    """One device's runtime; `start()` connects and returns, `stop()` ends it.

    seed: INSECURE, for tests and simulations: the device's SeedSequence (edge.seeding.FleetSeeds);
    round r then trains with edge.seeding.round_generator(seed, r) and draws its DP noise from
    noise_generator(seed, r). None (every deployment): OS entropy for both, the noise through the
    exact sampler (edge.noise_source.SecureNoise)."""

    def __init__(self, device_id: str, fleet: str, session: MqttSession, x: np.ndarray,
                 y: np.ndarray | None, fleet_key: Ed25519PublicKey, seed: np.random.SeedSequence | None = None,
                 outbox_dir: str | Path | None = None, noise_seeded: bool | None = None) -> None:
        self.device_id, self.fleet, self.session = device_id, fleet, session
        self.fleet_key = fleet_key  # pinned at provisioning: the only key whose messages this device acts on
        self._guard = ReplayGuard()
        self.refused: list[tuple[str, str]] = []  # (topic, reason) of every message refused
        self.selected: dict[int, bool] = {}  # round -> sampled for it
        self.topics = FleetTopics(fleet)
        self.x_images = np.asarray(x, dtype=np.float32)
        self.x_flat = self.x_images.reshape(len(self.x_images), -1)
        self.labels = None if y is None else np.asarray(y)
        self.seed = seed if seed is not None else np.random.SeedSequence()
        # a seeded noise is predictable: tests and simulations only; default: seeded exactly when a seed is given
        self.noise_seeded = seed is not None if noise_seeded is None else noise_seeded
        self.outbox = Path(outbox_dir) / device_id if outbox_dir else None
        self.plan: DevicePlan | None = None
        self.shard_bytes: bytes | None = None
        self.student_bytes: bytes | None = None
        self.latest_model: tuple[int, int, dict] | None = None  # (version, round, weights)
        self.rounds_done: set[int] = set()
        self._student: TrainableStudent | None = None
        self._student_hash = ""
        self._shard_logits: tuple[str, np.ndarray] | None = None
        self._subscribed: set[str] = set()
        self._sent: dict[int, bytes] = {}
        self._work: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=f"agent-{device_id}", daemon=True)
        self._stop = threading.Event()
        self.finished = threading.Event()

    def start(self) -> DeviceAgent:
        """Subscribe to this device's plan and the global model, connect, resend the outbox."""
        self.session.subscribe(self.topics.plan(self.device_id), self._on_plan)
        self.session.subscribe(self.topics.all_models, self._on_model)
        self.session.subscribe(self.topics.all_cohorts(self.device_id), self._on_cohort)
        self.session.connect()
        self.session.publish(self.topics.status(self.device_id), b"online", retain=True)
        self._thread.start()
        self._resend_outbox()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._work.put(None)
        self._thread.join(timeout=10)
        self.session.publish(self.topics.status(self.device_id), b"offline", retain=True, wait=False)
        self.session.close()

    # --- MQTT callbacks (network thread): verify, parse, store, enqueue ---
    def _verified(self, topic: str, envelope: bytes, stream: str) -> bytes | None:
        """The payload if the fleet key signed it for `topic` and it is not older than what is held on `stream`."""
        try:
            opened = open_envelope(self.fleet_key, topic, envelope)
            self._guard.admit(stream, opened)
        except SignatureRejected as exc:
            log.error("%s: refused message on %s: %s", self.device_id, topic, exc)
            self.refused.append((topic, str(exc)))
            return None
        return opened.payload

    def _on_plan(self, topic: str, envelope: bytes) -> None:
        payload = self._verified(topic, envelope, "plan")
        if payload is None:
            return
        try:
            plan = DevicePlan.from_json(payload)
        except ValueError as exc:
            log.error("%s: rejected plan: %s", self.device_id, exc)
            return
        self.plan = plan
        for t, handler in ((self.topics.shard(plan.shard_id), self._on_shard),
                           (self.topics.student_program(plan.student_hash), self._on_student)):
            if t not in self._subscribed:
                self._subscribed.add(t)
                self.session.subscribe(t, handler)
        self._work.put("plan")

    def _on_shard(self, topic: str, envelope: bytes) -> None:
        payload = self._verified(topic, envelope, topic)
        if payload is not None:
            self.shard_bytes = payload
            self._work.put("shard")

    def _on_student(self, topic: str, envelope: bytes) -> None:
        payload = self._verified(topic, envelope, topic)
        if payload is not None:
            self.student_bytes = payload
            self._work.put("student")

    def _on_cohort(self, topic: str, envelope: bytes) -> None:
        payload = self._verified(topic, envelope, "cohort")
        if payload is None:
            return
        try:
            decision = json.loads(payload)
            self.selected[int(decision["round"])] = bool(decision["selected"])
        except (ValueError, KeyError, TypeError) as exc:
            log.error("%s: unreadable cohort message on %s: %s", self.device_id, topic, exc)
            return
        self._work.put("cohort")

    def _on_model(self, topic: str, envelope: bytes) -> None:
        payload = self._verified(topic, envelope, "model")
        if payload is None:
            return
        try:
            weights, meta = decode_weights(payload)
        except PayloadRejected as exc:
            log.error("%s: rejected global model on %s: %s", self.device_id, topic, exc)
            return
        if meta.fleet != self.fleet:
            return
        if self.latest_model is not None and meta.version == self.latest_model[0] and meta.round in self._sent:
            self._work.put(("resend", meta.round))  # the aggregator restarted and republished this round
        elif self.latest_model is None or meta.version > self.latest_model[0]:
            self.latest_model = (meta.version, meta.round, weights)
            self._work.put("model")

    # --- worker thread ---
    def _run(self) -> None:
        while not self._stop.is_set():
            item = self._work.get()
            if item is None:
                return
            try:
                if isinstance(item, tuple):
                    self.session.publish(self.topics.update(item[1], self.device_id), self._sent[item[1]], qos=1)
                else:
                    self._maybe_train()
            except Exception:
                log.exception("%s: local round failed", self.device_id)

    def _maybe_train(self) -> None:
        plan, model, shard, program = self.plan, self.latest_model, self.shard_bytes, self.student_bytes
        if (plan is None or model is None or shard is None or program is None
                or content_hash(shard) != plan.shard_hash or content_hash(program) != plan.student_hash):
            return  # not everything the plan names has arrived yet
        version, round_, weights = model
        if round_ >= plan.rounds:
            self.finished.set()
            return
        if round_ in self.rounds_done or not self.selected.get(round_, False):
            return  # done already, or not (yet known to be) sampled for this round
        if self._student is None or self._student_hash != plan.student_hash:
            self._student = TrainableStudent.from_bytes(program)
            self._student_hash = plan.student_hash
        logits = self._logits_for(plan.shard_hash, shard)
        labels = labels_in_use(self.labels, plan.labelled_fraction)
        targets = distillation_targets(logits, labels, self._student.num_classes)
        noise = InsecureSeededNoise(noise_generator(self.seed, round_)) if self.noise_seeded else SecureNoise()
        result = train_round(self._student, weights, self.x_flat, targets, logits, plan,
                             round_generator(self.seed, round_), noise)
        self._send(round_, update_payload(result, plan, round_, version))
        self.rounds_done.add(round_)

    def _logits_for(self, shard_hash: str, shard: bytes) -> np.ndarray:
        if self._shard_logits is None or self._shard_logits[0] != shard_hash:
            self._shard_logits = (shard_hash, ShardRunner.from_bytes(shard).logits(self.x_images))
        return self._shard_logits[1]

    def _send(self, round_: int, blob: bytes) -> None:
        path = None
        if self.outbox is not None:
            self.outbox.mkdir(parents=True, exist_ok=True)
            path = self.outbox / f"round-{round_:05d}.safetensors"
            path.write_bytes(blob)
        self.session.publish(self.topics.update(round_, self.device_id), blob, qos=1)
        self._sent = {round_: blob}
        if path is not None:
            path.unlink(missing_ok=True)

    def _resend_outbox(self) -> None:
        if self.outbox is None or not self.outbox.exists():
            return
        for path in sorted(self.outbox.glob("round-*.safetensors")):
            round_ = int(path.stem.split("-")[1])
            log.info("%s: resending round %d update from outbox", self.device_id, round_)
            self.session.publish(self.topics.update(round_, self.device_id), path.read_bytes(), qos=1)
            path.unlink(missing_ok=True)
