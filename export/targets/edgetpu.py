"""Coral Edge TPU: a full-int8, batch-1 model with uint8 input/output, and the list of operators
the Edge TPU compiler would leave on the host CPU.

The compiler (`edgetpu_compiler`, x86-64 Debian only) cannot run here; users run the command in the
shard's report. The check applies the compiler's documented requirements to every operator:
- the operation is one the Edge TPU supports (export.op_support.EDGETPU_OPS);
- every activation tensor is int8/uint8 (weights int8, constant int32 allowed for biases and shapes);
- shapes are static (no -1 in a shape signature);
- an activation tensor of rank > 3 has size 1 in every dimension but the 3 innermost;
- the compiler maps one contiguous part of the graph: the first operator that fails a rule,
  and every operator after it, run on the CPU.
"""

from __future__ import annotations

from pathlib import Path

from export.artefact import Artefact, CpuFallback, ShardSource, write_file
from export.errors import Unsupported, UnsupportedOnTarget
from export.op_support import EDGETPU_OPS, model_ops
from export.quantize import convert_int8
from export.targets import ExportOptions
from export.tflite_graph import OpInfo, graph_io, read_ops
from export.verify import compare, litert_logits

TARGET = "edgetpu"
QUANTISED = ("int8", "uint8")


def compile_command(model_relpath: str, out_relpath: str) -> str:
    """The exact compiler invocation (run in the export directory)."""
    return f"edgetpu_compiler -s -o {out_relpath} {model_relpath}"


def op_problems(op: OpInfo) -> list[str]:
    """Why the Edge TPU could not run this operator (empty list: it can)."""
    reasons = []
    if op.name not in EDGETPU_OPS:
        reasons.append(f"operation {op.name} is not supported by the Edge TPU")
    for t in (*op.inputs, *op.outputs):
        allowed = (*QUANTISED, "int32") if t.constant else QUANTISED
        if t.dtype not in allowed:
            what = "constant" if t.constant else "tensor"
            reasons.append(f"{what} {_short(t.name)} is {t.dtype}, not quantised to int8")
        if t.dynamic:
            reasons.append(f"tensor {_short(t.name)} has a dynamic shape {list(t.shape_signature)}; "
                           "export with a fixed batch of 1")
        if not t.constant and len(t.shape) > 3 and any(d > 1 for d in t.shape[:-3]):
            reasons.append(f"tensor {_short(t.name)} has shape {list(t.shape)}: only the 3 innermost "
                           "dimensions may be larger than 1")
    return list(dict.fromkeys(reasons))


def cpu_fallbacks(model: bytes, layer_names) -> list[CpuFallback]:
    """Every operator that would run on the CPU after `edgetpu_compiler`, with its reasons."""
    fallbacks: list[CpuFallback] = []
    first: CpuFallback | None = None
    for op in read_ops(model):
        reasons = op_problems(op)
        layer = op.layer(layer_names)
        if reasons and first is None:
            first = CpuFallback(op.index, op.name, layer, tuple(reasons))
            fallbacks.append(first)
        elif first is not None:
            after = (f"follows the first unsupported operator (op #{first.op_index} {first.operation}"
                     f"{f' of layer {first.layer!r}' if first.layer else ''}): the compiler maps one "
                     "contiguous part of the graph, the rest runs on the CPU")
            fallbacks.append(CpuFallback(op.index, op.name, layer, (*reasons, after)))
    return fallbacks


def check_edgetpu(model: bytes, layer_names) -> None:
    """UnsupportedOnTarget naming layer, operation and target for every CPU fallback."""
    _refuse(cpu_fallbacks(model, layer_names))


def _refuse(fallbacks: list[CpuFallback]) -> None:
    if fallbacks:
        raise UnsupportedOnTarget(
            [Unsupported(TARGET, f.layer, f.operation, "; ".join(f.reasons)) for f in fallbacks],
            hint="replace those layers, or pass --allow-cpu-fallback to export it with them on the CPU")


def export_edgetpu(source: ShardSource, out: Path, options: ExportOptions) -> list[Artefact]:
    """Write edgetpu/<name>_int8.tflite and its report; verify it in LiteRT (CPU kernels)."""
    model = convert_int8(source.int8_model, source.calibration_x, target=TARGET, io_type="uint8", batch=1)
    fallbacks = cpu_fallbacks(model, source.layer_names)
    if not options.allow_cpu_fallback:
        _refuse(fallbacks)
    rel = f"{TARGET}/{source.name}_int8.tflite"
    command = compile_command(rel, f"{TARGET}/compiled")
    entry = write_file(out, rel, model)
    check = compare(litert_logits(model, source.holdout_x), source.float_logits, source.holdout_y)
    (inp,), (outp,) = graph_io(model)
    report = write_file(out, f"{TARGET}/{source.name}_report.md",
                        _report(source, model, entry.path, command, fallbacks))
    return [Artefact(source.shard_id, TARGET, "int8", entry, "ai-edge-litert (CPU kernels; no Edge TPU here)",
                     check, inp.dtype, outp.dtype, tuple(sorted(model_ops(model))), source.quantisation,
                     files=(report,), cpu_fallback=tuple(fallbacks), compile_command=command)]


def _report(source: ShardSource, model: bytes, path: str, command: str, fallbacks: list[CpuFallback]) -> str:
    by_index = {f.op_index: f for f in fallbacks}
    rows = []
    for op in read_ops(model):
        f = by_index.get(op.index)
        where = "CPU: " + "; ".join(f.reasons) if f else "Edge TPU"
        rows.append(f"| {op.index} | {op.name} | {op.version} | {op.layer(source.layer_names) or '-'} | {where} |")
    summary = (f"{len(fallbacks)} of {len(rows)} operators would run on the CPU." if fallbacks
               else f"All {len(rows)} operators meet the Edge TPU compiler's requirements.")
    return "\n".join([
        f"# Edge TPU export of shard {source.shard_id} (prefix P{source.k})", "",
        f"Model: `{path}` ({len(model):,} bytes), full int8, batch 1, uint8 input and output, "
        f"{source.quantisation.upper()}.", "",
        "`edgetpu_compiler` runs on x86-64 Debian/Ubuntu only and could not run where this was exported.",
        "Compile it on such a machine, from the export directory:", "",
        f"    {command}", "",
        f"It writes `{TARGET}/compiled/{Path(path).stem}_edgetpu.tflite` and a `.log` listing the operators "
        "it mapped.", "",
        f"Expected mapping (from the compiler's documented requirements): {summary}", "",
        "| # | operation | version | Keras layer | runs on |", "|---|---|---|---|---|", *rows, ""])


def _short(name: str) -> str:
    return name.split(";")[0]
