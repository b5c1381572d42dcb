"""An aggregator worker (or a gateway): admits a share of the fleet's updates into its own partial sum.

Workers of a sharded aggregator subscribe `$share/<fleet>-aggregators/dmskd/<fleet>/round/+/update/+`, so the
broker hands each update message to one of them (an update must fit one chunk: the chunks of a longer message
would be spread over workers; `check_one_chunk` refuses to start otherwise). A gateway of data concentrators
is the same worker with `meters`: it subscribes (unshared) to those meters' update topics only, and its sum
goes upstream to the coordinator like any worker's.

Per round (protocol: cloud/shard_protocol.py) the worker opens the inbox the round engine opens for the
announced round, version and cohort (`RoundEngine.open_inbox`: the same admission rules, the same seeded
grid rounding keyed by device), claims each admitted update from the coordinator and folds it into its sum
only when granted; when the round closes it folds any granted update whose grant it had not yet read,
and publishes the sum of exactly its granted updates (cloud/partial_sum_wire.py).

Privacy: in central mode a worker or gateway sees the clipped updates in the clear, as the single aggregator
does: it is trusted like the aggregator and runs in its trust domain. In local mode each update is already
a private release and any sum of them is post-processing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

import numpy as np

from cloud.aggregator import update_sender_stream
from cloud.fleet_bundle import FleetBundle, engine_config
from cloud.partial_sum import PartialSum
from cloud.partial_sum_wire import WorkerPartial, encode_partial
from cloud.rejections import RejectionReason
from cloud.round_closing import OFFLINE, ONLINE
from cloud.round_engine import RoundEngine, RoundState
from cloud.round_inbox import RoundInbox
from cloud.shard_protocol import CLOSED, DONE, OPEN, Claim, ShardTopics, parse_json
from cloud.strategy import AcceptedUpdate
from edge.log_rate import worth_logging
from edge.mqtt_session import MqttSession
from edge.topics import FleetTopics
from edge.wire import UpdateMeta, encode_update

log = logging.getLogger("dmskd.aggregator.worker")


class _WorkerRound:
    """One round's admission state in a worker: the inbox, the sum, updates admitted but not yet granted."""

    def __init__(self, round_: int, epoch: int, inbox: RoundInbox, partial: PartialSum) -> None:
        self.round_, self.epoch, self.inbox, self.partial = round_, epoch, inbox, partial
        self.fold: Callable[[AcceptedUpdate], None] = inbox.sink or (lambda u: None)
        self.pending: dict[str, AcceptedUpdate] = {}
        self.digests: dict[str, str] = {}  # device -> digest of its update folded into `partial`
        inbox.sink = self._hold

    def _hold(self, update: AcceptedUpdate) -> None:
        self.pending[update.device] = update

    def grant(self, device: str) -> None:
        update = self.pending.pop(device, None)
        if update is not None:
            self.fold(update)
            self.digests[device] = self.inbox.accepted_digests[device]

    def deny(self, device: str) -> None:
        """Another worker holds it: forget it here, so a resend after that worker's death is admitted again."""
        if self.pending.pop(device, None) is not None:
            self.inbox.withdraw(device)


class AggregatorWorker:
    """Admits updates for the rounds its coordinator announces; see the module docstring."""

    def __init__(self, session: MqttSession, engine: RoundEngine, initial_weights: dict[str, np.ndarray],
                 seed: np.random.SeedSequence, worker_id: str, meters: Iterable[str] | None = None) -> None:
        self.session, self.engine, self.worker_id = session, engine, worker_id
        self.seed = seed
        self.weights = {k: np.asarray(v, np.float32) for k, v in initial_weights.items()}
        fleet = engine.config.fleet
        self.topics, self.shard = FleetTopics(fleet), ShardTopics(fleet)
        self.meters = None if meters is None else frozenset(meters)
        self.finished = threading.Event()
        self.admitted = 0  # updates this worker admitted and claimed (granted or not), over the run
        self.partials_sent = 0
        self._lock = threading.Lock()
        self._round: _WorkerRound | None = None
        self._closed: tuple[int, int] = (-1, 0)  # (round, epoch) of the last sum sent
        self._served = False  # whether a round was opened here: a retained `done` of an earlier run is ignored
        session.stream_of = update_sender_stream
        if self.meters is None:
            session.subscribe(self.shard.shared_updates(self.topics.all_updates), self._on_update)
        else:
            for meter in sorted(self.meters):
                session.subscribe(f"{self.topics.root}/round/+/update/{meter}", self._on_update)
        session.subscribe(self.shard.round_notice, self._on_notice)
        session.subscribe(self.shard.grant(worker_id), self._on_grant)
        session.on_connect(self._announce)
        session.on_error(self._on_chunk_error)

    @classmethod
    def from_bundle(cls, bundle: FleetBundle, session: MqttSession, seed: np.random.SeedSequence, worker_id: str,
                    insecure_seeded_noise: bool = False, meters: Iterable[str] | None = None) -> AggregatorWorker:
        """The worker (gateway, with meters) of a bundle's fleet; seed: the server's SeedSequence, as its
        coordinator's (it keys the seeded grid rounding only with insecure_seeded_noise)."""
        engine = RoundEngine(engine_config(bundle, insecure_seeded_noise))
        check_one_chunk(engine, bundle.initial_weights, session.chunk_limit)
        return cls(session, engine, bundle.initial_weights, seed, worker_id, meters)

    def _announce(self, reconnected: bool) -> None:
        """Retain `online` on this worker's status topic (its Last Will, `worker_will`, says `offline`)."""
        self.session.publish(self.shard.worker_status(self.worker_id), ONLINE, retain=True, wait=False)

    def _on_notice(self, topic: str, payload: bytes) -> None:
        try:
            notice = parse_json(payload, "round notice")
            state = notice.get("state")
            with self._lock:
                if state == OPEN:
                    self._open(int(notice["round"]), int(notice.get("epoch", 0)), int(notice["version"]),
                               tuple(notice["cohort"]))
                elif state == CLOSED:
                    self._close(int(notice["round"]), int(notice.get("epoch", 0)),
                                notice["granted"].get(self.worker_id, []))
                elif state == DONE and self._served:  # not a previous run's notice, still retained
                    self.finished.set()
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.error("%s: malformed round notice ignored: %s", self.worker_id, exc)

    def _open(self, round_: int, epoch: int, version: int, cohort: tuple[str, ...]) -> None:
        current = None if self._round is None else (self._round.round_, self._round.epoch)
        if (round_, epoch) <= self._closed or current == (round_, epoch):
            return  # a retained notice read again on reconnect
        if self.meters is not None:
            cohort = tuple(d for d in cohort if d in self.meters)
        state = RoundState(round_, version, self.weights, self.seed)
        self._round = _WorkerRound(round_, epoch, *self.engine.open_inbox(state, cohort))
        self._served = True

    def _close(self, round_: int, epoch: int, granted: list[str]) -> None:
        current = self._round
        if current is None or (current.round_, current.epoch) != (round_, epoch):
            if granted:
                log.error("%s: round %d closed with %d updates granted to this worker, which holds no state of it "
                          "(restarted mid-round): they are lost for this round", self.worker_id, round_, len(granted))
            return
        for device in granted:
            current.grant(device)  # a grant the notice overtook
        missing = set(granted) - set(current.digests)
        if missing:
            log.error("%s: round %d: %d granted updates are not held here; the sum goes without them",
                      self.worker_id, round_, len(missing))
        item = WorkerPartial(self.worker_id, round_, current.partial, current.digests, current.inbox.rejected)
        self.session.publish(self.shard.partial(round_, self.worker_id), encode_partial(item), wait=False)
        self.partials_sent += 1
        self._round, self._closed = None, (round_, epoch)

    def _on_update(self, topic: str, payload: bytes) -> None:
        parts = topic.split("/")
        try:
            device, round_ = parts[-1], int(parts[-3])
        except (IndexError, ValueError):
            return
        with self._lock:
            current = self._round
            if current is None or round_ != current.round_:
                return  # a resend for a closed round, or one the notice has not opened here yet: it is resent
            accepted = current.inbox.offer(device, round_, payload)
            if accepted is None:
                rejection = current.inbox.rejected.last
                if rejection is not None and worth_logging(current.inbox.rejected.count(rejection.reason)):
                    log.warning("%s: round %d: rejected update from %s: %s", self.worker_id, round_,
                                rejection.device, rejection.reason.value)
                current.inbox.rejected.last = None
                return
            self.admitted += 1
            claim = Claim(round_, device, current.inbox.accepted_digests[device], accepted.num_examples)
        self.session.publish(self.shard.claim(self.worker_id), claim.to_json(), wait=False)

    def _on_chunk_error(self, topic: str, reason: str) -> None:
        """A chunk of an update that failed reassembly counts as a rejection of the open round (as upstream)."""
        if "/update/" not in topic:
            return
        with self._lock:
            if self._round is not None:
                self._round.inbox.reject(topic.rsplit("/", 1)[-1], RejectionReason.CHUNK_REJECTED, reason)

    def _on_grant(self, topic: str, payload: bytes) -> None:
        try:
            answer = parse_json(payload, "grant")
            round_, device, granted = int(answer["round"]), str(answer["device"]), bool(answer["granted"])
        except (ValueError, KeyError, TypeError) as exc:
            log.error("%s: malformed grant ignored: %s", self.worker_id, exc)
            return
        with self._lock:
            current = self._round
            if current is None or current.round_ != round_:
                return
            if granted:
                current.grant(device)
            else:
                current.deny(device)


def check_one_chunk(engine: RoundEngine, weights: dict[str, np.ndarray], chunk_limit: int) -> None:
    """Refuse a sharded run whose float32 updates would span chunks (a shared subscription spreads chunks)."""
    zeros = {k: np.zeros(np.shape(v), np.float32) for k, v in weights.items()}
    meta = UpdateMeta(engine.config.fleet, "d" * 64, 0, 0, 1, 1.0, 0.0, "none")
    size = len(encode_update(zeros, meta))
    if size > chunk_limit - 512:
        raise ValueError(f"an update of this student takes {size} bytes, more than one chunk of {chunk_limit}: "
                         f"sharded workers need each update in one MQTT message; raise the chunk limit "
                         f"(--chunk-limit) or run one aggregator")


def worker_will(fleet: str, worker_id: str) -> tuple[str, bytes]:
    """The Last Will a worker's session is created with: the coordinator withdraws a dead worker's grants."""
    return ShardTopics(fleet).worker_status(worker_id), OFFLINE
