"""Choose, for every device, the teacher prefix (shard) it should run (DESIGN.md §1).

Objective per device i: maximise utility(S_i) - lam * Comm(S_i) subject to
FLOP(S_i) * samples_i <= budget_i (FLOPs per local epoch), arena and operator support.
Devices do not share a constraint, so the exact optimum is a per-device enumeration over
the (small) candidate set. `plan_shards_greedy` is the paper's heuristic for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass


class NoShardFits(ValueError):
    """A device whose limits no candidate shard satisfies."""


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
    """A device's limits: FLOPs per local epoch, samples held, memory, target."""

    device_id: str
    flops_per_epoch: float
    num_samples: int
    arena_bytes: int | None = None
    flash_bytes: int | None = None
    target: str = "linux"
    supported_ops: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise ValueError(f"device {self.device_id}: num_samples must be at least 1, got {self.num_samples}")
        if self.flops_per_epoch <= 0:
            raise ValueError(f"device {self.device_id}: flops_per_epoch must be positive, got {self.flops_per_epoch}")


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


def violations(device: DeviceProfile, shard: ShardCandidate) -> list[str]:
    """Every limit of the device that the shard breaks, in words (empty when it fits)."""
    out = []
    cost = shard.flops_per_sample * device.num_samples
    if cost > device.flops_per_epoch:
        out.append(f"FLOPs per epoch {cost:,} > budget {int(device.flops_per_epoch):,}")
    if device.arena_bytes is not None and shard.arena_bytes > device.arena_bytes:
        out.append(f"arena {shard.arena_bytes:,} B > RAM {device.arena_bytes:,} B")
    if device.flash_bytes is not None and shard.model_bytes > device.flash_bytes:
        out.append(f"model {shard.model_bytes:,} B > flash {device.flash_bytes:,} B")
    if device.supported_ops is not None and shard.ops - device.supported_ops:
        out.append(f"unsupported ops {sorted(shard.ops - device.supported_ops)}")
    return out


def objective(shard: ShardCandidate, lam: float) -> float:
    """Utility (exit accuracy) minus lam times communication in megabytes."""
    return shard.accuracy - lam * shard.model_bytes / 1e6


def plan_device(device: DeviceProfile, shards: list[ShardCandidate], lam: float) -> ShardAssignment:
    """The exact best feasible shard for one device, or NoShardFits naming the limits."""
    if not shards:
        raise ValueError("no shard candidates: profile the teacher before planning")
    feasible = [s for s in shards if not violations(device, s)]
    if not feasible:
        cheapest = min(shards, key=lambda s: (s.flops_per_sample, s.model_bytes))
        raise NoShardFits(
            f"device {device.device_id} (budget {int(device.flops_per_epoch):,} FLOPs/epoch over "
            f"{device.num_samples} samples, target {device.target}) fits no shard; the cheapest, "
            f"{cheapest.shard_id}, breaks: {'; '.join(violations(device, cheapest))}. "
            f"Raise the device's budget or limits, or give the teacher a cheaper exit.")
    best = max(feasible, key=lambda s: (objective(s, lam), -s.flops_per_sample))
    return _assign(device, best, lam)


def plan_shards(devices: list[DeviceProfile], shards: list[ShardCandidate], lam: float = 0.05) -> list[ShardAssignment]:
    """Exact plan: each device gets its objective-maximising feasible shard."""
    _check_unique(devices)
    return [plan_device(d, shards, lam) for d in devices]


def plan_shards_greedy(devices: list[DeviceProfile], shards: list[ShardCandidate], lam: float = 0.05) -> list[ShardAssignment]:
    """The paper's heuristic: the deepest shard whose FLOPs fit, ignoring communication."""
    _check_unique(devices)
    out = []
    for d in devices:
        feasible = [s for s in shards if not violations(d, s)]
        if not feasible:
            plan_device(d, shards, lam)  # raises with the full explanation
        out.append(_assign(d, max(feasible, key=lambda s: (s.flops_per_sample, s.k)), lam))
    return out


def _assign(device: DeviceProfile, s: ShardCandidate, lam: float) -> ShardAssignment:
    return ShardAssignment(device.device_id, s.shard_id, s.k, s.flops_per_sample * device.num_samples,
                           s.model_bytes, s.accuracy, objective(s, lam))


def _check_unique(devices: list[DeviceProfile]) -> None:
    seen = set()
    for d in devices:
        if d.device_id in seen:
            raise ValueError(f"device id {d.device_id!r} appears twice in the fleet; ids must be unique")
        seen.add(d.device_id)
