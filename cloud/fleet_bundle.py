"""What the aggregator publishes, on disk: plans, shards, student program, initial weights, round settings.

Layout (written by `python -m simulator prepare --out DIR`, read by `python -m cloud aggregate`):
  bundle.json                 fleet, rounds, DP mode, clip, noise multiplier, delta, epsilon budget, quorum,
                              deadline
  plans.json                  one DevicePlan per device
  student.tflite              the trainable student program
  student_init.safetensors    the global student's initial weights
  shards/<shard_id>.tflite    every planned int8 shard
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from cloud.checkpoint import read_weights
from cloud.declared_settings import DeclaredSettings
from cloud.round_engine import EngineConfig
from cloud.strategy import DpMode, FedAvgConfig
from edge.chunking import DEFAULT_CHUNK_LIMIT, MIN_FLEET_CHUNK_LIMIT
from edge.cli import NAME_PATTERN
from edge.plan import DP_MODES, DevicePlan
from edge.stochastic_quantization import encoding_for_bits


@dataclass(frozen=True)
class RoundSettings:
    """The run-level settings the aggregator enforces."""

    fleet: str
    rounds: int
    dp_mode: str
    clip: float
    noise_multiplier: float
    delta: float
    max_epsilon: float | None
    deadline_s: float
    sampling_rate: float = 1.0  # q: each round's cohort is a Poisson sample of the fleet at this rate
    quorum_fraction: float = 1.0  # the share of a round's cohort whose accepted updates close it (cloud.round_closing)
    model_bits: int = 32  # the global model goes down as a step of this width (edge.model_step); 32: whole
    chunk_limit: int = DEFAULT_CHUNK_LIMIT  # the largest MQTT message the aggregator publishes: an mcu fleet's
    #                                         network buffer (firmware DMSKD_MAX_CHUNK_BYTES, e.g. 4096)


@dataclass
class FleetBundle:
    """Everything one aggregator run needs, as values."""

    settings: RoundSettings
    plans: list[DevicePlan]
    student_program: bytes
    initial_weights: dict[str, np.ndarray]
    shards: dict[str, bytes]


def engine_config(bundle: FleetBundle, insecure_seeded_noise: bool = False) -> EngineConfig:
    """The engine a bundle describes (DP mode, clip, noise, epsilon budget); seeded noise only if asked."""
    st = bundle.settings
    mode = DpMode.parse(st.dp_mode)
    return EngineConfig(st.fleet, tuple(p.device for p in bundle.plans), st.rounds,
                        FedAvgConfig(mode, st.clip, st.noise_multiplier if mode is not DpMode.NONE else 0.0),
                        st.delta, st.max_epsilon, insecure_seeded_noise=insecure_seeded_noise,
                        sampling_rate=st.sampling_rate, model_bits=st.model_bits,
                        encodings=tuple(sorted({encoding_for_bits(p.update_bits) for p in bundle.plans})),
                        declared={p.device: DeclaredSettings.from_plan(p) for p in bundle.plans})


def save_bundle(directory: str | Path, bundle: FleetBundle) -> Path:
    d = Path(directory)
    (d / "shards").mkdir(parents=True, exist_ok=True)
    (d / "bundle.json").write_text(json.dumps(asdict(bundle.settings), indent=2))
    (d / "plans.json").write_text(json.dumps([json.loads(p.to_json()) for p in bundle.plans], indent=2))
    (d / "student.tflite").write_bytes(bundle.student_program)
    save_file(bundle.initial_weights, str(d / "student_init.safetensors"))
    for sid, blob in bundle.shards.items():
        (d / "shards" / f"{sid}.tflite").write_bytes(blob)
    return d


def load_bundle(directory: str | Path) -> FleetBundle:
    """Read a bundle, checked: FileNotFoundError names a missing file and the command that makes one;
    BundleError (a ValueError) names the file, the field and what it must be."""
    d = _bundle_dir(directory)
    for name in BUNDLE_FILES:
        if not (d / name).exists():
            raise FileNotFoundError(f"{d / name} missing; create a bundle with "
                                    "`python -m simulator prepare --out DIR` (it writes DIR/bundle)")
    settings, plans = load_plans(d)
    shards = {}
    for sid in sorted({p.shard_id for p in plans}):
        path = d / "shards" / f"{sid}.tflite"
        if not path.exists():
            raise FileNotFoundError(f"plan names shard {sid} but {path} is missing; {BUNDLE_FIX}")
        shards[sid] = _tflite(path, f"shard {sid}")
    return FleetBundle(settings, plans, _tflite(d / "student.tflite", "student program"),
                       read_weights(d / "student_init.safetensors", "initial weights", BUNDLE_FIX), shards)


class BundleError(ValueError):
    """A bundle file that is not what the aggregator reads; the message names the file, the field and the fix."""


BUNDLE_FILES = ("bundle.json", "plans.json", "student.tflite", "student_init.safetensors")
BUNDLE_FIX = "fix it, or re-create the bundle with `python -m simulator prepare --out DIR` (it writes DIR/bundle)"
_TYPES: dict[str, tuple[str, tuple[type, ...]]] = {
    "str": ("a string", (str,)), "int": ("an integer", (int,)), "float": ("a number", (int, float)),
    "float | None": ("a number or null", (int, float, type(None)))}
_RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "fleet": (lambda v: re.fullmatch(NAME_PATTERN, v) is not None,
              "letters, digits, '-', '_' or '.' (it names MQTT topics)"),
    "rounds": (lambda v: v >= 1, "at least 1"),
    "dp_mode": (lambda v: v in DP_MODES, f"one of {', '.join(DP_MODES)}"),
    "clip": (lambda v: v > 0, "positive"),
    "noise_multiplier": (lambda v: v >= 0, ">= 0"),
    "delta": (lambda v: 0 < v < 1, "between 0 and 1 (exclusive)"),
    "max_epsilon": (lambda v: v is None or v > 0, "positive, or null for no budget"),
    "quorum": (lambda v: v >= 1, "at least 1"),
    "quorum_fraction": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "deadline_s": (lambda v: v > 0, "a positive number of seconds"),
    "sampling_rate": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "model_bits": (lambda v: v in (32, 8, 4, 2), "32, 8, 4 or 2"),
    "chunk_limit": (lambda v: v >= MIN_FLEET_CHUNK_LIMIT, f"at least {MIN_FLEET_CHUNK_LIMIT} bytes")}
_MATCH_SETTINGS = ("fleet", "rounds", "dp_mode")  # what every plan must share with bundle.json


def load_plans(directory: str | Path) -> tuple[RoundSettings, list[DevicePlan]]:
    """A bundle's round settings and plans (bundle.json, plans.json), checked, without its programs and weights."""
    d = _bundle_dir(directory)
    for name in BUNDLE_FILES[:2]:
        if not (d / name).exists():
            raise FileNotFoundError(f"{d / name} missing; create a bundle with "
                                    "`python -m simulator prepare --out DIR` (it writes DIR/bundle)")
    settings = read_settings(d / "bundle.json")
    return settings, read_plans(d / "plans.json", settings)


def read_settings(path: Path) -> RoundSettings:
    """bundle.json as RoundSettings: every field present, of its type, in its range; BundleError otherwise."""
    raw = _json(path)
    spec = {f.name: f for f in fields(RoundSettings)}
    if not isinstance(raw, dict):
        raise BundleError(f"{path}: expected a JSON object of round settings {sorted(spec)}; {BUNDLE_FIX}")
    unknown = sorted(set(raw) - set(spec))
    if unknown:
        raise BundleError(f"{path}: unknown fields {unknown} (this aggregator reads {sorted(spec)}); {BUNDLE_FIX}")
    missing = [name for name, f in spec.items() if f.default is MISSING and name not in raw]
    if missing:
        raise BundleError(f"{path}: missing fields {missing}; {BUNDLE_FIX}")
    for name, value in raw.items():
        kind, types = _TYPES.get(str(spec[name].type), ("", (object,)))
        if not isinstance(value, types) or isinstance(value, bool):
            raise BundleError(f"{path}: field {name!r} must be {kind}, got {value!r}; {BUNDLE_FIX}")
        if isinstance(value, float) and not math.isfinite(value):
            raise BundleError(f"{path}: field {name!r} must be a finite number, got {value!r}; {BUNDLE_FIX}")
        rule, expected = _RANGES.get(name, (lambda v: True, ""))
        if not rule(value):
            raise BundleError(f"{path}: field {name!r} must be {expected}, got {value!r}; {BUNDLE_FIX}")
    return RoundSettings(**raw)


def read_plans(path: Path, settings: RoundSettings) -> list[DevicePlan]:
    """plans.json as DevicePlans: a non-empty list, each plan valid, its device and shard names fit for topics and
    file names, device ids unique, fleet, rounds and DP mode those of bundle.json; BundleError otherwise."""
    raw = _json(path)
    if not isinstance(raw, list) or not raw:
        raise BundleError(f"{path}: expected a non-empty JSON list of device plans; {BUNDLE_FIX}")
    plans: list[DevicePlan] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw):
        where = f"{path}: plan #{i + 1}"
        try:
            plan = DevicePlan.from_json(json.dumps(entry).encode())
        except ValueError as exc:
            raise BundleError(f"{where}: {exc}; {BUNDLE_FIX}") from None
        for name in ("device", "shard_id"):
            if not re.fullmatch(NAME_PATTERN, getattr(plan, name)):
                raise BundleError(f"{where}: field {name!r} must be letters, digits, '-', '_' or '.', got "
                                  f"{getattr(plan, name)!r}; {BUNDLE_FIX}")
        if plan.device in seen:
            raise BundleError(f"{where}: device {plan.device!r} is planned twice; {BUNDLE_FIX}")
        seen.add(plan.device)
        for name in _MATCH_SETTINGS:
            if getattr(plan, name) != getattr(settings, name):
                raise BundleError(f"{where} ({plan.device}): {name} {getattr(plan, name)!r} differs from "
                                  f"bundle.json's {getattr(settings, name)!r}; {BUNDLE_FIX}")
        plans.append(plan)
    return plans


def _bundle_dir(directory: str | Path) -> Path:
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise BundleError(f"bundle {d} is a file; pass the bundle directory (`python -m simulator prepare --out DIR` "
                          f"writes DIR/bundle)")
    return d


def _json(path: Path) -> Any:
    if path.is_dir():
        raise BundleError(f"{path} is a directory, not a JSON file; {BUNDLE_FIX}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise BundleError(f"{path} is not UTF-8 text; {BUNDLE_FIX}") from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path} line {exc.lineno}: not valid JSON ({exc.msg}); {BUNDLE_FIX}") from None
    except OSError as exc:
        raise BundleError(f"cannot read {path} ({exc.strerror}); check its permissions") from None


def _tflite(path: Path, what: str) -> bytes:
    """A TFLite flatbuffer's bytes: BundleError unless the file carries the TFL3 identifier."""
    if path.is_dir():
        raise BundleError(f"{what} {path} is a directory, not a .tflite file; {BUNDLE_FIX}")
    blob = path.read_bytes()
    if len(blob) < 8 or blob[4:8] != b"TFL3":
        raise BundleError(f"{what} {path} is not a TFLite model (no TFL3 identifier, {len(blob)} bytes); {BUNDLE_FIX}")
    return blob
