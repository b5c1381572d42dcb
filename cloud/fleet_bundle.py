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
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from cloud.declared_settings import DeclaredSettings
from cloud.round_engine import EngineConfig
from cloud.strategy import DpMode, FedAvgConfig
from edge.plan import DevicePlan


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
                        sampling_rate=st.sampling_rate,
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
    """Read a bundle, naming the missing file and the command that makes it."""
    d = Path(directory)
    for name in ("bundle.json", "plans.json", "student.tflite", "student_init.safetensors"):
        if not (d / name).exists():
            raise FileNotFoundError(f"{d / name} missing; create a bundle with "
                                    "`python -m simulator prepare --out DIR` (it writes DIR/bundle)")
    settings = RoundSettings(**json.loads((d / "bundle.json").read_text()))
    plans = [DevicePlan.from_json(json.dumps(p).encode()) for p in json.loads((d / "plans.json").read_text())]
    shards = {}
    for sid in sorted({p.shard_id for p in plans}):
        path = d / "shards" / f"{sid}.tflite"
        if not path.exists():
            raise FileNotFoundError(f"plan names shard {sid} but {path} is missing")
        shards[sid] = path.read_bytes()
    return FleetBundle(settings, plans, (d / "student.tflite").read_bytes(),
                       load_file(str(d / "student_init.safetensors")), shards)
