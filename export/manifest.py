"""manifest.json: every artefact with its size, content hash and verified agreement with float."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from export.artefact import Artefact
from export.pipeline import QAT_TRIGGER, ShardResult
from export.plan_file import ExportPlan
from export.teacher_dir import TeacherBundle
from export.verify import Agreement

MANIFEST_VERSION = 1


def _agreement(a: Agreement) -> dict:
    return {"accuracy": round(a.accuracy, 6), "float_accuracy": round(a.float_accuracy, 6),
            "accuracy_drop": round(a.accuracy_drop, 6), "top1_agreement": round(a.top1_agreement, 6),
            "num_examples": a.num_examples}


def _artefact(a: Artefact) -> dict:
    d = {"shard_id": a.shard_id, "target": a.target, "kind": a.kind, "file": a.model.path,
         "bytes": a.model.bytes, "sha256": a.model.sha256, "interpreter": a.interpreter,
         "input_type": a.input_type, "output_type": a.output_type, "ops": list(a.ops),
         "quantisation": a.quantisation, **_agreement(a.check),
         "files": [dataclasses.asdict(f) for f in a.files]}
    if a.per_channel_weights is not None:
        d["per_channel_weights"] = a.per_channel_weights
    if a.arena is not None:
        d["arena_bytes"] = a.arena.measured_bytes
        d["arena_bytes_with_headroom"] = a.arena.with_headroom_bytes
        d["arena_headroom"] = a.arena.headroom
        d["arena_recorded_bytes"] = a.arena.recorded_bytes
    if a.cpu_fallback is not None:
        d["cpu_fallback_ops"] = [{"op_index": f.op_index, "operation": f.operation, "layer": f.layer,
                                  "reasons": list(f.reasons)} for f in a.cpu_fallback]
    if a.compile_command is not None:
        d["compile_command"] = a.compile_command
        d["compile_command_cwd"] = "the export directory (edgetpu_compiler is not installable here)"
    return d


def build_manifest(plan: ExportPlan, teacher: TeacherBundle, results: list[ShardResult]) -> dict:
    """The manifest as a JSON-ready dict."""
    return {
        "manifest_version": MANIFEST_VERSION,
        "plan": str(plan.path), "plan_sha256": hashlib.sha256(plan.path.read_bytes()).hexdigest(),
        "teacher_dir": str(teacher.directory), "teacher_sha256": teacher.model_sha256,
        "holdout_examples": int(len(teacher.holdout_y)),
        "qat_trigger_accuracy_drop": QAT_TRIGGER,
        "tools": _versions(),
        "shards": {r.job.shard_id: {
            "k": r.job.k, "targets": list(r.job.targets),
            "float_accuracy": round(r.quantisation.ptq.float_accuracy, 6),
            "ptq": _agreement(r.quantisation.ptq),
            "qat": None if r.quantisation.qat is None else _agreement(r.quantisation.qat),
            "qat_error": r.quantisation.qat_error, "qat_trigger": r.quantisation.trigger,
            "exported": r.quantisation.chosen} for r in results},
        "artefacts": [_artefact(a) for r in results for a in r.artefacts],
    }


def write_manifest(out: Path, manifest: dict) -> Path:
    path = out / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for dist in ("tensorflow", "tensorflow-model-optimization", "ai-edge-litert", "tflite-micro"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out
