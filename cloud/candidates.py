"""A trained teacher's prefixes as plannable shard candidates, with their profile and export facts.

For every prefix P_k: the profiler's figures (FLOPs, params, bytes, activation and arena
estimates), plus what converting it once to full-int8 TFLite tells: the real model size, the
exact builtin operators (checked against each target's op set by the planner) and the smallest
arena the TFLite-Micro interpreter runs it with (export.tflm_arena.minimum_arena_bytes). The planner uses the measured
arena when there is one, the estimate otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cloud.planner import ShardCandidate
from cloud.profiler import PrefixProfile, profile_teacher
from export.op_support import model_ops
from export.shards import export_int8_shard
from export.teacher_dir import TeacherBundle, prefix_model
from export.tflm_arena import ArenaMeasurementError, minimum_arena_bytes


@dataclass(frozen=True)
class PrefixFacts:
    """Everything known about prefix P_k before export: profile, accuracy, the converted shard and its ops."""

    profile: PrefixProfile
    accuracy: float
    model: bytes = field(repr=False, compare=False)  # the full-int8 TFLite shard
    ops: frozenset[str]
    arena_measured: int | None = None  # None when TFLite-Micro could not run the shard

    @property
    def k(self) -> int:
        return self.profile.k

    @property
    def shard_id(self) -> str:
        return shard_id(self.profile.k)

    @property
    def tflite_bytes(self) -> int:
        return len(self.model)

    def candidate(self) -> ShardCandidate:
        """The planner's view: converted size and ops; the measured arena, else the profiler's estimate."""
        p = self.profile
        return ShardCandidate(self.shard_id, p.k, p.flops, self.tflite_bytes,
                              self.arena_measured if self.arena_measured is not None else p.arena_bytes,
                              self.accuracy, self.ops)


def shard_id(k: int) -> str:
    """The id of prefix P_k in plans and on the wire: p1, p2, ..."""
    return f"p{k}"


def teacher_candidates(bundle: TeacherBundle) -> list[PrefixFacts]:
    """Profile every prefix, export it to full-int8 once and measure its arena in TFLite-Micro."""
    out = []
    for p in profile_teacher(bundle.model):
        model = export_int8_shard(prefix_model(bundle.model, p.k), np.asarray(bundle.calibration_x))
        arena = _measured_arena(model)
        out.append(PrefixFacts(p, float(bundle.exit_accuracies[p.k - 1]), model, model_ops(model), arena))
    return out


def _measured_arena(model: bytes) -> int | None:
    """The smallest TFLite-Micro arena the shard runs with; None when TFLite-Micro cannot run it."""
    try:
        return minimum_arena_bytes(model)
    except ArenaMeasurementError:
        return None
