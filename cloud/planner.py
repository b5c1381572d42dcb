"""Choose, for every device, the teacher prefix (shard) it should run (DESIGN.md §1).

The problem, as solved here. Device i has a FLOP budget B_i per local epoch over n_i samples,
an optional tensor-arena RAM A_i and flash F_i, a target t_i (linux | edgetpu | mcu) and a
link rate r_i. Candidate shard S (prefix P_k) costs f(S) FLOPs per sample, needs a(S) bytes
of arena and m(S) bytes of flash, uses the TFLite operators ops(S), and has held-out exit
accuracy acc(S). Choose S_i for every device to

    maximise   sum_i  u_i(S_i),   u_i(S) = acc(S) - lambda * Comm_i(S)
    subject to f(S_i) * n_i <= B_i,  a(S_i) <= A_i,  m(S_i) <= F_i,  ops(S_i) ⊆ ops(t_i)
               and, optionally, |{S_i}| <= max_shards (distinct shards the fleet uses).

Comm_i(S) is the time in seconds to download the shard's bytes over the device's link:
8 * m(S) / (1000 * r_i) with r_i in kbit/s (downlink_kbps, else uplink_kbps, else 8,000 kbit/s
= 1 MB/s, where Comm equals the shard's size in megabytes). A device downloads its shard only
when the plan or the teacher changes (content hash), so this is a one-off cost, not per round;
the per-round student update has the same size for every shard and does not enter the choice.

Without `max_shards` the devices do not share a constraint, so the exact optimum is a
per-device arg-max over the (small) candidate set. `max_shards` is a real coupling: every
distinct shard has to be exported, verified (and, for Edge TPU, compiled) per target and kept
retained on the broker. It is solved exactly by enumerating the C(L, max_shards) shard subsets
(L = number of exits, a handful) and taking the best per-device arg-max within each.

`plan_shards_greedy` is the paper's heuristic: each device gets the deepest (most FLOPs)
shard whose limits it meets, ignoring accuracy and communication; with `max_shards` it then
drops, one at a time, the used shard whose removal costs the least objective.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from export.op_support import TARGETS
from export.op_support import supported_ops as target_ops

DEFAULT_LINK_KBPS = 8_000.0  # 1 MB/s: Comm in seconds then equals the shard size in megabytes
MAX_SUBSETS = 2_000_000  # refuse exact max_shards enumeration beyond this many subsets


class NoShardFits(ValueError):
    """A device whose limits no candidate shard satisfies (or a fleet no max_shards shards serve)."""


@dataclass(frozen=True)
class ShardCandidate:
    """One prefix P_k as a plannable unit: its cost, size and held-out exit accuracy."""

    shard_id: str
    k: int
    flops_per_sample: int
    model_bytes: int
    arena_bytes: int
    accuracy: float
    ops: frozenset[str] = frozenset()


@dataclass(frozen=True)
class DeviceProfile:
    """A device's limits: FLOPs per local epoch, samples held, memory, target and link.

    supported_ops defaults to the target's operator set (export.op_support); None means any
    builtin (linux). source is where the device was described ("fleet.toml:12"), for errors."""

    device_id: str
    flops_per_epoch: float
    num_samples: int
    arena_bytes: int | None = None
    flash_bytes: int | None = None
    target: str = "linux"
    supported_ops: frozenset[str] | None = field(default=None, repr=False)
    uplink_kbps: float | None = None
    downlink_kbps: float | None = None
    device_class: str | None = None
    source: str | None = field(default=None, compare=False)
    labelled_fraction: float = 1.0  # of its samples the device may train on with labels (0: a meter)

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise ValueError(f"device {self.device_id}: num_samples must be at least 1, got {self.num_samples}")
        if not self.flops_per_epoch > 0:
            raise ValueError(f"device {self.device_id}: flops_per_epoch must be positive, got {self.flops_per_epoch}")
        if not 0.0 <= self.labelled_fraction <= 1.0:
            raise ValueError(f"device {self.device_id}: labelled_fraction must be in [0, 1], got "
                             f"{self.labelled_fraction}")
        if self.target not in TARGETS:
            raise ValueError(f"device {self.device_id}: target {self.target!r} is not one of {', '.join(TARGETS)}")
        for name in ("arena_bytes", "flash_bytes"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ValueError(f"device {self.device_id}: {name} must be >= 0, got {v}")
        for name in ("uplink_kbps", "downlink_kbps"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ValueError(f"device {self.device_id}: {name} must be positive, got {v}")
        if self.supported_ops is None and self.target != "linux":
            object.__setattr__(self, "supported_ops", target_ops(self.target))

    @property
    def link_kbps(self) -> float:
        """The rate a shard is downloaded at: downlink, else uplink, else DEFAULT_LINK_KBPS."""
        return self.downlink_kbps or self.uplink_kbps or DEFAULT_LINK_KBPS


@dataclass(frozen=True)
class ShardAssignment:
    """The shard chosen for one device and what it costs there."""

    device_id: str
    shard_id: str
    k: int
    flops_per_epoch: int
    model_bytes: int
    expected_accuracy: float
    objective: float
    arena_bytes: int = 0
    target: str = "linux"
    comm_seconds: float = 0.0
    device_class: str | None = None


def comm_seconds(shard: ShardCandidate, device: DeviceProfile | None = None) -> float:
    """Comm_i(S): seconds to download the shard over the device's link (1 MB/s if unknown)."""
    kbps = device.link_kbps if device is not None else DEFAULT_LINK_KBPS
    return shard.model_bytes * 8 / (kbps * 1000)


def objective(shard: ShardCandidate, lam: float, device: DeviceProfile | None = None) -> float:
    """u_i(S) = held-out exit accuracy - lam * Comm_i(S) (Comm in seconds; = MB at 1 MB/s)."""
    return shard.accuracy - lam * comm_seconds(shard, device)


LIMITS = ("flops", "arena", "flash", "ops")  # the keys of limit_checks, in the order errors name them


def limit_checks(devices: list[DeviceProfile], shards: list[ShardCandidate]) -> dict[str, np.ndarray]:
    """The planner's feasibility rules: per limit (LIMITS), bool [N, L], True where shard j meets device i's limit."""
    flops = np.array([s.flops_per_sample for s in shards], dtype=np.float64)
    arena = np.array([s.arena_bytes for s in shards], dtype=np.float64)
    size = np.array([s.model_bytes for s in shards], dtype=np.float64)
    budget = np.array([d.flops_per_epoch for d in devices], dtype=np.float64)
    samples = np.array([d.num_samples for d in devices], dtype=np.float64)
    ram = np.array([np.inf if d.arena_bytes is None else d.arena_bytes for d in devices], dtype=np.float64)
    flash = np.array([np.inf if d.flash_bytes is None else d.flash_bytes for d in devices], dtype=np.float64)
    runnable: dict[frozenset[str] | None, np.ndarray] = {}  # devices share a handful of op sets
    for d in devices:
        if d.supported_ops not in runnable:
            runnable[d.supported_ops] = np.array([d.supported_ops is None or not s.ops - d.supported_ops
                                                  for s in shards], dtype=bool)
    ops = np.array([runnable[d.supported_ops] for d in devices], dtype=bool).reshape(len(devices), len(shards))
    return {"flops": flops[None, :] * samples[:, None] <= budget[:, None], "arena": arena[None, :] <= ram[:, None],
            "flash": size[None, :] <= flash[:, None], "ops": ops}


def fits(devices: list[DeviceProfile], shards: list[ShardCandidate]) -> np.ndarray:
    """bool [N, L]: shard j meets every limit of device i (FLOP budget, arena, flash, operator support)."""
    return np.logical_and.reduce(list(limit_checks(devices, shards).values()))


def broken_limits(device: DeviceProfile, shard: ShardCandidate) -> list[str]:
    """The LIMITS of the device that the shard breaks (empty when it fits)."""
    checks = limit_checks([device], [shard])
    return [name for name in LIMITS if not checks[name][0, 0]]


def violations(device: DeviceProfile, shard: ShardCandidate) -> list[str]:
    """Every limit of the device that the shard breaks, in words (empty when it fits)."""
    broken, ops = broken_limits(device, shard), sorted(shard.ops - (device.supported_ops or frozenset()))
    out = []
    if "flops" in broken:
        out.append(f"FLOPs per epoch {shard.flops_per_sample * device.num_samples:,} > budget "
                   f"{int(device.flops_per_epoch):,}")
    if "arena" in broken:
        out.append(f"arena {shard.arena_bytes:,} B > RAM {device.arena_bytes:,} B")
    if "flash" in broken:
        out.append(f"model {shard.model_bytes:,} B > flash {device.flash_bytes:,} B")
    if "ops" in broken:
        out.append(f"unsupported ops {ops} on target {device.target}")
    return out


def explain_no_fit(device: DeviceProfile, shards: list[ShardCandidate]) -> str:
    """Why nothing fits the device, and the limit values that would make the cheapest shard fit."""
    where = f" ({device.source})" if device.source else ""
    head = (f"device {device.device_id}{where} (target {device.target}, {int(device.flops_per_epoch):,} "
            f"FLOPs/epoch over {device.num_samples} samples) fits no shard")
    runs = limit_checks([device], shards)["ops"][0]
    runnable = [s for s, ok in zip(shards, runs) if ok]
    if not runnable:
        s = min(shards, key=_cost_key)
        return (f"{head}: target {device.target} runs none of them; the cheapest, {s.shard_id}, "
                f"uses {sorted(s.ops - (device.supported_ops or frozenset()))}, which {device.target} lacks. "
                f"Plan the device for another target, or give the teacher exits built from supported layers.")
    s = min(runnable, key=_cost_key)
    broken = broken_limits(device, s)
    needs = []
    if "flops" in broken:
        cost = s.flops_per_sample * device.num_samples
        fewer = int(device.flops_per_epoch // s.flops_per_sample)
        alternative = f", or at most {fewer:,} samples" if fewer >= 1 else ""
        needs.append(f"flops_per_epoch >= {cost:,} (flops_per_sample >= {s.flops_per_sample:,}{alternative})")
    if "arena" in broken:
        needs.append(f"arena >= {s.arena_bytes:,} B (arena_kb >= {math.ceil(s.arena_bytes / 1024):,})")
    if "flash" in broken:
        needs.append(f"flash >= {s.model_bytes:,} B (flash_kb >= {math.ceil(s.model_bytes / 1024):,})")
    return (f"{head}; the cheapest shard it could run, {s.shard_id}, breaks: {'; '.join(violations(device, s))}. "
            f"It would fit with {' and '.join(needs)}: raise those limits in the fleet file, or give "
            f"the teacher a cheaper exit.")


def plan_device(device: DeviceProfile, shards: list[ShardCandidate], lam: float) -> ShardAssignment:
    """The exact best feasible shard for one device, or NoShardFits naming the limits."""
    return plan_shards([device], shards, lam)[0]


def plan_shards(devices: list[DeviceProfile], shards: list[ShardCandidate], lam: float = 0.05,
                max_shards: int | None = None) -> list[ShardAssignment]:
    """Exact plan: maximise the summed objective; at most max_shards distinct shards if given."""
    t = _Tables.build(devices, shards, lam)
    if max_shards is None or len(set(t.best_each().tolist())) <= max_shards:
        return t.assignments(t.best_each())
    _check_cap(max_shards, t)
    best_total, best_choice = -math.inf, None
    for subset in itertools.combinations(range(len(t.shards)), min(max_shards, len(t.shards))):
        sub = t.value[:, subset]
        row_best = sub.max(axis=1)
        if not np.all(np.isfinite(row_best)):
            continue
        total = float(row_best.sum())
        if total > best_total + 1e-12:
            best_total, best_choice = total, np.asarray(subset)[sub.argmax(axis=1)]
    if best_choice is None:
        raise NoShardFits(_cap_infeasible(t, max_shards))
    return t.assignments(best_choice)


def plan_shards_greedy(devices: list[DeviceProfile], shards: list[ShardCandidate], lam: float = 0.05,
                       max_shards: int | None = None) -> list[ShardAssignment]:
    """The paper's heuristic: the deepest shard whose limits fit, ignoring accuracy and communication."""
    t = _Tables.build(devices, shards, lam)
    choice = t.deepest_each(np.arange(len(t.shards)))
    if choice is None:  # _Tables.build already refused a device that no shard fits
        raise AssertionError("every device has a feasible shard")
    if max_shards is not None:
        _check_cap(max_shards, t)
        used = sorted(set(choice.tolist()))
        while len(used) > max_shards:
            best = None
            for drop in used:
                keep = np.array([j for j in used if j != drop])
                c = t.deepest_each(keep)
                if c is None:
                    continue
                total = float(t.value[np.arange(len(c)), c].sum())
                if best is None or total > best[0]:
                    best = (total, drop, c)
            if best is None:
                raise NoShardFits(f"greedy could not bring the plan down to {max_shards} shard(s) without "
                                  f"leaving a device without one; {_cap_infeasible(t, max_shards)}")
            choice = best[2]
            used = sorted(set(choice.tolist()))
    return t.assignments(choice)


def total_objective(assignments: list[ShardAssignment]) -> float:
    """sum_i u_i(S_i) of a plan."""
    return float(sum(a.objective for a in assignments))


# -- internals: the fleet as two N x L tables (feasible, objective), so 10,000 devices plan in ms --


@dataclass
class _Tables:
    devices: list[DeviceProfile]
    shards: list[ShardCandidate]  # sorted by (flops, model bytes, arena bytes, k): ties go to the cheaper shard
    feasible: np.ndarray  # bool [N, L]
    value: np.ndarray  # float [N, L], -inf where infeasible

    @classmethod
    def build(cls, devices: list[DeviceProfile], shards: list[ShardCandidate], lam: float) -> _Tables:
        if not shards:
            raise ValueError("no shard candidates: profile the teacher before planning")
        if not lam >= 0:
            raise ValueError(f"lambda must be >= 0, got {lam}")
        _check_unique(devices)
        ordered = sorted(shards, key=_cost_key)
        size = np.array([s.model_bytes for s in ordered], dtype=np.float64)
        acc = np.array([s.accuracy for s in ordered], dtype=np.float64)
        link = np.array([d.link_kbps for d in devices], dtype=np.float64)
        feasible = fits(devices, ordered)
        value = acc[None, :] - lam * (size[None, :] * 8 / (link[:, None] * 1000))
        value = np.where(feasible, value, -np.inf)
        stuck = np.flatnonzero(~feasible.any(axis=1))
        if stuck.size:
            raise NoShardFits(explain_no_fit(devices[stuck[0]], ordered)
                              + (f" ({stuck.size - 1} more device(s) fit no shard either)" if stuck.size > 1 else ""))
        return cls(devices, ordered, feasible, value)

    def best_each(self) -> np.ndarray:
        return self.value.argmax(axis=1)  # first maximum = cheapest among equal objectives

    def deepest_each(self, allowed: np.ndarray) -> np.ndarray | None:
        """Per device, the allowed feasible shard with the most FLOPs (None if one has none)."""
        allowed = np.asarray(allowed)
        feas = self.feasible[:, allowed]
        if not feas.any(axis=1).all():
            return None
        last = feas.shape[1] - 1 - np.argmax(feas[:, ::-1], axis=1)  # shards are sorted by FLOPs
        return allowed[last]

    def assignments(self, choice: np.ndarray) -> list[ShardAssignment]:
        out: list[ShardAssignment] = []
        for d, j in zip(self.devices, choice.tolist()):
            s = self.shards[j]
            out.append(ShardAssignment(d.device_id, s.shard_id, s.k, s.flops_per_sample * d.num_samples,
                                       s.model_bytes, s.accuracy, float(self.value[len(out), j]), s.arena_bytes,
                                       d.target, comm_seconds(s, d), d.device_class))
        return out


def _cost_key(s: ShardCandidate) -> tuple:
    return (s.flops_per_sample, s.model_bytes, s.arena_bytes, s.k)


def _check_cap(max_shards: int, t: _Tables) -> None:
    if max_shards < 1:
        raise ValueError(f"max_shards must be at least 1, got {max_shards}")
    if math.comb(len(t.shards), min(max_shards, len(t.shards))) > MAX_SUBSETS:
        raise ValueError(f"max_shards={max_shards} over {len(t.shards)} candidates means more than "
                         f"{MAX_SUBSETS:,} subsets to enumerate; lower max_shards or prune candidates")


def _cap_infeasible(t: _Tables, max_shards: int) -> str:
    """Say why no max_shards shards serve every device, and the smallest cap that would."""
    n = len(t.shards)
    for m in range(max_shards + 1, n + 1):
        for subset in itertools.combinations(range(n), m):
            if t.feasible[:, subset].any(axis=1).all():
                ids = [t.shards[j].shard_id for j in subset]
                return (f"no {max_shards} shard(s) serve every device (the fleet's limits need at least {m}, "
                        f"e.g. {ids}); raise max_shards to {m} or relax the limits of the devices that "
                        f"only fit those shards")
    return "no set of shards serves every device"


def _check_unique(devices: list[DeviceProfile]) -> None:
    seen = set()
    for d in devices:
        if d.device_id in seen:
            raise ValueError(f"device id {d.device_id!r} appears twice in the fleet; ids must be unique")
        seen.add(d.device_id)
