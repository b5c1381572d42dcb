"""Errors of the export: input it cannot use (a missing or malformed plan or teacher) and layers a target
cannot run; both exit 1 (edge.cli's rule: 2 only for a bad command line)."""

from __future__ import annotations

from dataclasses import dataclass


class InputError(ValueError):
    """A plan, teacher directory or option the export cannot use; the message names the fix."""


@dataclass(frozen=True)
class Unsupported:
    """One layer/operation pair a target cannot run, and why."""

    target: str
    layer: str | None
    operation: str
    reason: str

    def message(self) -> str:
        layer = f"layer {self.layer!r}" if self.layer else "an unnamed layer"
        return f"{self.target}: {layer} uses operation {self.operation}: {self.reason}"


class UnsupportedOnTarget(ValueError):
    """A model or layer a deployment target cannot run; the message names layer, operation and target."""

    def __init__(self, problems: list[Unsupported], hint: str = "") -> None:
        self.problems = list(problems)
        lines = [p.message() for p in self.problems]
        super().__init__("; ".join(lines) + (f" ({hint})" if hint else ""))
