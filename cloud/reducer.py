"""The coordinator of a sharded aggregator: the aggregator service, with its updates admitted by workers.

`ShardedAggregatorService` is `cloud.aggregator.AggregatorService` (plans, cohort notices, models, signed
results, checkpoints, the same closing rules) except that it does not read updates: it announces each round
to its workers and gateways (cloud/aggregator_worker.py) on the aggregator-only topics of
cloud/shard_protocol.py, grants each device's first claim of the round (the grants are the accepted
updates the quorum counts), and when the round closes it collects every worker's partial sum of its granted
updates, merges them (`PartialSum.merge`, exact for disjoint devices) and releases the round with
`cloud.strategy.finish` like the single aggregator. The release equals the single aggregator's: bit for bit in
central mode (int64 sums on the grid, seeded rounding keyed by device), within float64 summation-order
rounding (relative 1e-12 or so before the float32 cast) in `none` and `local` mode.

A worker that goes offline (its Last Will) has its grants of the open round withdrawn: those devices resend
until acknowledged and another worker admits them. When a worker holding grants is lost at the close
(offline, no partial within `partial_timeout_s`, or a partial refused as malformed), the other partials are
kept, its devices are withdrawn and the round reopens (the next epoch: workers open a fresh sum, the
coordinator grants only devices not yet summed) until the quorum is met again or the round's deadline has
passed; then it is released without them, and those devices, never acknowledged, train the next round.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np

from cloud.aggregator import AggregatorService
from cloud.aggregator_worker import AggregatorWorker, worker_will
from cloud.fleet_bundle import FleetBundle
from cloud.partial_sum_wire import MalformedPartial, WorkerPartial, decode_partial
from cloud.rejections import RejectionLog, RejectionReason
from cloud.round_closing import OFFLINE, ONLINE
from cloud.round_engine import OpenRound
from cloud.shard_protocol import Claim, ShardTopics, closed_notice, done_notice, grant_message, open_notice
from edge.broker_credentials import BrokerCredentials
from edge.mqtt_session import MqttSession

log = logging.getLogger("dmskd.aggregator.reducer")

PARTIAL_TIMEOUT_S = 30.0  # how long a closed round waits for the partial sum of a worker that holds grants


class ShardedAggregatorService(AggregatorService):
    """AggregatorService whose updates are admitted by workers and reduced here; see the module docstring."""

    partial_timeout_s = PARTIAL_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._holder: dict[str, str] = {}  # device -> worker whose claim of it this round was granted
        self._partials: dict[tuple[int, str], bytes] = {}
        self._offline_workers: set[str] = set()
        self.online_workers: set[str] = set()  # workers and gateways whose status says online
        self._reduce_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def _subscribe_updates(self) -> None:
        self.shard = ShardTopics(self.engine.config.fleet)
        self.session.subscribe(self.shard.all_claims, self._on_claim)
        self.session.subscribe(self.shard.all_partials, self._on_partial)
        self.session.subscribe(self.shard.all_worker_status, self._on_worker_status)

    def _announce_round(self, opened: OpenRound) -> None:
        """Announce an opening round to the workers before its model and notices go out: they must admit what its
        devices send."""
        with self._cond:
            self._holder = {}
        self.session.publish(self.shard.round_notice,
                             open_notice(opened.round, opened.base_version, opened.cohort), retain=True, wait=False)

    def run(self) -> list[dict]:
        """Run every round (AggregatorService.run), then tell the workers the schedule is over."""
        try:
            return super().run()
        finally:
            self.session.publish(self.shard.round_notice, done_notice(), retain=True, wait=False)

    def wait_for_workers(self, count: int, timeout_s: float = 60.0) -> None:
        """Return once `count` workers announced themselves online; ConnectionError names how many did not."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while len(self.online_workers) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ConnectionError(f"only {len(self.online_workers)} of {count} aggregator workers came online "
                                          f"within {timeout_s:.0f} s; see their log (python -m cloud aggregate-worker)")
                self._cond.wait(timeout=left)

    def _on_claim(self, topic: str, payload: bytes) -> None:
        worker = topic.rsplit("/", 1)[-1]
        try:
            claim = Claim.from_json(payload)
        except ValueError as exc:
            log.error("malformed claim from worker %s ignored: %s", worker, exc)
            return
        with self._cond:
            opened = self._open
            granted = opened is not None and claim.round_ == opened.round and worker not in self._offline_workers \
                and claim.device in opened.inbox.devices and claim.device not in opened.inbox.accepted
            if granted and opened is not None:
                opened.inbox.credit(claim.device, claim.examples, claim.digest)
                opened.last_accepted_at = time.monotonic()
                self._holder[claim.device] = worker
                self._cond.notify_all()
            elif opened is not None and claim.round_ == opened.round and \
                    opened.inbox.accepted_digests.get(claim.device, claim.digest) != claim.digest:
                opened.inbox.reject(claim.device, RejectionReason.REPLAY,
                                    f"second, different update from {claim.device} in round {claim.round_} (replay); "
                                    f"the first one counts")
        self.session.publish(self.shard.grant(worker), grant_message(claim.round_, claim.device, granted), wait=False)

    def _on_partial(self, topic: str, payload: bytes) -> None:
        parts = topic.split("/")
        try:
            key = (int(parts[-2]), parts[-1])
        except (IndexError, ValueError):
            return
        with self._cond:
            self._partials[key] = payload
            self._cond.notify_all()

    def _on_worker_status(self, topic: str, payload: bytes) -> None:
        worker = topic.rsplit("/", 1)[-1]
        with self._cond:
            if payload == OFFLINE:
                self._offline_workers.add(worker)
                self.online_workers.discard(worker)
                lost = [d for d, w in self._holder.items() if w == worker]
                if self._open is not None:
                    for device in lost:
                        self._open.inbox.withdraw(device)
                        del self._holder[device]
                    if lost:
                        log.warning("worker %s went offline holding %d updates of round %d: withdrawn, their "
                                    "devices resend to another worker", worker, len(lost), self._open.round)
            elif payload == ONLINE:
                self._offline_workers.discard(worker)
                self.online_workers.add(worker)
            self._cond.notify_all()

    def _wait_for_close(self, opened: OpenRound) -> str:
        """Close as the single aggregator would, then collect and merge the workers' partial sums; reopen the
        round (next epoch) while a worker holding grants was lost at the close and the deadline allows."""
        epoch = 0
        while True:
            reason = super()._wait_for_close(opened)
            with self._cond:
                by_worker: dict[str, list[str]] = {}
                for device, worker in self._holder.items():
                    by_worker.setdefault(worker, []).append(device)
            self.session.publish(self.shard.round_notice, closed_notice(opened.round, by_worker, epoch), retain=True,
                                 wait=False)
            received = self._collect(opened.round, set(by_worker))
            lost = set(by_worker) - self._reduce(opened, by_worker, received)
            if not lost or time.monotonic() - opened.opened_at >= self.policy.deadline_s:
                return reason
            epoch += 1
            log.warning("round %d reopens (epoch %d): workers %s were lost holding updates; their devices resend",
                        opened.round, epoch, sorted(lost))
            with self._cond:
                self._holder = {}
                self._open, opened.closed_by, opened.closed_at = opened, "", None
            self.session.publish(self.shard.round_notice,
                                 open_notice(opened.round, opened.base_version, opened.cohort, epoch), retain=True,
                                 wait=False)

    def _collect(self, round_: int, workers: set[str]) -> dict[str, bytes]:
        """Wait for the partial of every worker holding grants (not for one gone offline, nor past the timeout)."""
        deadline = time.monotonic() + self.partial_timeout_s
        with self._cond:
            while True:
                waiting = {w for w in workers if (round_, w) not in self._partials} - self._offline_workers
                left = deadline - time.monotonic()
                if not waiting or left <= 0:
                    break
                self._cond.wait(timeout=left)
            if waiting:
                log.error("round %d: no partial sum from workers %s within %.0f s; their updates are left out",
                          round_, sorted(waiting), self.partial_timeout_s)
            received = {w: blob for (r, w), blob in self._partials.items() if r == round_}
            self._partials = {k: v for k, v in self._partials.items() if k[0] > round_}
        return received

    def _reduce(self, opened: OpenRound, by_worker: dict[str, list[str]], received: dict[str, bytes]) -> set[str]:
        """Merge the received partials into the round's sum; credit only the devices a merged sum holds. Returns
        the workers whose partial was merged."""
        config, template = self.engine.config.aggregation, opened.inbox.template
        merged, merged_workers = opened.partial, set()
        for worker, blob in sorted(received.items()):
            granted = set(by_worker.get(worker, ()))
            try:
                item = decode_partial(blob, opened.round, config, template)
                if not item.partial.devices <= granted:
                    raise MalformedPartial(f"it sums {len(item.partial.devices - granted)} devices not granted to it")
            except MalformedPartial as exc:
                log.error("round %d: partial sum of worker %s refused: %s", opened.round, worker, exc)
                continue
            merged = merged.merge(item.partial)
            merged_workers.add(worker)
            _add_rejections(opened.inbox.rejected, item)
        opened.partial = merged
        for device in set(opened.inbox.accepted) - merged.devices:
            opened.inbox.withdraw(device)
        return merged_workers


def _add_rejections(into: RejectionLog, item: WorkerPartial) -> None:
    """Count a worker's rejections in the round's log (its sample too, while the log's sample has room)."""
    for reason, n in item.rejected.counts.items():
        into.counts[reason] = into.counts.get(reason, 0) + n
    room = into.sample_limit - len(into.sample)
    into.sample.extend(item.rejected.sample[:max(0, room)])


def start_local_workers(bundle: FleetBundle, host: str, port: int, credentials: BrokerCredentials, count: int,
                        seed: int | None = None) -> list[AggregatorWorker]:
    """`count` connected workers w0.. of `bundle`'s fleet in this process, each an MQTT client of its own; seed as
    the coordinator's (an int: seeded grid rounding, tests and simulations only)."""
    fleet, started = bundle.settings.fleet, []
    try:
        for i in range(count):
            session = MqttSession(f"{fleet}-aggregator-w{i}", host, port, bundle.settings.chunk_limit,
                                  will=worker_will(fleet, f"w{i}"),
                                  tls=credentials.tls, username=credentials.username, password=credentials.password)
            worker = AggregatorWorker.from_bundle(bundle, session, np.random.SeedSequence(seed), f"w{i}",
                                                  insecure_seeded_noise=seed is not None)
            session.connect()
            started.append(worker)
    except BaseException:
        for worker in started:
            worker.session.close()
        raise
    return started
