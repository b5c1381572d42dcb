"""Linux (ai-edge-litert / tflite-runtime): full-int8 with per-channel conv weights and int8 I/O,
dynamic batch; optionally float16 weights with float32 I/O."""

from __future__ import annotations

from pathlib import Path

from export.artefact import Artefact, ShardSource, write_file
from export.errors import Unsupported, UnsupportedOnTarget
from export.op_support import model_ops
from export.quantize import convert_float16, convert_int8
from export.targets import ExportOptions
from export.tflite_graph import graph_io, per_channel_weight_ops, read_ops
from export.verify import compare, litert_logits

TARGET = "linux"


def export_linux(source: ShardSource, out: Path, options: ExportOptions) -> list[Artefact]:
    """Write linux/<name>_int8.tflite (and <name>_float16.tflite) and verify them in LiteRT."""
    int8 = convert_int8(source.int8_model, source.calibration_x, target=TARGET, io_type="int8", batch=None)
    _assert_builtins(int8, source)
    per_channel = per_channel_weight_ops(int8)
    artefacts = [_artefact(source, out, int8, "int8", source.quantisation,
                           per_channel=all(per_channel.values()) if per_channel else None)]
    if options.float16:
        f16 = convert_float16(source.float_model, target=TARGET, batch=None)
        _assert_builtins(f16, source)
        artefacts.append(_artefact(source, out, f16, "float16", None, per_channel=None))
    return artefacts


def _artefact(source: ShardSource, out: Path, model: bytes, kind: str, quantisation: str | None,
              per_channel: bool | None) -> Artefact:
    entry = write_file(out, f"{TARGET}/{source.name}_{kind}.tflite", model)
    check = compare(litert_logits(model, source.holdout_x), source.float_logits, source.holdout_y)
    (inp,), (outp,) = graph_io(model)
    return Artefact(source.shard_id, TARGET, kind, entry, "ai-edge-litert", check, inp.dtype, outp.dtype,
                    tuple(sorted(model_ops(model))), quantisation, per_channel_weights=per_channel)


def _assert_builtins(model: bytes, source: ShardSource) -> None:
    """LiteRT on a device has no Flex delegate: name any op that is not a builtin."""
    bad = [op for op in read_ops(model) if op.name.startswith(("CUSTOM:", "UNKNOWN_"))]
    if bad:
        raise UnsupportedOnTarget([Unsupported(TARGET, op.layer(source.layer_names), op.name,
                                               "not a TFLite builtin (no Flex/custom kernels on devices)")
                                   for op in bad])
