"""Admission control for one round's updates: pure checks, a reason for every rejection.

Each check raises `PayloadRejected` with its `cloud.rejections.RejectionReason` code; rejections go
into a `RejectionLog` (counts per reason, a bounded sanitised sample), never a list of what was sent."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from cloud.declared_settings import DeclaredSettings
from cloud.rejections import Rejection, RejectionLog, RejectionReason
from cloud.strategy import AcceptedUpdate, DpMode
from edge.privacy import global_l2_norm, local_release_norm_bound
from edge.stochastic_quantization import BITS_OF, QPARAMS, rounding_bound
from edge.update_quantization import decoded_delta
from edge.wire import FLOAT32_DELTA, PayloadRejected, check_against_template, decode_update

MAX_EXAMPLES = 10_000_000


@dataclass
class RoundInbox:
    """Collects the valid updates of round `round_` built on global version `base_version`.

    devices: who may send this round (the cohort); clip: the L2 bound every update must meet
    (None: unbounded, plain FedAvg); encodings: the update encodings this round accepts; declared:
    per cohort device, the declaration its plan requires (cloud.declared_settings); noise_multiplier
    and dimension: with `clip`, the norm bound of an honest `local`-mode release
    (edge.privacy.local_release_norm_bound); sink: where each accepted update goes (the round's
    cloud.partial_sum.PartialSum): the inbox keeps only who was accepted, with how many examples."""

    round_: int
    base_version: int
    fleet: str
    devices: frozenset[str]
    template: dict[str, tuple[int, ...]]
    dp_mode: DpMode
    clip: float | None
    encodings: tuple[str, ...] = (FLOAT32_DELTA,)
    declared: Mapping[str, DeclaredSettings] = field(default_factory=dict)
    noise_multiplier: float = 0.0
    dimension: int = 0
    sink: Callable[[AcceptedUpdate], None] | None = field(default=None, repr=False)
    accepted: dict[str, int] = field(default_factory=dict)  # device -> example count of its accepted update
    rejected: RejectionLog = field(default_factory=RejectionLog)
    _accepted_digests: dict[str, str] = field(default_factory=dict)

    @property
    def accepted_digests(self) -> dict[str, str]:
        """sha256 (hex) of each accepted device's update: what the round result acknowledges."""
        return dict(self._accepted_digests)

    def offer(self, topic_device: str, topic_round: int, blob: bytes) -> AcceptedUpdate | None:
        """Admit the update or record its rejection (`rejected.last`); returns the accepted update or None."""
        try:
            update = self._admit(topic_device, topic_round, blob)
        except PayloadRejected as exc:
            self.rejected.record(topic_device, RejectionReason.parse(exc.reason), str(exc))
            return None
        if update is None:
            return None
        if self.sink is not None:
            self.sink(update)
        self.accepted[update.device] = update.num_examples
        return update

    def credit(self, device: str, num_examples: int, digest: str) -> None:
        """Count an update admitted and summed elsewhere (a sharded aggregator's worker) as accepted here."""
        self.accepted[device] = num_examples
        self._accepted_digests[device] = digest

    def withdraw(self, device: str) -> None:
        """Forget a credited update whose sum was lost (its worker died): the device's resend may count again."""
        self.accepted.pop(device, None)
        self._accepted_digests.pop(device, None)

    def reject(self, device: str, reason: RejectionReason, detail: str = "") -> Rejection:
        """Record a rejection found before decoding (e.g. a chunk that failed its hash); returns its record."""
        return self.rejected.record(device, reason, detail)

    def _admit(self, topic_device: str, topic_round: int, blob: bytes) -> AcceptedUpdate | None:
        if topic_device not in self.devices:
            raise PayloadRejected(f"unknown device {topic_device!r} for round {self.round_}: not in its cohort "
                                  f"(not sampled this round, or not in the fleet's plan)",
                                  RejectionReason.NOT_IN_COHORT)
        if topic_round != self.round_:
            raise PayloadRejected(f"stale or early update for round {topic_round}; round {self.round_} is open",
                                  RejectionReason.WRONG_ROUND)
        digest = hashlib.sha256(blob).hexdigest()
        if topic_device in self.accepted and self._accepted_digests.get(topic_device) == digest:
            return None  # an idempotent resend, known by its bytes before the cost of decoding it again
        wire_tensors, meta = decode_update(blob, self.encodings)
        if meta.device != topic_device:
            raise PayloadRejected(f"metadata names device {meta.device!r} but it arrived on {topic_device!r}'s topic",
                                  RejectionReason.WRONG_DEVICE)
        if meta.fleet != self.fleet:
            raise PayloadRejected(f"update for fleet {meta.fleet!r}, this is {self.fleet!r}",
                                  RejectionReason.WRONG_FLEET)
        if meta.round != self.round_:
            raise PayloadRejected(f"update built for round {meta.round}; round {self.round_} is open",
                                  RejectionReason.WRONG_ROUND)
        if meta.base_version != self.base_version:
            raise PayloadRejected(f"update built on version {meta.base_version}; round {self.round_} trains "
                                  f"version {self.base_version}", RejectionReason.WRONG_VERSION)
        declared = self.declared.get(meta.device)
        mismatch = declared.mismatch(meta) if declared is not None else None
        if mismatch is not None:
            raise PayloadRejected(f"update from {meta.device} {mismatch}", RejectionReason.DECLARATION_MISMATCH)
        tensors = decoded_delta(wire_tensors, meta.encoding, self.template)
        check_against_template(tensors, self.template)
        cap = MAX_EXAMPLES if declared is None or declared.max_examples is None else min(declared.max_examples,
                                                                                         MAX_EXAMPLES)
        if not 0 < meta.num_examples <= cap:
            whose = "its plan's cap" if cap < MAX_EXAMPLES else "the aggregator's cap"
            raise PayloadRejected(f"example count {meta.num_examples} outside 1..{cap} ({whose})",
                                  RejectionReason.EXAMPLE_COUNT)
        if meta.device in self.accepted:
            if self._accepted_digests.get(meta.device) == digest:
                return None  # idempotent resend of the update already counted
            raise PayloadRejected(f"second, different update from {meta.device} in round {self.round_} (replay); "
                                  f"the first one counts", RejectionReason.REPLAY)
        self._check_norm(tensors, (wire_tensors, BITS_OF[meta.encoding]) if meta.encoding in BITS_OF else None)
        self._accepted_digests[meta.device] = digest
        return AcceptedUpdate(meta.device, tensors, meta.num_examples)

    def _check_norm(self, tensors: dict, quantized: tuple[dict[str, np.ndarray], int] | None = None) -> None:
        """Clipped modes: norm <= C; `local`: within what C plus the declared noise allows. A b-bit update
        (quantized: its wire tensors and b) may exceed that by its stochastic rounding, sqrt(sum n_t s_t^2),
        with scales no larger than a bounded update can need (2 B / (2^b - 1)); in `central` mode the
        aggregator clips it to C again before the noised sum, so the sensitivity stays C."""
        if self.clip is None:
            return
        norm = global_l2_norm(tensors)
        local = self.dp_mode is DpMode.LOCAL and self.noise_multiplier > 0
        if local:
            dimension = self.dimension or sum(math.prod(shape) for shape in self.template.values())
            bound = local_release_norm_bound(self.clip, self.noise_multiplier, dimension)
        else:
            bound = self.clip * (1 + 1e-3)
        slack = 0.0
        if quantized is not None:
            wire, bits = quantized
            largest = float(np.max(wire[QPARAMS][:, 0])) if len(wire[QPARAMS]) else 0.0
            if largest > 2 * bound / ((1 << bits) - 1):
                raise PayloadRejected(f"quantisation scale {largest:.4g} exceeds {2 * bound / ((1 << bits) - 1):.4g}, "
                                      f"the most an update within norm {bound:.4g} needs at {bits} bits",
                                      RejectionReason.NORM_BOUND)
            slack = rounding_bound(wire, self.template)
        if norm > bound + slack:
            extra = f" plus {slack:.4f} of rounding" if slack else ""
            what = (f"exceeds {bound:.2f}, the most that clip {self.clip} plus noise z = {self.noise_multiplier} "
                    f"allows (edge.privacy.local_release_norm_bound){extra}") if local else \
                f"exceeds the clip norm {self.clip}{extra}; clip on device"
            raise PayloadRejected(f"update norm {norm:.4f} {what}", RejectionReason.NORM_BOUND)
