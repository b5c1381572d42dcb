"""When a round closes, and who it still waits for: pure values the aggregator consults as messages arrive.

A round closes as soon as one of these holds: a quorum of its cohort was accepted (a fraction,
default all of it), every cohort device still online has answered (with at least one update
accepted: a fleet gone offline waits for the deadline rather than burn its rounds on nothing), or
its deadline passed. Who is
online comes from the devices' retained status topic: `online` when a device connects, `offline`
when it stops or when the broker publishes its Last Will (a dropped TCP connection, or a missed
keepalive). A device never heard from (no status at all: it has not booted, or a broker without
persistence lost its status) is waited for `unheard_grace_s` into a round once some update was
accepted, then counted as gone (the aggregator waits that grace once per device, not every round);
with nothing accepted, a round waits for it until the deadline, so a fleet that boots after its
aggregator does not spend rounds (and, in central DP, privacy) on nothing.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field

ONLINE, OFFLINE = b"online", b"offline"


@dataclass(frozen=True)
class RoundPolicy:
    """quorum_fraction: the share of the cohort whose accepted updates close a round at once; deadline_s:
    the longest a round stays open when devices that look online do not answer; unheard_grace_s: how long
    a round with an accepted update waits for cohort devices never heard from."""

    quorum_fraction: float = 1.0
    deadline_s: float = 120.0
    unheard_grace_s: float = 15.0

    def __post_init__(self) -> None:
        if not (0 < self.quorum_fraction <= 1):
            raise ValueError(f"quorum fraction must be in (0, 1] (--quorum), got {self.quorum_fraction}")
        if not (self.deadline_s > 0 and math.isfinite(self.deadline_s)):
            raise ValueError(f"round deadline must be a positive number of seconds (--deadline), got {self.deadline_s}")

    def quorum(self, cohort_size: int) -> int:
        """Accepted updates that close a round of this cohort size (all of it at fraction 1)."""
        return min(cohort_size, math.ceil(self.quorum_fraction * cohort_size - 1e-9))


def close_reason(policy: RoundPolicy, cohort: Collection[str], accepted: Collection[str],
                 offline: Collection[str], elapsed_s: float, heard: Collection[str] | None = None) -> str | None:
    """Why the round may close now, or None while it should wait. heard: the devices that ever announced a
    status (None: treat every device as heard from)."""
    if len(accepted) >= policy.quorum(len(cohort)):
        return "quorum reached" if cohort else "empty cohort"
    if elapsed_s >= policy.deadline_s:
        return "deadline"
    if not accepted:
        return None  # a fleet that is offline or not yet up may come back: closing would burn the schedule
    if all(d in accepted or d in offline for d in cohort):
        return "every cohort device still online has answered"
    if heard is not None and elapsed_s >= policy.unheard_grace_s and all(
            d in accepted or d in offline or d not in heard for d in cohort):
        return "every cohort device still online has answered (the rest never connected)"
    return None


@dataclass
class DeviceLiveness:
    """The last status each device of the plan announced; names outside the plan are not stored."""

    devices: frozenset[str]
    offline: set[str] = field(default_factory=set)
    heard: set[str] = field(default_factory=set)  # every device that ever announced a status

    def observe(self, device: str, payload: bytes) -> bytes | None:
        """Record a status message: OFFLINE when a device went offline, ONLINE on every online announcement (a
        device that reconnects may need what a restarted broker lost), None for anything else."""
        if device not in self.devices or payload not in (ONLINE, OFFLINE):
            return None
        self.heard.add(device)
        was_offline = device in self.offline
        if payload == OFFLINE:
            self.offline.add(device)
            return None if was_offline else OFFLINE
        self.offline.discard(device)
        return ONLINE
