"""Rejected updates as bounded, sanitised records: a fixed reason vocabulary, counts, and a small sample.

Everything a rejection carries besides its reason is chosen by whoever sent the bytes: the device
name comes from the MQTT topic, the detail quotes metadata. A `RejectionLog` therefore keeps a count
per `RejectionReason` (unbounded counts, bounded memory) and only the first `sample_limit` records,
each with its device name and detail truncated and escaped (`sanitise`), so no flood reaches the round
record, the checkpoint (`RoundRecord.to_dict`, rewritten every round) or a log line with more than a
few kilobytes, and no newline or control character from a stranger reaches a log line at all.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple

MAX_DEVICE_CHARS = 64
MAX_DETAIL_CHARS = 200
SAMPLE_LIMIT = 32
MARKER_CHARS = 24  # the most that sanitise's "...[+N chars]" adds
_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


class RejectionReason(enum.StrEnum):
    """Why an update (or a chunk of one) was refused: the only reasons a record, count or log line names."""

    NOT_IN_COHORT = "not_in_cohort"  # the topic's device is not in this round's cohort (unknown, or not sampled)
    WRONG_ROUND = "wrong_round"  # topic or metadata names another round than the open one (stale or early)
    WRONG_VERSION = "wrong_version"  # built on another global version than the round trains
    MALFORMED_PAYLOAD = "malformed_payload"  # undecodable (edge.wire): framing, header, dtype, NaN, checksum, metadata
    WRONG_ENCODING = "wrong_encoding"  # an update encoding this aggregator does not accept
    WRONG_DEVICE = "wrong_device"  # metadata names another device than the topic it arrived on
    WRONG_FLEET = "wrong_fleet"  # metadata names another fleet
    DECLARATION_MISMATCH = "declaration_mismatch"  # declared DP mode, clip, noise, encoding or training not the plan's
    WRONG_SHAPE = "wrong_shape"  # tensor names or shapes differ from the global student's
    EXAMPLE_COUNT = "example_count"  # example count outside 1..MAX_EXAMPLES (FedAvg weight out of range)
    NORM_BOUND = "norm_bound"  # L2 norm above the clip (or above what clip plus declared local noise allows)
    REPLAY = "replay"  # a second, different update from a device already accepted this round
    CHUNK_REJECTED = "chunk_rejected"  # a chunk of the update failed reassembly (hash, framing, size) before decoding
    BETWEEN_ROUNDS = "between_rounds"  # arrived while no round was open (logged only: there is no inbox to count it)

    @classmethod
    def parse(cls, code: str) -> RejectionReason:
        """The reason named by `code`; an unknown code (a decoder newer than this vocabulary) is malformed."""
        try:
            return cls(code)
        except ValueError:
            return cls.MALFORMED_PAYLOAD


def sanitise(text: object, limit: int) -> str:
    """`text` printable on one log line: printable ASCII kept (backslash doubled), everything else
    escaped (\\n, \\xNN, \\uNNNN), cut after `limit` output characters with a marker of how many input
    characters were dropped. The result is at most `limit` + MARKER_CHARS characters, whatever `text` was."""
    text = text if isinstance(text, str) else repr(text)
    out: list[str] = []
    used = 0
    for i, char in enumerate(text):
        piece = _escape(char)
        if used + len(piece) > limit:
            return "".join(out) + f"...[+{len(text) - i} chars]"
        out.append(piece)
        used += len(piece)
    return "".join(out)


def _escape(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    code = ord(char)
    if 0x20 <= code < 0x7F:
        return char
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def sanitise_device(device: object) -> str:
    """A device name as it may appear in a record or log line (at most MAX_DEVICE_CHARS + marker)."""
    return sanitise(device, MAX_DEVICE_CHARS)


def sanitise_detail(detail: object) -> str:
    """A rejection's free-text detail as it may appear in a record or log line."""
    return sanitise(detail, MAX_DETAIL_CHARS)


class Rejection(NamedTuple):
    """One sanitised rejection record."""

    device: str
    reason: RejectionReason
    detail: str

    @classmethod
    def of(cls, device: object, reason: RejectionReason, detail: object = "") -> Rejection:
        """The record of a rejection, its strings sanitised."""
        return cls(sanitise_device(device), RejectionReason(reason), sanitise_detail(detail))


@dataclass
class RejectionLog:
    """Rejections of one round: a count per reason, and the first `sample_limit` records, sanitised.

    Memory is bounded by the vocabulary and the sample, whatever arrives; `len()` is the total count.
    `last` is the most recent record (for the log line of the rejection just made); it is not stored."""

    counts: dict[RejectionReason, int] = field(default_factory=dict)
    sample: list[Rejection] = field(default_factory=list)
    sample_limit: int = SAMPLE_LIMIT
    last: Rejection | None = field(default=None, compare=False, repr=False)

    def record(self, device: object, reason: RejectionReason, detail: object = "") -> Rejection:
        """Count a rejection and keep its sanitised record if the sample has room; returns the record."""
        entry = Rejection.of(device, reason, detail)
        self.counts[entry.reason] = self.counts.get(entry.reason, 0) + 1
        if len(self.sample) < self.sample_limit:
            self.sample.append(entry)
        self.last = entry
        return entry

    @property
    def total(self) -> int:
        """How many rejections were recorded (sampled or not)."""
        return sum(self.counts.values())

    def __len__(self) -> int:
        return self.total

    def count(self, reason: RejectionReason) -> int:
        """How many rejections had `reason`."""
        return self.counts.get(reason, 0)

    def breakdown(self) -> str:
        """The counts as one short line, such as "not_in_cohort 9990, malformed_payload 10" ("" if none)."""
        return ", ".join(f"{r.value} {self.counts[r]}" for r in RejectionReason if self.counts.get(r))

    def copy(self) -> RejectionLog:
        """An independent log with the same counts and sample (the round record's, not the inbox's)."""
        return RejectionLog(dict(self.counts), list(self.sample), self.sample_limit, self.last)

    def to_json(self) -> dict:
        """{"total", "counts" (per reason in vocabulary order, no zeros), "sample" ([device, reason, detail])}."""
        counts = {r.value: self.counts[r] for r in RejectionReason if self.counts.get(r)}
        return {"total": self.total, "counts": counts,
                "sample": [[r.device, r.reason.value, r.detail] for r in self.sample]}

    @classmethod
    def from_json(cls, raw: object, sample_limit: int = SAMPLE_LIMIT) -> RejectionLog:
        """Inverse of to_json; the sample is sanitised and bounded again (a checkpoint is input too).
        ValueError names what is malformed or an unknown reason."""
        if not isinstance(raw, dict) or not isinstance(raw.get("counts"), dict) or not isinstance(
                raw.get("sample"), list):
            raise ValueError("rejections must be an object with 'counts' and 'sample'")
        counts: dict[RejectionReason, int] = {}
        for code, n in raw["counts"].items():
            reason = _known_reason(code)
            if not isinstance(n, int) or n < 0:
                raise ValueError(f"rejection count for {reason.value} must be a non-negative integer, got {n!r}")
            counts[reason] = n
        log = cls(counts, [], sample_limit)
        for entry in raw["sample"][:sample_limit]:
            if not isinstance(entry, list) or len(entry) != 3:
                raise ValueError(f"rejection sample entries must be [device, reason, detail], got {entry!r:.80}")
            device, detail = _stored(entry[0], MAX_DEVICE_CHARS), _stored(entry[2], MAX_DETAIL_CHARS)
            log.sample.append(Rejection(device, _known_reason(entry[1]), detail))
        return log


def _stored(text: object, limit: int) -> str:
    """A stored string as it was if sanitise could have made it (so loading is the identity), else sanitised."""
    if isinstance(text, str) and len(text) <= limit + MARKER_CHARS and all(0x20 <= ord(c) < 0x7F for c in text):
        return text
    return sanitise(text, limit)


def _known_reason(code: object) -> RejectionReason:
    try:
        return RejectionReason(code if isinstance(code, str) else repr(code))
    except ValueError:
        raise ValueError(f"unknown rejection reason {sanitise(code, 40)!r}; known: "
                         f"{', '.join(r.value for r in RejectionReason)}") from None


def rejected_total(entry: dict) -> int:
    """How many updates a round's history entry (RoundRecord.to_dict) rejected; also reads the older
    form that listed every [device, reason] pair."""
    raw = entry.get("rejected")
    if isinstance(raw, dict):
        return int(raw.get("total", sum(raw.get("counts", {}).values())))
    return len(raw) if isinstance(raw, list) else 0
