"""Admission control for one round's updates: pure checks, a reason for every rejection."""

from __future__ import annotations

from dataclasses import dataclass, field

from cloud.strategy import AcceptedUpdate, DpMode
from edge.privacy import global_l2_norm
from edge.update_quantization import decoded_delta
from edge.wire import FLOAT32_DELTA, PayloadRejected, check_against_template, decode_update

MAX_EXAMPLES = 10_000_000


@dataclass
class RoundInbox:
    """Collects the valid updates of round `round_` built on global version `base_version`.

    devices: who may send this round (the cohort); clip: the L2 bound every update must meet
    (None: unbounded, plain FedAvg); encodings: the update encodings this round accepts."""

    round_: int
    base_version: int
    fleet: str
    devices: frozenset[str]
    template: dict[str, tuple[int, ...]]
    dp_mode: DpMode
    clip: float | None
    encodings: tuple[str, ...] = (FLOAT32_DELTA,)
    accepted: dict[str, AcceptedUpdate] = field(default_factory=dict)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    _seen_ids: set[tuple[str, str]] = field(default_factory=set)

    def offer(self, topic_device: str, topic_round: int, blob: bytes) -> AcceptedUpdate | None:
        """Admit the update or record (device, reason); returns the accepted update or None."""
        try:
            update = self._admit(topic_device, topic_round, blob)
        except PayloadRejected as exc:
            self.rejected.append((topic_device, str(exc)))
            return None
        if update is None:
            return None
        self.accepted[update.device] = update
        return update

    def reject(self, device: str, reason: str) -> None:
        """Record a rejection found before decoding (e.g. a chunk that failed its hash)."""
        self.rejected.append((device, reason))

    def _admit(self, topic_device: str, topic_round: int, blob: bytes) -> AcceptedUpdate | None:
        if topic_device not in self.devices:
            raise PayloadRejected(f"unknown device {topic_device!r}: not in this round's cohort of the fleet's plan")
        if topic_round != self.round_:
            raise PayloadRejected(f"stale or early update for round {topic_round}; round {self.round_} is open")
        wire_tensors, meta = decode_update(blob, self.encodings)
        if meta.device != topic_device:
            raise PayloadRejected(f"metadata names device {meta.device!r} but it arrived on {topic_device!r}'s topic")
        if meta.fleet != self.fleet:
            raise PayloadRejected(f"update for fleet {meta.fleet!r}, this is {self.fleet!r}")
        if meta.round != self.round_ or meta.base_version != self.base_version:
            raise PayloadRejected(f"update built for round {meta.round} on version {meta.base_version}; "
                                  f"round {self.round_} trains version {self.base_version}")
        tensors = decoded_delta(wire_tensors, meta.encoding)
        check_against_template(tensors, self.template)
        if not 0 < meta.num_examples <= MAX_EXAMPLES:
            raise PayloadRejected(f"example count {meta.num_examples} outside 1..{MAX_EXAMPLES}")
        if (meta.device, meta.update_id) in self._seen_ids:
            return None  # idempotent resend of an update already counted
        if meta.device in self.accepted:
            raise PayloadRejected(f"second, different update from {meta.device} in round {self.round_} (replay)")
        if self.clip is not None and self.dp_mode is not DpMode.LOCAL:
            norm = global_l2_norm(tensors)
            if norm > self.clip * (1 + 1e-3):
                raise PayloadRejected(f"update norm {norm:.4f} exceeds the clip norm {self.clip}; clip on device")
        self._seen_ids.add((meta.device, meta.update_id))
        return AcceptedUpdate(meta.device, tensors, meta.num_examples)
