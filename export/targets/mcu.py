"""Microcontrollers (TFLite-Micro): full-int8 batch-1 model with int8 I/O as a C array, the exact
MicroMutableOpResolver for it, and its tensor arena measured in the TFLite-Micro interpreter.

Headroom: the declared arena is the measured one plus `ExportOptions.arena_headroom` (25% by
default), rounded up to 1 KiB. The measurement runs TFLM's reference kernels on a 64-bit host;
optimised kernels (CMSIS-NN, ESP-NN...) ask for scratch buffers the reference kernels do not, and
the allocator's alignment differs by platform, so the measured figure is a floor, not a budget.
"""

from __future__ import annotations

import math
from pathlib import Path

from export.artefact import ArenaFigures, Artefact, ShardSource, write_file
from export.c_array import model_data_header, model_data_source
from export.errors import Unsupported, UnsupportedOnTarget
from export.op_support import TFLM_OPS, model_ops
from export.quantize import convert_int8
from export.targets import ExportOptions
from export.tflite_graph import graph_io, read_ops
from export.tflm_arena import measure_arena_bytes, minimum_arena_bytes
from export.tflm_resolver import op_resolver_header
from export.verify import compare, tflm_logits

TARGET = "mcu"


def arena_with_headroom(measured: int, headroom: float) -> int:
    """measured * (1 + headroom), rounded up to a whole KiB."""
    return int(math.ceil(measured * (1.0 + headroom) / 1024.0)) * 1024


def check_mcu(model: bytes, layer_names) -> None:
    """UnsupportedOnTarget naming layer, operation and target for every op TFLite-Micro lacks."""
    bad = [op for op in read_ops(model) if op.name not in TFLM_OPS]  # each has an AddXxx (test_tflm_resolver)
    if bad:
        raise UnsupportedOnTarget([Unsupported(TARGET, op.layer(layer_names), op.name,
                                               "TFLite-Micro has no kernel for this operation") for op in bad],
                                  hint="replace those layers or export the shard for linux")


def export_mcu(source: ShardSource, out: Path, options: ExportOptions) -> list[Artefact]:
    """Write mcu/<name>_model_data.{cc,h}, mcu/<name>_op_resolver.h and mcu/<name>_int8.tflite."""
    model = source.int8_batch1 or convert_int8(source.int8_model, source.calibration_x, target=TARGET,
                                               io_type="int8", batch=1)
    check_mcu(model, source.layer_names)
    ops = sorted(model_ops(model))
    # The RecordingMicroAllocator's total can fall short of what allocation needs (tiny teacher P1:
    # 2,176 recorded, 2,336 needed), so the measured figure is the smallest arena that runs.
    recorded = measure_arena_bytes(model)
    measured = minimum_arena_bytes(model, recorded_total=recorded)
    declared = arena_with_headroom(measured, options.arena_headroom)
    # Verified with exactly the measured arena: the header's declared size is that plus headroom.
    check = compare(tflm_logits(model, source.holdout_x, arena_size=measured), source.float_logits, source.holdout_y)
    name = source.name
    pct = f"{options.arena_headroom:.0%}"
    arena_lines = (
        f"// Tensor arena measured by running this model in the TFLite-Micro interpreter: {measured} bytes\n"
        f"// (smallest arena, in 16-byte steps, that allocates and invokes; the allocator records {recorded}).\n"
        f"// Declared size: measured + {pct} headroom, rounded up to 1 KiB (optimised kernels such as CMSIS-NN\n"
        f"// need scratch buffers the reference kernels do not). Use:\n"
        f"//   alignas(16) static uint8_t tensor_arena[{name}_arena_size];\n"
        f"constexpr unsigned int {name}_arena_measured_bytes = {measured};\n"
        f"constexpr unsigned int {name}_arena_size = {declared};\n")
    model_entry = write_file(out, f"{TARGET}/{name}_int8.tflite", model)
    files = (
        write_file(out, f"{TARGET}/{name}_model_data.cc", model_data_source(model, name)),
        write_file(out, f"{TARGET}/{name}_model_data.h", model_data_header(name, arena_lines)),
        write_file(out, f"{TARGET}/{name}_op_resolver.h", op_resolver_header(ops, name)),
    )
    (inp,), (outp,) = graph_io(model)
    arena = ArenaFigures(measured, declared, f"+{pct}, rounded up to 1 KiB", recorded)
    return [Artefact(source.shard_id, TARGET, "int8", model_entry, "tflite-micro", check, inp.dtype, outp.dtype,
                     tuple(ops), source.quantisation, files=files, arena=arena)]
