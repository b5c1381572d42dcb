"""`python -m simulator audit`: the empirical privacy audit beside the accountant (issue 9, item 6).

For every seed: the cloud side (simulator.artifacts.prepare_cloud), then one in-process federation
per DP mode (the round engine over the in-memory transport, StudentClients running the device code
on their planned shards, as `compare` does), and the loss-threshold membership attack on the final
global student run as the LiteRT program the devices run. Members: the devices' training samples;
non-members: the devices' own held-out samples and (unless the devices' data is shifted) the test
split, never trained on by anyone; equally many of each. The first seed's fleet also gives the
honest updates (every device's clipped round-0 delta from the starting student) of the canary audit
of one round's release (simulator.audit). Writes audit.json, audit.md and audit.png.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cloud.accounting import calibrate_discrete_noise_multiplier
from cloud.round_engine import EngineConfig, RoundEngine, RoundRecord
from cloud.strategy import AcceptedUpdate, DpMode, FedAvgConfig
from edge.local_training import train_round
from edge.plan import DevicePlan
from edge.seeding import FleetSeeds, round_generator, side_stream
from edge.shard_runtime import ShardRunner
from edge.student_runtime import TrainableStudent
from edge.wire import content_hash
from simulator.artifacts import CloudArtifacts, prepare_cloud
from simulator.audit import (
    CanaryAudit,
    CanarySetup,
    MembershipResult,
    NoiseOrigin,
    balanced_indices,
    canary_update,
    membership_inference,
    per_sample_loss,
    run_canary_audit,
)
from simulator.audit_report import write_report
from simulator.compare import dmskd_shards
from simulator.config import ExperimentConfig
from simulator.data import Dataset
from simulator.in_process import StudentClient, run_rounds

MODES = (DpMode.NONE, DpMode.CENTRAL, DpMode.LOCAL)


@dataclass(frozen=True)
class AuditSettings:
    """What one audit runs: DP modes, privacy target, canary trials, seeds; fleet and data in `config`."""

    config: ExperimentConfig  # devices, rounds, training, data; its seed and dp are set per run
    modes: tuple[DpMode, ...] = MODES
    target_epsilon: float = 8.0
    trials: int = 2000  # canary trials per (mode, noise origin) with the vectorised sampler
    secure_trials: int = 100  # canary trials per DP mode with SecureNoise (the exact sampler over OS entropy)
    seeds: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        if not self.modes:
            raise ValueError("--dp names no mode; pass none, local, central or all")
        if not self.target_epsilon > 0:
            raise ValueError("--target-epsilon must be positive")
        if self.trials < 20:
            raise ValueError(f"--trials {self.trials} is too few for a Clopper-Pearson bound; pass 20 or more "
                             f"(1000 or more for a meaningful one)")
        if self.secure_trials < 0 or 0 < self.secure_trials < 20:
            raise ValueError(f"--secure-trials {self.secure_trials}: pass 0 to skip the exact sampler's trials, "
                             f"or 20 or more")
        if not self.seeds:
            raise ValueError("--seeds names no seed; pass e.g. 0 or 0,1,2")

    @property
    def noise_multiplier(self) -> float:
        """z of the DP runs: calibrated for all rounds at q = 1 (every device every round)."""
        c = self.config
        return calibrate_discrete_noise_multiplier(self.target_epsilon, 1.0, c.rounds, c.delta)


@dataclass(frozen=True)
class Member:
    """One device of the audited fleet: its plan's shard, data, shard logits."""

    index: int
    shard_id: str
    shard_hash: str
    data: Dataset
    logits: np.ndarray


@dataclass(frozen=True)
class MembershipRow:
    """The membership attack on one student: which seed, mode and model, its accuracy and the accountant's epsilon."""

    seed: int
    dp_mode: str  # "start": the student the federation starts from, which never saw the devices' data
    result: MembershipResult
    test_accuracy: float
    epsilon: float | None  # RDP accountant, the whole run; None without DP
    member_losses: np.ndarray = field(repr=False)
    non_member_losses: np.ndarray = field(repr=False)

    def to_dict(self) -> dict:
        return {"seed": self.seed, "model": self.dp_mode, "test_accuracy": self.test_accuracy,
                "epsilon": self.epsilon, **self.result.to_dict()}


def fleet_members(art: CloudArtifacts) -> list[Member]:
    """Every device with its planned shard (as DMSKD runs) and that shard's logits on its data."""
    shards = dmskd_shards(art)
    runners = {s.shard_id: ShardRunner.from_bytes(s.model) for s in shards}
    return [Member(i, s.shard_id, content_hash(s.model), data, runners[s.shard_id].logits(data.x))
            for i, (data, s) in enumerate(zip(art.split.devices, shards))]


def _plan(config: ExperimentConfig, art: CloudArtifacts, member: Member, mode: DpMode, z: float) -> DevicePlan:
    return DevicePlan("audit", f"dev{member.index:03d}", member.shard_id, member.shard_hash,
                      content_hash(art.student_program), config.rounds, mode.value, z, config.training)


def federate(art: CloudArtifacts, config: ExperimentConfig, members: list[Member], mode: DpMode, z: float,
             student: TrainableStudent, on_round: Callable[[RoundRecord], None] | None = None
             ) -> tuple[dict[str, np.ndarray], float | None]:
    """The final global student of `config.rounds` rounds in `mode`, and its accountant epsilon (None without DP)."""
    z = 0.0 if mode is DpMode.NONE else z
    seeds = FleetSeeds.from_seed(config.seed, len(members))
    clients = {}
    for m in members:
        plan = _plan(config, art, m, mode, z)
        clients[plan.device] = StudentClient.from_shard_logits(
            plan, student, m.data.x, m.data.visible_labels(), m.logits, seeds.devices[m.index],
            insecure_seeded_noise=config.insecure_seeded_noise)
    engine = RoundEngine(EngineConfig("audit", tuple(clients), config.rounds,
                                      FedAvgConfig(mode, config.training.clip, z), config.delta,
                                      insecure_seeded_noise=config.insecure_seeded_noise))
    run = run_rounds(engine, engine.init(art.start_weights, seeds.server), clients, on_round)
    return run.state.weights, (run.state.ledger.epsilon if run.state.ledger is not None else None)


def honest_updates(art: CloudArtifacts, config: ExperimentConfig, members: list[Member],
                   student: TrainableStudent) -> tuple[AcceptedUpdate, ...]:
    """Every device's clipped, noise-free round-0 delta from the starting student: the canary audit's honest updates."""
    seeds = FleetSeeds.from_seed(config.seed, len(members))
    out = []
    for m in members:
        plan = _plan(config, art, m, DpMode.NONE, 0.0)
        client = StudentClient.from_shard_logits(plan, student, m.data.x, m.data.visible_labels(), m.logits,
                                                 seeds.devices[m.index])
        result = train_round(student, art.start_weights, client.x_flat, client.targets, client.shard_logits, plan,
                             round_generator(seeds.devices[m.index], 0))
        out.append(AcceptedUpdate(plan.device, result.delta, result.num_examples))
    return tuple(out)


def attack_sets(art: CloudArtifacts, seed: int) -> tuple[Dataset, Dataset]:
    """Equally many members (devices' training samples) and non-members (devices' held-out samples, and the
    test split when the devices' data is not shifted), drawn from a side stream of `seed`."""
    members = _concat(art.split.devices)
    held = list(art.split.device_holdout) + ([] if art.split.device_shifts else [art.split.test])
    non_members = _concat([h for h in held if len(h)])
    keep_in, keep_out = balanced_indices(len(members), len(non_members),
                                         np.random.default_rng(side_stream(seed, "audit-membership")))
    return members.take(keep_in), non_members.take(keep_out)


def _concat(parts: list[Dataset]) -> Dataset:
    return Dataset(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]))


def losses_of(student: TrainableStudent, weights: dict[str, np.ndarray], data: Dataset) -> np.ndarray:
    """Per-sample cross-entropy of the student program with `weights` against the true labels."""
    student.set_weights(weights)
    return per_sample_loss(student.predict_logits(data.x.reshape(len(data), -1)), data.y)


def membership_row(seed: int, model: str, student: TrainableStudent, weights: dict[str, np.ndarray],
                   members: Dataset, non_members: Dataset, test: Dataset, epsilon: float | None) -> MembershipRow:
    """Attack one student and measure its test accuracy."""
    inside, outside = losses_of(student, weights, members), losses_of(student, weights, non_members)
    accuracy = student.accuracy(test.x.reshape(len(test), -1), test.y)
    return MembershipRow(seed, model, membership_inference(inside, outside), accuracy, epsilon, inside, outside)


def canary_audits(settings: AuditSettings, art: CloudArtifacts, student: TrainableStudent,
                  members: list[Member]) -> list[CanaryAudit]:
    """Every selected mode's canary audit on the first seed's fleet: each noise origin, both attackers."""
    config = settings.config
    honest = honest_updates(art, config, members, student)
    canary = canary_update(art.start_weights, config.training.clip,
                           np.random.default_rng(side_stream(config.seed, "audit-canary")))
    plan: list[tuple[DpMode, NoiseOrigin, int]] = []
    for mode in settings.modes:
        if mode is DpMode.NONE:
            plan.append((mode, NoiseOrigin.NONE, settings.trials))
            continue
        plan += [(mode, NoiseOrigin.SECRET_SEED, settings.trials), (mode, NoiseOrigin.PUBLIC_SEED, settings.trials)]
        if settings.secure_trials:
            plan.append((mode, NoiseOrigin.OS_ENTROPY, settings.secure_trials))
    audits: list[CanaryAudit] = []
    for mode, origin, trials in plan:
        z = settings.noise_multiplier if mode is not DpMode.NONE else 0.0
        setup = CanarySetup(FedAvgConfig(mode, config.training.clip, z), art.start_weights, honest, canary,
                            public_seed=config.seed)
        coins = np.random.default_rng(side_stream(config.seed, "audit-coins"))  # the same coins for every origin
        with tqdm(total=trials, desc=f"canary {mode.value} {origin.value}", unit="trial") as bar:
            audits += run_canary_audit(setup, origin, trials, coins, config.delta, on_trial=lambda: bar.update(1))
    return audits


def machine() -> dict:
    """The machine the figures come from."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "date": datetime.date.today().isoformat()}


def run_audit(settings: AuditSettings, out_dir: Path, command: str = "",
              status: Callable[[str], None] = print) -> dict:
    """Membership attacks for every seed and mode, the canary audits, and the report; returns audit.json's contents."""
    started = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    z = settings.noise_multiplier
    rows: list[MembershipRow] = []
    canaries: list[CanaryAudit] = []
    for seed in settings.seeds:
        config = replace(settings.config, seed=seed)
        status(f"seed {seed}: preparing the cloud (teacher, shards, student)")
        art = prepare_cloud(config, progress=lambda msg, seed=seed: status(f"seed {seed}: {msg}"))
        student = TrainableStudent.from_bytes(art.student_program)
        members = fleet_members(art)
        inside, outside = attack_sets(art, seed)
        rows.append(membership_row(seed, "start", student, art.start_weights, inside, outside, art.split.test, None))
        for mode in settings.modes:
            with tqdm(total=config.rounds, desc=f"seed {seed} federating, DP {mode.value}", unit="round") as bar:
                weights, eps = federate(art, config, members, mode, z, student, lambda _r: bar.update(1))
            rows.append(membership_row(seed, mode.value, student, weights, inside, outside, art.split.test, eps))
        if seed == settings.seeds[0]:
            canaries = canary_audits(replace(settings, config=config), art, student, members)
    report = write_report(out_dir, settings, z, rows, canaries, machine(), command, time.monotonic() - started)
    (out_dir / "audit.json").write_text(json.dumps(report, indent=2))
    return report
