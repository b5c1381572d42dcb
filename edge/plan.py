"""The per-device plan the aggregator publishes (retained) on plan/<device>, as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

DP_MODES = ("none", "local", "central")


@dataclass(frozen=True)
class DevicePlan:
    """What a device runs: its shard, the student program, DP settings and local training."""

    fleet: str
    device: str
    shard_id: str
    shard_hash: str
    student_hash: str
    rounds: int
    dp_mode: str = "none"
    clip: float = 1.0
    noise_multiplier: float = 0.0
    local_epochs: int = 2
    alpha: float = 0.7
    tau: float = 2.0
    lr: float = 0.05

    def __post_init__(self) -> None:
        for f in fields(self):
            expected = {"int": int, "float": (int, float), "str": str}[str(f.type)]
            value = getattr(self, f.name)
            if not isinstance(value, expected) or isinstance(value, bool):
                raise ValueError(f"plan for {self.device}: field {f.name!r} must be {f.type}, got {value!r}")
        if self.dp_mode not in DP_MODES:
            raise ValueError(f"plan for {self.device}: dp_mode {self.dp_mode!r} is not one of {DP_MODES}")
        if self.clip <= 0 or self.noise_multiplier < 0 or self.local_epochs < 1 or self.rounds < 1:
            raise ValueError(f"plan for {self.device}: clip must be > 0, noise >= 0, epochs and rounds >= 1")
        if not 0.0 <= self.alpha <= 1.0 or self.tau <= 0 or self.lr <= 0:
            raise ValueError(f"plan for {self.device}: need 0 <= alpha <= 1, tau > 0, lr > 0")

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode("utf-8")

    @classmethod
    def from_json(cls, payload: bytes) -> "DevicePlan":
        """Parse a plan, naming the missing or unknown field on error."""
        try:
            raw = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"plan payload is not JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise ValueError(f"plan payload must be a JSON object of plan fields, got {type(raw).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"plan has unknown fields {unknown}; upgrade the device runtime")
        try:
            return cls(**raw)
        except TypeError as exc:
            raise ValueError(f"plan is missing fields: {exc}") from exc
