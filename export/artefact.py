"""Values passed between the export pipeline, the per-target exporters and the manifest."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from export.c_array import c_identifier
from export.verify import Agreement

if TYPE_CHECKING:
    import tensorflow as tf


@dataclass(frozen=True)
class ShardSource:
    """One planned shard, ready to convert: its float prefix, the model to quantise (the prefix
    itself for PTQ, or its QAT copy) and the data to calibrate and verify with."""

    shard_id: str
    k: int
    float_model: tf.keras.Model
    int8_model: tf.keras.Model
    quantisation: str  # "ptq" or "qat"
    calibration_x: np.ndarray
    holdout_x: np.ndarray
    holdout_y: np.ndarray
    float_logits: np.ndarray
    int8_batch1: bytes | None = None  # int8_model already converted (int8 I/O, batch 1), if it was

    @property
    def name(self) -> str:
        """Base name of the shard's files and C symbols: shard_<id> (e.g. shard_p2)."""
        return c_identifier(f"shard_{self.shard_id}")

    @property
    def layer_names(self) -> frozenset[str]:
        return frozenset(layer.name for layer in self.float_model.layers)


@dataclass(frozen=True)
class FileEntry:
    """A written file: path relative to the export directory, size and sha256 of its content."""

    path: str
    bytes: int
    sha256: str


def write_file(root: Path, relative: str, content: bytes | str) -> FileEntry:
    """Write content under root (parents created) and describe it."""
    data = content.encode() if isinstance(content, str) else bytes(content)
    target = root / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return FileEntry(relative, len(data), hashlib.sha256(data).hexdigest())


@dataclass(frozen=True)
class ArenaFigures:
    """TFLite-Micro tensor arena: measured by running the model, and the size to declare in firmware."""

    measured_bytes: int  # smallest arena with which TFLite-Micro allocates and invokes the model
    with_headroom_bytes: int  # what the generated header declares
    headroom: str
    recorded_bytes: int  # RecordingMicroAllocator's "Arena allocation total"


@dataclass(frozen=True)
class CpuFallback:
    """One operator the Edge TPU compiler would leave on the host CPU, and why."""

    op_index: int
    operation: str
    layer: str | None
    reasons: tuple[str, ...]

    def message(self) -> str:
        layer = f"layer {self.layer!r}" if self.layer else "an unnamed layer"
        return (f"edgetpu: {layer} operation {self.operation} (op #{self.op_index}) runs on the CPU: "
                f"{'; '.join(self.reasons)}")


@dataclass(frozen=True)
class Artefact:
    """One exported model for one (shard, target), verified in its interpreter."""

    shard_id: str
    target: str
    kind: str  # "int8" or "float16"
    model: FileEntry
    interpreter: str
    check: Agreement
    input_type: str
    output_type: str
    ops: tuple[str, ...]
    quantisation: str | None = None  # "ptq" / "qat" for int8 models
    files: tuple[FileEntry, ...] = ()  # C sources, headers, reports
    per_channel_weights: bool | None = None
    arena: ArenaFigures | None = None
    cpu_fallback: tuple[CpuFallback, ...] | None = None
    compile_command: str | None = None
