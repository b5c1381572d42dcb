"""Read the planner's plan.json into the distinct (shard, target) pairs to export.

Schema (written by `python -m cloud plan`): {"teacher_dir": str, "shards": {shard_id: {"k": int,
"targets": [...] , ...}}, "devices": [{"shard_id", "target", ...}], ...}. Pairs come from each
shard's targets plus any (shard_id, target) a device names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from export.errors import InputError
from export.op_support import TARGETS

PLAN_FIX = "write it with `python -m cloud plan --fleet FILE --teacher DIR`"


class PlanError(InputError):
    """plan.json is missing or malformed; the message names the field and the fix."""


@dataclass(frozen=True)
class ShardJob:
    """One shard (prefix P_k) and the targets it is exported for, in TARGETS order."""

    shard_id: str
    k: int
    targets: tuple[str, ...]


@dataclass(frozen=True)
class ExportPlan:
    """What to export, and from which teacher directory."""

    path: Path
    teacher_dir: Path
    jobs: tuple[ShardJob, ...]


def read_plan(path: str | Path, teacher_dir: str | Path | None = None) -> ExportPlan:
    """Parse and validate plan.json; teacher_dir overrides the plan's own."""
    p = Path(path)
    if p.is_dir():
        raise PlanError(f"plan file {p} is a directory; pass the plan.json in it ({PLAN_FIX})")
    if not p.is_file():
        raise PlanError(f"plan file {p} not found; {PLAN_FIX}")
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PlanError(f"{p} line {exc.lineno}: not valid JSON ({exc.msg}); {PLAN_FIX}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"cannot read {p} as text ({exc}); {PLAN_FIX}") from None
    if not isinstance(raw, dict):
        raise PlanError(f"{p}: expected a JSON object with teacher_dir, shards and devices; {PLAN_FIX}")
    shards = raw.get("shards")
    if not isinstance(shards, dict) or not shards:
        raise PlanError(f"{p}: field 'shards' must be a non-empty object {{shard_id: {{k, targets}}}}; {PLAN_FIX}")
    pairs: dict[str, set[str]] = {}
    ks: dict[str, int] = {}
    for sid, spec in shards.items():
        where = f"{p}: shards.{sid}"
        if not isinstance(spec, dict):
            raise PlanError(f"{where} must be an object with k and targets")
        k = spec.get("k")
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise PlanError(f"{where}.k must be an integer >= 1 (the prefix depth), got {k!r}")
        targets = spec.get("targets")
        if not isinstance(targets, list) or not targets:
            raise PlanError(f"{where}.targets must be a non-empty list of {', '.join(TARGETS)}")
        ks[sid] = k
        pairs[sid] = {_target(t, f"{where}.targets") for t in targets}
    devices = raw.get("devices", [])
    if not isinstance(devices, list):
        raise PlanError(f"{p}: field 'devices' must be a list")
    for i, dev in enumerate(devices):
        where = f"{p}: devices[{i}]"
        if not isinstance(dev, dict) or "shard_id" not in dev or "target" not in dev:
            raise PlanError(f"{where} needs shard_id and target")
        if not isinstance(dev["shard_id"], str) or dev["shard_id"] not in pairs:
            raise PlanError(f"{where}.shard_id {dev['shard_id']!r} is not in 'shards'; {PLAN_FIX}")
        pairs[dev["shard_id"]].add(_target(dev["target"], f"{where}.target"))
    teacher = Path(teacher_dir) if teacher_dir is not None else _teacher_dir(raw, p)
    jobs = tuple(ShardJob(sid, ks[sid], tuple(t for t in TARGETS if t in pairs[sid]))
                 for sid in sorted(pairs, key=lambda s: (ks[s], s)))
    return ExportPlan(p, teacher, jobs)


def _target(value, where: str) -> str:
    if value not in TARGETS:
        raise PlanError(f"{where}: unknown target {value!r}; use one of {', '.join(TARGETS)}")
    return value


def _teacher_dir(raw: dict, plan_path: Path) -> Path:
    """The plan's teacher_dir; a relative one is tried from the working directory, then from the plan's."""
    value = raw.get("teacher_dir")
    if not isinstance(value, str) or not value:
        raise PlanError(f"{plan_path}: field 'teacher_dir' is missing; add it or pass --teacher DIR")
    d = Path(value)
    if d.is_absolute() or d.exists():
        return d
    beside = plan_path.parent / d
    return beside if beside.exists() else d
