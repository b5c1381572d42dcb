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
from cloud.teacher import prefix_model
from cloud.teacher_store import TeacherBundle


@dataclass(frozen=True)
class PrefixFacts:
    """Everything known about prefix P_k before export: profile, accuracy, converted size and ops."""

    profile: PrefixProfile
    accuracy: float
    tflite_bytes: int | None = None
    ops: frozenset[str] | None = None
    arena_measured: int | None = None
    tflm_error: str | None = None
    model: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def k(self) -> int:
        return self.profile.k

    @property
    def shard_id(self) -> str:
        return shard_id(self.profile.k)

    def candidate(self) -> ShardCandidate:
        """The planner's view: measured size/arena/ops when known, the profiler's estimates otherwise."""
        p = self.profile
        return ShardCandidate(self.shard_id, p.k, p.flops,
                              self.tflite_bytes if self.tflite_bytes is not None else p.int8_bytes,
                              self.arena_measured if self.arena_measured is not None else p.arena_bytes,
                              self.accuracy, self.ops if self.ops is not None else p.ops)


def shard_id(k: int) -> str:
    """The id of prefix P_k in plans and on the wire: p1, p2, ..."""
    return f"p{k}"


def teacher_candidates(bundle: TeacherBundle, convert: bool = True) -> list[PrefixFacts]:
    """Profile every prefix; with convert, export it to full-int8 once and measure it in TFLite-Micro."""
    out = []
    for p in profile_teacher(bundle.model):
        acc = float(bundle.exit_accuracies[p.k - 1])
        if not convert:
            out.append(PrefixFacts(p, acc))
            continue
        from export.op_support import model_ops
        from export.shards import export_int8_shard
        from export.tflm_arena import ArenaMeasurementError, minimum_arena_bytes

        model = export_int8_shard(prefix_model(bundle.model, p.k), np.asarray(bundle.calibration_x))
        try:
            arena, error = minimum_arena_bytes(model), None
        except ArenaMeasurementError as exc:
            arena, error = None, str(exc)
        out.append(PrefixFacts(p, acc, len(model), model_ops(model), arena, error, model))
    return out
