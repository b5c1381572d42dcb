"""A device on the fleet: receives plan, shard and student over MQTT, trains, publishes updates.

Work runs on the agent's own thread (MQTT callbacks only verify, parse and enqueue), or, where one
process hosts thousands of devices, on a shared `edge.device_workers.DeviceWorkers` pool: the same
handlers, in the same order per device. An update is written to an on-disk outbox before it is
published and stays there until the aggregator acknowledges it: the device's signed notice for the
next round (on its own topic) carries its update's digest if the round accepted it, or null. Until
then the device resends it on every reconnect, when the aggregator republishes the round's model,
and after `resend_interval_s` of silence (doubling while the silence lasts, up to 8 times it, so
that a large fleet waiting on a long round does not flood its aggregator); the aggregator counts a
resend once. A broker's PUBACK is not enough: a broker that restarts without persistence loses what
it acknowledged.

The global model comes down as a quantised step from the version the device holds (edge.model_step,
topic `step/<version>`) when its plan's `model_bits` is below 32; the full model (`model/<version>`,
retained) is subscribed to only while the device holds none, missed a version, or resyncs after a
silence, and dropped again once it is held.

The device acts only on what the fleet key signed (edge.signed_artifact): an unsigned, forged,
moved or older plan, shard, program, model, cohort or result message is refused with a logged
reason; a signed one that does not fit (another device's plan, a model of another shape) is logged
and ignored. It trains a round only when the aggregator told it, on its own topic, that it was
sampled, and it ends its run only on the signed final model (a round at or beyond its plan's
last). If the fleet's manifest arrives and this device's plan has not, the device is not in the
fleet's plan: `unknown_device` says so and `finished` is set.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import queue
import threading
import time
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.artifact_cache import ArtifactCache
from edge.device_workers import IDLE, DeviceWorkers
from edge.local_training import distillation_targets, labels_in_use, train_round, update_payload
from edge.log_rate import LogBudget
from edge.model_step import add_step, step_template
from edge.mqtt_session import MqttSession
from edge.noise_source import InsecureSeededNoise, SecureNoise
from edge.outbox import UpdateOutbox
from edge.plan import DevicePlan
from edge.seeding import noise_generator, round_generator, rounding_generator
from edge.signed_artifact import ReplayGuard, SignatureRejected, open_envelope
from edge.stochastic_quantization import BITS_OF, dequantize
from edge.topics import FleetTopics
from edge.wire import (
    ModelStepMeta,
    PayloadRejected,
    WeightsMeta,
    ack_digest,
    content_hash,
    decode_model_step,
    decode_weights,
)

log = logging.getLogger("dmskd.edge")

PLAN_GRACE_S = 5.0  # how long after the fleet's manifest a missing plan means "not in the plan"
MAX_IDLE_DOUBLINGS = 3  # the idle resync backs off to 2^3 = 8 x resend_interval_s


class DeviceAgent:
    """One device's runtime; `start()` connects and returns, `stop()` ends it.

    seed: INSECURE, for tests and simulations: the device's SeedSequence (edge.seeding.FleetSeeds);
    round r then trains with edge.seeding.round_generator(seed, r) and draws its DP noise from
    noise_generator(seed, r). None (every deployment): OS entropy for both, the noise through the
    exact sampler (edge.noise_source.SecureNoise). workers, artifacts: a pool and an artefact cache
    shared by the agents of one process (a simulator); None: a thread and a cache of its own."""

    def __init__(self, device_id: str, fleet: str, session: MqttSession, x: np.ndarray,
                 y: np.ndarray | None, fleet_key: Ed25519PublicKey, seed: np.random.SeedSequence | None = None,
                 outbox_dir: str | Path | None = None, noise_seeded: bool | None = None,
                 resend_interval_s: float = 10.0, workers: DeviceWorkers | None = None,
                 artifacts: ArtifactCache | None = None) -> None:
        self.device_id, self.fleet, self.session = device_id, fleet, session
        self.fleet_key = fleet_key  # pinned at provisioning: the only key whose messages this device acts on
        self._guard = ReplayGuard()
        self._log_budget = LogBudget()
        self.refused: list[tuple[str, str]] = []  # (topic, reason) of every message refused (bounded below)
        self.ignored: list[tuple[str, str]] = []  # (topic, reason) of signed messages that did not fit
        self.selected: dict[int, bool] = {}  # round -> sampled for it
        self.topics = FleetTopics(fleet)
        self.x_images = np.asarray(x, dtype=np.float32)
        self.x_flat = self.x_images.reshape(len(self.x_images), -1)
        self.labels = None if y is None else np.asarray(y)
        self.seed = seed if seed is not None else np.random.SeedSequence()
        # a seeded noise is predictable: tests and simulations only; default: seeded exactly when a seed is given
        self.noise_seeded = seed is not None if noise_seeded is None else noise_seeded
        self.outbox = UpdateOutbox(Path(outbox_dir) / device_id) if outbox_dir else None
        self.resend_interval_s = resend_interval_s
        self.plan: DevicePlan | None = None
        self.shard_bytes: bytes | None = None
        self.student_bytes: bytes | None = None
        self.latest_model: tuple[int, int, dict] | None = None  # (version, round, weights)
        self.rounds_done: set[int] = set()
        self.acknowledged: set[int] = set()  # rounds whose result listed this device's update
        self.unknown_device: str | None = None  # why this device is not in the fleet's plan, once known
        self._manifest_at: float | None = None
        self._artifacts = artifacts or ArtifactCache()
        self._hashes: dict[str, str] = {}  # "shard" / "student" -> content hash of the bytes held
        self._shard_logits: tuple[str, np.ndarray] | None = None
        self._subscribed: set[str] = set()
        self._full_model_subscribed = False  # the full model's topic: only while the steps cannot serve
        self._full_model_needed: int | None = None  # the least full version that serves: None while steps do
        self._unacked: dict[int, bytes] = {}  # round -> update sent and not yet acknowledged
        self._idles = 0  # consecutive idle intervals: the resync backs off while the silence lasts
        self._work: queue.Queue | None = None
        self._mailbox = workers.mailbox(self._handle, self._idle_interval) if workers is not None else None
        if self._mailbox is None:
            self._work = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=f"agent-{device_id}", daemon=True) \
            if self._mailbox is None else None
        self._stop = threading.Event()
        self.finished = threading.Event()
        self.prepared = threading.Event()  # plan, shard, student and a global model held, the samples labelled

    def start(self) -> DeviceAgent:
        """Subscribe to this device's plan, the manifest, the global model and its own notices (cohort and
        acknowledgement); connect, announce itself online, resend the outbox."""
        self.session.subscribe(self.topics.plan(self.device_id), self._on_plan)
        self.session.subscribe(self.topics.manifest, self._on_manifest)
        self._subscribe_full_model(True)
        self.session.subscribe(self.topics.model_step, self._on_model_step)
        self.session.subscribe(self.topics.cohort(self.device_id), self._on_cohort)
        self.session.on_connect(self._on_connect)
        self._load_outbox()
        self.session.connect()
        if self._thread is not None:
            self._thread.start()
        self._put("resend")
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._mailbox is not None:
            self._mailbox.close()
        else:
            self._put(None)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.session.publish(self.topics.status(self.device_id), b"offline", retain=True, wait=False)
        self.session.close()

    # --- MQTT callbacks (network thread): verify, parse, store, enqueue ---
    def _on_connect(self, reconnected: bool) -> None:
        self.session.publish(self.topics.status(self.device_id), b"online", retain=True, wait=False)
        if reconnected:
            self._put("resend")

    def _verified(self, topic: str, envelope: bytes, stream: str, broadcast: bool = True) -> bytes | None:
        """The payload if the fleet key signed it for `topic` and it is not older than what is held on `stream`;
        a `broadcast` (the same bytes for every device) is verified once per process (edge.artifact_cache)."""
        try:
            opened = (self._artifacts.opened(self.fleet_key, topic, envelope) if broadcast
                      else open_envelope(self.fleet_key, topic, envelope))
            self._guard.admit(stream, opened)
        except SignatureRejected as exc:
            self._note(self.refused, topic, f"refused: {exc}")
            return None
        return opened.payload

    def _note(self, where: list[tuple[str, str]], topic: str, reason: str) -> None:
        kind = "refused" if where is self.refused else "ignored"
        if self._log_budget.allows(kind):  # a stranger's flood costs a few lines, each with its count
            log.error("%s: %s on %.200r (%d %s so far)", self.device_id, reason[:300], topic,
                      self._log_budget.counts[kind], kind)
        if len(where) < 1000:  # nor does it grow the record without bound
            where.append((topic, reason))

    def _on_plan(self, topic: str, envelope: bytes) -> None:
        payload = self._verified(topic, envelope, "plan", broadcast=False)
        if payload is None:
            return
        try:
            plan = DevicePlan.from_json(payload)
        except ValueError as exc:
            self._note(self.ignored, topic, f"unreadable plan ignored: {exc}")
            return
        if (plan.device, plan.fleet) != (self.device_id, self.fleet):
            self._note(self.ignored, topic, f"plan for device {plan.device!r} of fleet {plan.fleet!r} ignored")
            return
        self.plan = plan
        for t, kind in ((self.topics.shard(plan.shard_id), "shard"),
                        (self.topics.student_program(plan.student_hash), "student")):
            if t not in self._subscribed:
                self._subscribed.add(t)
                self.session.subscribe(t, functools.partial(self._on_artifact, kind))
        self._put("plan")

    def _on_artifact(self, kind: str, topic: str, envelope: bytes) -> None:
        """A shard or the student program: kept, and checked against the plan's hash before use."""
        payload = self._verified(topic, envelope, topic)
        if payload is None:
            return
        digest = content_hash(payload)
        self._hashes[kind] = digest
        if kind == "shard":
            self.shard_bytes = self._artifacts.intern(digest, payload)
        else:
            self.student_bytes = self._artifacts.intern(digest, payload)
        self._put(kind)

    def _on_manifest(self, topic: str, envelope: bytes) -> None:
        payload = self._verified(topic, envelope, "manifest")
        if payload is not None and self._manifest_at is None:
            self._manifest_at = time.monotonic()
            self._put("manifest")

    def _on_cohort(self, topic: str, envelope: bytes) -> None:
        payload = self._verified(topic, envelope, "cohort", broadcast=False)
        if payload is None:
            return
        try:
            decision = json.loads(payload)
            round_, selected = int(decision["round"]), bool(decision["selected"])
            ack = decision.get("ack")
            acked = None if ack is None else (int(ack["round"]), ack["update"])
            if acked is not None and not isinstance(acked[1], (str, type(None))):
                raise TypeError(f"ack update {acked[1]!r} is neither a digest nor null")
        except (ValueError, KeyError, TypeError) as exc:
            self._note(self.ignored, topic, f"unreadable cohort message ignored: {exc}")
            return
        self.selected[round_] = selected
        if acked is not None:  # the last round's outcome for this device's update: accepted (its digest) or not
            self._put(("result", acked[0], frozenset() if acked[1] is None else frozenset([acked[1]])))
        self._put("cohort")

    def _on_model(self, topic: str, envelope: bytes) -> None:
        payload = self._verified(topic, envelope, "model")
        if payload is None:
            return
        try:  # every device of this process receives the same model: decoded once (its arrays read-only)
            weights, meta = self._artifacts.shared(("model", hashlib.sha256(payload).digest()),
                                                   lambda: _read_only(decode_weights(payload)))
        except PayloadRejected as exc:
            self._note(self.ignored, topic, f"invalid global model ignored: {exc}")
            return
        if meta.fleet != self.fleet:
            self._note(self.ignored, topic, f"model of fleet {meta.fleet!r} ignored")
            return
        needed = self._full_model_needed
        if needed is not None and meta.version >= needed:
            self._full_model_needed = None  # caught up: the steps serve again
        if self.latest_model is not None and meta.version == self.latest_model[0]:
            self._put("resend")  # the aggregator (or a restarted broker) republished this round's model
        elif self.latest_model is None or meta.version > self.latest_model[0]:
            self.latest_model = (meta.version, meta.round, weights)
            self._put("model")

    def _on_model_step(self, topic: str, envelope: bytes) -> None:
        payload = self._verified(topic, envelope, "model-step")
        if payload is None:
            return
        try:
            digest = hashlib.sha256(payload).digest()
            tensors, meta = self._artifacts.shared(("step", digest), lambda: decode_model_step(payload))
        except PayloadRejected as exc:
            self._note(self.ignored, topic, f"invalid model step ignored: {exc}")
            return
        if meta.fleet != self.fleet:
            self._note(self.ignored, topic, f"model step of fleet {meta.fleet!r} ignored")
            return
        self._put(("step", meta, tensors, digest))  # applied on the device's worker, not the shared network thread

    def _apply_step(self, meta: ModelStepMeta, tensors: dict[str, np.ndarray], digest: bytes) -> None:
        """Rebuild the next global model from the held one; a step from a base not held asks for the full model."""
        held = self.latest_model
        if held is not None and meta.version == held[0]:
            self._resend()  # the aggregator (or a restarted broker) republished this round's step
            return
        if held is not None and meta.version < held[0]:
            return  # an older step, retained before this device caught up
        if held is None or meta.base_version != held[0]:
            self._need_full_model(meta.version)  # it missed a version (or holds none): the full one is retained
            return
        bits, template = BITS_OF[meta.encoding], step_template(held[2])
        try:  # every device of this process holding the same student dequantises the same step alike: once
            step = self._artifacts.shared(("dequantised", digest, bits, tuple(template.items())),
                                          lambda: dequantize(tensors, bits, template))
            # and the devices holding the same base (one shared copy) get the same next model: added once. The
            # entry keeps its base alive, so no other model can take that id while the entry exists
            _, weights = self._artifacts.shared(("stepped", digest, id(held[2])),
                                                lambda: (held[2], _frozen(add_step(held[2], step))))
        except PayloadRejected as exc:
            self._note(self.ignored, self.topics.model_step, f"model step ignored: {exc}")
            self._need_full_model(meta.version)
            return
        if self.latest_model is held:  # the full model of this version may have come meanwhile: same bits
            self.latest_model = (meta.version, meta.round, weights)

    def _subscribe_full_model(self, wanted: bool) -> None:
        """Receive the full model only while this device cannot rebuild the next one from a step."""
        if wanted and not self._full_model_subscribed:
            self.session.subscribe(self.topics.all_models, self._on_model)
        elif not wanted and self._full_model_subscribed:
            self.session.unsubscribe(self.topics.all_models)
        self._full_model_subscribed = wanted

    def _need_full_model(self, version: int) -> None:
        needed = self._full_model_needed
        self._full_model_needed = version if needed is None else max(needed, version)

    def _full_model_wanted(self) -> bool:
        plan = self.plan
        return (plan is None or plan.model_bits == 32 or self.latest_model is None
                or self._full_model_needed is not None)

    # --- work items (the agent's thread, or a shared worker pool) ---
    def _put(self, item: object) -> None:
        if self._mailbox is not None:
            self._mailbox.put(item)
        elif self._work is not None:
            self._work.put(item)

    def _idle_interval(self) -> float:
        """Silence after which the device resyncs: resend_interval_s, doubled per idle resync in a row."""
        return self.resend_interval_s * (1 << min(self._idles, MAX_IDLE_DOUBLINGS))

    def _run(self) -> None:
        assert self._work is not None
        while not self._stop.is_set():
            try:
                item = self._work.get(timeout=self._idle_interval())
            except queue.Empty:
                item = IDLE  # nothing heard for a while
            if item is None:
                return
            self._handle(item)

    def _handle(self, item: object) -> None:
        if self._stop.is_set():
            return
        self._idles = self._idles + 1 if item == IDLE else 0
        try:
            if item == IDLE:
                self._resync()
            elif item == "resend":
                self._resend()
            elif isinstance(item, tuple) and item[0] == "result":
                self._on_round_result(item[1], item[2])
            else:
                if isinstance(item, tuple):  # ("step", meta, tensors, the step payload's sha256)
                    self._apply_step(item[1], item[2], item[3])
                self._check_membership()
                self._prepare()
                self._maybe_train()
            self._subscribe_full_model(self._full_model_wanted())
        except Exception:
            log.exception("%s: local round failed", self.device_id)

    def _check_membership(self) -> None:
        """After the manifest, a plan that has not come within PLAN_GRACE_S means this device is not in the plan."""
        if self.plan is not None or self._manifest_at is None or self.unknown_device is not None:
            return
        if time.monotonic() - self._manifest_at < PLAN_GRACE_S:
            threading.Timer(PLAN_GRACE_S, self._put, args=("manifest",)).start()
            return
        self.unknown_device = (f"device {self.device_id!r} is not in fleet {self.fleet!r}'s plan: the aggregator "
                               f"published its manifest but no plan for this id; check --device against the "
                               f"bundle's plans.json (and --fleet)")
        log.error("%s", self.unknown_device)
        self.finished.set()

    def _prepare(self) -> None:
        """Label the local samples with the shard as soon as the plan and its shard are held, not in the first
        round; `prepared` once the student program and a global model are held too: ready for any round."""
        plan, shard = self.plan, self.shard_bytes
        if plan is None or shard is None or self._hashes.get("shard") != plan.shard_hash:
            return
        self._logits_for(plan.shard_hash, shard)
        if (self.latest_model is not None and self.student_bytes is not None
                and self._hashes.get("student") == plan.student_hash):
            self.prepared.set()

    def _maybe_train(self) -> None:
        plan, model, shard, program = self.plan, self.latest_model, self.shard_bytes, self.student_bytes
        if (plan is None or model is None or shard is None or program is None
                or self._hashes.get("shard") != plan.shard_hash or self._hashes.get("student") != plan.student_hash):
            return  # not everything the plan names has arrived yet
        version, round_, weights = model
        if round_ >= plan.rounds:
            self.finished.set()  # the signed final model: the run is over
            return
        if round_ in self.rounds_done or not self.selected.get(round_, False):
            return  # done already, or not (yet known to be) sampled for this round
        student = self._artifacts.student(plan.student_hash, program)
        mismatch = student.shape_mismatch(weights)
        if mismatch is not None:
            self._note(self.ignored, self.topics.model(version), f"global model ignored: {mismatch}")
            self.latest_model = None
            return
        logits = self._logits_for(plan.shard_hash, shard)
        labels = labels_in_use(self.labels, plan.labelled_fraction)
        targets = distillation_targets(logits, labels, student.num_classes)
        noise = InsecureSeededNoise(noise_generator(self.seed, round_)) if self.noise_seeded else SecureNoise()
        result = train_round(student, weights, self.x_flat, targets, logits, plan,
                             round_generator(self.seed, round_), noise)
        self._send(round_, update_payload(result, plan, round_, version, rounding_generator(self.seed, round_)))
        self.rounds_done.add(round_)

    def _logits_for(self, shard_hash: str, shard: bytes) -> np.ndarray:
        if self._shard_logits is None or self._shard_logits[0] != shard_hash:
            self._shard_logits = (shard_hash, self._artifacts.shard(shard_hash, shard).logits(self.x_images))
        return self._shard_logits[1]

    def _send(self, round_: int, blob: bytes) -> None:
        """Store the update in the outbox, then publish it; it stays until its next cohort notice acknowledges it."""
        if self.outbox is not None:
            self.outbox.append(round_, blob)
        self._unacked[round_] = blob
        self.session.publish(self.topics.update(round_, self.device_id), blob, qos=1, wait=False)

    def _resend(self) -> None:
        for round_, blob in sorted(self._unacked.items()):
            if self.latest_model is not None and round_ < self.latest_model[1]:
                self._forget(round_, "its round closed before this device saw an acknowledgement")
                continue
            log.debug("%s: resending the round %d update (not yet acknowledged)", self.device_id, round_)
            self.session.publish(self.topics.update(round_, self.device_id), blob, qos=1, wait=False)

    def _resync(self) -> None:
        """After resend_interval_s of silence: resend what is unacknowledged and ask the broker again for the
        round's retained result; with nothing unacknowledged, for its retained model and cohort notice (a
        flooded broker drops what it queued for a client, and nothing else would send it again)."""
        if self.finished.is_set():
            return
        if self._unacked:
            self._resend()
            self.session.resubscribe(self.topics.cohort(self.device_id))  # its acknowledgement comes there
        else:
            self.session.resubscribe(self.topics.model_step)
            # a lost step, or an aggregator resumed from its checkpoint (which keeps no step), leaves the
            # retained full model as the only way on: fetch it once, then drop it again (_full_model_wanted)
            self._need_full_model(self.latest_model[0] if self.latest_model is not None else 0)
            if self._full_model_subscribed:
                self.session.resubscribe(self.topics.all_models)
            else:
                self._subscribe_full_model(True)
            self.session.resubscribe(self.topics.cohort(self.device_id))

    def _on_round_result(self, round_: int, acks: frozenset[str]) -> None:
        blob = self._unacked.get(round_)
        if blob is None:
            return
        if ack_digest(blob) in acks:
            self.acknowledged.add(round_)
            self._forget(round_, None)
        else:
            self._forget(round_, "the round closed without it (late, or rejected: see the aggregator's log)")

    def _forget(self, round_: int, problem: str | None) -> None:
        if problem is not None:
            log.warning("%s: round %d update dropped from the outbox: %s", self.device_id, round_, problem)
        if self._unacked.pop(round_, None) is not None and self.outbox is not None:
            self.outbox.replace(self._unacked)

    def _load_outbox(self) -> None:
        """Updates a previous run of this device sent but saw no acknowledgement for: resent, not retrained."""
        if self.outbox is None:
            return
        for round_, blob in self.outbox.load().items():
            self._unacked[round_] = blob
            self.rounds_done.add(round_)


def _frozen(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Weights whose arrays cannot be written: the devices of a process share one copy."""
    for array in weights.values():
        array.setflags(write=False)
    return weights


def _read_only(decoded: tuple[dict[str, np.ndarray], WeightsMeta]) -> tuple[dict[str, np.ndarray], WeightsMeta]:
    """A decoded model, its arrays frozen (_frozen)."""
    return _frozen(decoded[0]), decoded[1]
