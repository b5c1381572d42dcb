"""Which firmware configurations a plan needs: one per mcu device class (export.firmware_config).

A class is the plan's `class` of a device (a `[[device]]` of the fleet file is a class of one, named
by its id). A class whose devices were planned onto several shards gets one configuration per
shard, named <class>-<shard>: a firmware image runs exactly one shard.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from export.c_array import c_identifier
from export.errors import InputError


@dataclass(frozen=True)
class FirmwareTarget:
    """One configuration directory to write: its name, the device class, the shard it runs."""

    name: str
    device_class: str
    shard_id: str
    devices: int


def firmware_targets(plan_path: Path) -> list[FirmwareTarget]:
    """The mcu device classes of plan.json and their shards, in plan order."""
    raw = json.loads(Path(plan_path).read_text(encoding="utf-8"))
    by_class: dict[str, dict[str, int]] = {}
    for i, dev in enumerate(raw.get("devices", [])):
        if dev.get("target") != "mcu":
            continue
        cls = dev.get("class") or dev.get("device_id")
        if not isinstance(cls, str) or not cls:
            raise InputError(f"{plan_path}: devices[{i}] is an mcu device with neither class nor device_id; "
                             "re-plan with `python -m cloud plan`")
        shards = by_class.setdefault(cls, {})
        shards[dev["shard_id"]] = shards.get(dev["shard_id"], 0) + 1
    targets = []
    for cls, shards in by_class.items():
        for sid, count in shards.items():
            name = cls if len(shards) == 1 else f"{cls}-{sid}"
            targets.append(FirmwareTarget(c_identifier(name).replace("_", "-") if not _safe(name) else name,
                                          cls, sid, count))
    return targets


def _safe(name: str) -> bool:
    """A directory name that needs no quoting in CMake or a shell."""
    return all(ch.isalnum() or ch in "-_." for ch in name) and not name.startswith(".")
