"""One small module per deployment target, all behind the same call:
`export_<target>(source: ShardSource, out: Path, options: ExportOptions) -> list[Artefact]`."""

from __future__ import annotations

from dataclasses import dataclass

from export.op_support import TARGETS


@dataclass(frozen=True)
class ExportOptions:
    """User choices that shape the artefacts."""

    float16: bool = False  # linux: also write a float16 model
    allow_cpu_fallback: bool = False  # edgetpu: export even if some ops would run on the CPU
    arena_headroom: float = 0.25  # mcu: declared arena = measured * (1 + headroom), rounded up to 1 KiB

    def __post_init__(self) -> None:
        if not 0 <= self.arena_headroom <= 10:
            raise ValueError(f"arena_headroom must be in [0, 10], got {self.arena_headroom}")


def exporter(target: str):
    """The export function of a target (imported lazily: each pulls its own interpreter)."""
    if target == "linux":
        from export.targets.linux import export_linux
        return export_linux
    if target == "edgetpu":
        from export.targets.edgetpu import export_edgetpu
        return export_edgetpu
    if target == "mcu":
        from export.targets.mcu import export_mcu
        return export_mcu
    raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
