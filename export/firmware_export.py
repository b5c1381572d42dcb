"""`python -m export` step: a firmware configuration directory per mcu device class of the plan.

DIR/firmware/<class>/ (export.firmware_config) is what `cmake -DDMSKD_DEVICE_CONFIG=DIR/firmware/<class>`
builds; the student's functional train step is exported once and shared by every class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export.errors import InputError
from export.firmware_config import FleetSettings, shard_files, write_device_config
from export.firmware_plan import firmware_targets
from export.pipeline import ShardResult

FIRMWARE_DIR = "firmware"


@dataclass(frozen=True)
class StudentSpec:
    """The student every device trains (its hidden widths, as cloud.student.build_student's) and its batch."""

    hidden: tuple[int, ...] = (64,)
    batch: int = 16


def read_fleet_key(path: Path | None) -> bytes | None:
    """The 32 raw bytes of the fleet's Ed25519 public key (fleet-signing.pub), or None without a path."""
    if path is None:
        return None
    from cryptography.hazmat.primitives import serialization

    from edge.signed_artifact import load_public_key

    try:
        key = load_public_key(path)
    except (FileNotFoundError, ValueError) as exc:
        raise InputError(f"--fleet-key: {exc}") from None
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def export_firmware(plan_path: Path, results: list[ShardResult], teacher, out: Path, fleet: FleetSettings,
                    student: StudentSpec, arena_headroom: float,
                    progress: Callable[[str], None] = lambda msg: None) -> list[dict]:
    """Write DIR/firmware/<class>/ for every mcu class of the plan; manifest entries of what was written."""
    targets = firmware_targets(plan_path)
    if not targets:
        return []
    mcu = {a.shard_id: a for r in results for a in r.artefacts if a.target == "mcu"}
    missing = sorted({t.shard_id for t in targets} - set(mcu))
    if missing:
        raise InputError(f"plan {plan_path}: mcu devices use shards {missing} that have no mcu artefact; "
                         "add 'mcu' to those shards' targets (re-plan with `python -m cloud plan`)")
    from export.student_train_step import DenseStack, student_step

    input_dim = int(np.prod(teacher.model.input_shape[1:]))
    classes = int(teacher.model.outputs[0].shape[-1])
    progress(f"firmware: student train step (input {input_dim}, hidden {list(student.hidden)}, "
             f"{classes} classes, batch {student.batch})")
    step = student_step(DenseStack(input_dim, student.hidden, classes), student.batch, arena_headroom)
    entries = []
    for t in targets:
        directory = out / FIRMWARE_DIR / t.name
        shard = shard_files(mcu[t.shard_id], out)
        write_device_config(directory, t.device_class, shard, step, fleet)
        progress(f"firmware: {directory} ({t.device_class}, shard {t.shard_id}, {t.devices} devices)")
        entries.append({"name": t.name, "device_class": t.device_class, "shard_id": t.shard_id,
                        "devices": t.devices, "directory": f"{FIRMWARE_DIR}/{t.name}",
                        "shard_arena_bytes": shard.arena_declared,
                        "student_arena_bytes": step.arena_declared,
                        "student_model_bytes": len(step.model),
                        "fleet_key_pinned": fleet.public_key is not None})
    return entries
