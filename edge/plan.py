"""The per-device plan the aggregator publishes (retained) on plan/<device>, as JSON, and the
local training settings it carries: one `TrainingSettings` value for edge, cloud and simulator."""

from __future__ import annotations

import functools
import json
import math
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any

DP_MODES = ("none", "local", "central")
UPDATE_BITS = (32, 8, 4, 2)  # float32, or unbiased stochastic quantisation (edge.stochastic_quantization)
_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {"int": int, "float": (int, float), "str": str}


def _check_types(owner: str, value: Any) -> None:
    """Raise ValueError naming the first field whose value is not of its declared int/float/str type."""
    for f in fields(value):
        expected = _FIELD_TYPES.get(str(f.type))
        got = getattr(value, f.name)
        if expected is not None and (not isinstance(got, expected) or isinstance(got, bool)):
            raise ValueError(f"{owner}: field {f.name!r} must be {f.type}, got {got!r}")


@dataclass(frozen=True)
class TrainingSettings:
    """Local distillation training and update clipping; the defaults here are the project's defaults.

    alpha weighs hard-target cross-entropy against the KL to the shard (tau: temperature); lr is the
    student program's SGD step; batch_size must equal the exported student program's fixed batch;
    clip is the L2 bound C on a device's update."""

    alpha: float = 0.7
    tau: float = 2.0
    lr: float = 0.1
    local_epochs: int = 3
    batch_size: int = 16
    clip: float = 1.0

    def __post_init__(self) -> None:
        _check_types("training settings", self)
        if not (0.0 <= self.alpha <= 1.0 and math.isfinite(self.alpha)):
            raise ValueError(f"alpha must be in [0, 1] (--alpha), got {self.alpha}")
        for name in ("tau", "lr", "clip"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number (--{name.replace('_', '-')}), got {value}")
        if self.local_epochs < 1 or self.batch_size < 1:
            raise ValueError(f"local_epochs and batch_size must be at least 1 (--local-epochs, --batch-size), "
                             f"got {self.local_epochs} and {self.batch_size}")

    def declaration(self) -> str:
        """These settings as the canonical JSON an update declares and the aggregator compares with its plan."""
        return _declaration(self)

    @classmethod
    def from_dict(cls, raw: Any) -> TrainingSettings:
        """Parse the plan's `training` object, naming unknown fields."""
        if not isinstance(raw, dict):
            raise ValueError(f"plan field 'training' must be an object of {[f.name for f in fields(cls)]}")
        unknown = sorted(set(raw) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"plan's training settings have unknown fields {unknown}; upgrade the device runtime")
        return cls(**raw)


@functools.lru_cache(maxsize=256)
def _declaration(settings: TrainingSettings) -> str:
    """TrainingSettings.declaration, made once per settings (a device declares the same ones every round)."""
    return json.dumps(asdict(settings), sort_keys=True)


def parse_label_fraction(value: Any) -> float:
    """The fraction of a device's samples that carry labels: "none" = 0, "all" = 1, 0.1, "10%"."""
    expected = 'expected "none", "all", a fraction in [0, 1] or a percentage such as "10%"'
    number = value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("none", "all"):
            return 0.0 if text == "none" else 1.0
        try:
            number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise ValueError(f"{expected}, got {value!r}") from None
    if isinstance(number, bool) or not isinstance(number, int | float) or not 0.0 <= number <= 1.0:
        raise ValueError(f"{expected}, got {value!r}")
    return float(number)


@dataclass(frozen=True)
class DevicePlan:
    """What a device runs: its shard, the student program, DP mode and noise, local training."""

    fleet: str
    device: str
    shard_id: str
    shard_hash: str
    student_hash: str
    rounds: int
    dp_mode: str = "none"
    noise_multiplier: float = 0.0
    training: TrainingSettings = TrainingSettings()
    labelled_fraction: float = 1.0  # at most this share of the local samples is trained on with its label
    max_examples: int = 100_000  # the most examples an update may claim: its FedAvg weight is capped here
    update_bits: int = 32  # bits per value of the update on the wire (UPDATE_BITS)
    model_bits: int = 32  # bits per value of the global model's downlink step (32: the full model every round)

    def __post_init__(self) -> None:
        _check_types(f"plan for {self.device}", self)
        if not isinstance(self.training, TrainingSettings):
            raise ValueError(f"plan for {self.device}: field 'training' must be TrainingSettings")
        if self.dp_mode not in DP_MODES:
            raise ValueError(f"plan for {self.device}: dp_mode {self.dp_mode!r} is not one of {DP_MODES}")
        if not 0.0 <= self.labelled_fraction <= 1.0:
            raise ValueError(f"plan for {self.device}: labelled_fraction must be in [0, 1], got "
                             f"{self.labelled_fraction}")
        for name in ("update_bits", "model_bits"):
            if getattr(self, name) not in UPDATE_BITS:
                raise ValueError(f"plan for {self.device}: {name} must be one of {UPDATE_BITS}, "
                                 f"got {getattr(self, name)}")
        if self.max_examples < 1:
            raise ValueError(f"plan for {self.device}: max_examples must be at least 1, got {self.max_examples}")
        if self.noise_multiplier < 0 or self.rounds < 1:
            raise ValueError(f"plan for {self.device}: need noise_multiplier >= 0 and rounds >= 1")

    @property
    def clip(self) -> float:
        """The L2 bound C the device clips its update to."""
        return self.training.clip

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode("utf-8")

    @classmethod
    def from_json(cls, payload: bytes) -> DevicePlan:
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
        if "training" in raw:
            try:
                raw = {**raw, "training": TrainingSettings.from_dict(raw["training"])}
            except (TypeError, ValueError) as exc:
                raise ValueError(f"plan for {raw.get('device', '?')}: {exc}") from exc
        missing = [f.name for f in fields(cls) if f.default is MISSING and f.name not in raw]
        if missing:
            raise ValueError(f"plan for {raw.get('device', '?')} is missing fields {missing}")
        return cls(**raw)
