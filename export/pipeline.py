"""Export every (shard, target) pair of a plan: quantise each shard once (PTQ, and QAT when PTQ
loses more than `QAT_TRIGGER` of accuracy), then hand it to each target's exporter."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from export.artefact import Artefact, ShardSource
from export.errors import InputError
from export.plan_file import ExportPlan, ShardJob
from export.qat import QatConfig, QatUnsupported, quantization_aware_model
from export.quantize import convert_int8
from export.targets import ExportOptions, exporter
from export.teacher_dir import TeacherBundle
from export.verify import Agreement, compare, litert_logits

QAT_TRIGGER = 0.01  # one accuracy point
QAT_MODES = ("auto", "always", "never")


@dataclass(frozen=True)
class QuantisationReport:
    """PTQ and (if run) QAT figures of one shard's int8 model in LiteRT, and which one was exported."""

    ptq: Agreement
    qat: Agreement | None
    qat_error: str | None
    chosen: str
    trigger: str


@dataclass(frozen=True)
class ShardResult:
    job: ShardJob
    quantisation: QuantisationReport
    artefacts: tuple[Artefact, ...]


def export_shard(teacher: TeacherBundle, job: ShardJob, out: Path, options: ExportOptions,
                 qat_mode: str = "auto", qat_config: QatConfig = QatConfig(),
                 progress: Callable[[str], None] = lambda msg: None) -> ShardResult:
    """Quantise shard job.k once, then export it for each of its targets."""
    if qat_mode not in QAT_MODES:
        raise ValueError(f"qat_mode must be one of {QAT_MODES}, got {qat_mode!r}")
    prefix = teacher.prefix(job.k)
    float_logits = prefix.predict(teacher.holdout_x, verbose=0)
    first_target = job.targets[0]

    def int8_agreement(model) -> tuple[bytes, Agreement]:
        tflite = convert_int8(model, teacher.calibration_x, target=first_target, batch=1)
        return tflite, compare(litert_logits(tflite, teacher.holdout_x), float_logits, teacher.holdout_y)

    int8_batch1, ptq = int8_agreement(prefix)
    progress(f"{job.shard_id}: float accuracy {ptq.float_accuracy:.4f}, PTQ int8 {ptq.accuracy:.4f} "
             f"(agreement {ptq.top1_agreement:.4f})")
    run_qat = qat_mode == "always" or (qat_mode == "auto" and ptq.accuracy_drop > QAT_TRIGGER)
    trigger = (f"PTQ drop {ptq.accuracy_drop * 100:.2f} points "
               f"{'>' if ptq.accuracy_drop > QAT_TRIGGER else '<='} {QAT_TRIGGER * 100:.0f}; --qat {qat_mode}")
    qat, qat_error, int8_model, chosen = None, None, prefix, "ptq"
    if run_qat:
        progress(f"{job.shard_id}: quantisation-aware training ({qat_config.epochs} epochs)")
        try:
            qat_model = quantization_aware_model(prefix, teacher.calibration_x, qat_config)
            qat_batch1, qat = int8_agreement(qat_model)
            progress(f"{job.shard_id}: QAT int8 {qat.accuracy:.4f} (agreement {qat.top1_agreement:.4f})")
            if (qat.accuracy, qat.top1_agreement) > (ptq.accuracy, ptq.top1_agreement):
                int8_model, int8_batch1, chosen = qat_model, qat_batch1, "qat"
        except QatUnsupported as exc:
            qat_error = str(exc)
            progress(f"{job.shard_id}: {qat_error}; keeping PTQ")
    source = ShardSource(job.shard_id, job.k, prefix, int8_model, chosen, teacher.calibration_x,
                         teacher.holdout_x, teacher.holdout_y, float_logits, int8_batch1)
    artefacts = []
    for target in job.targets:
        progress(f"{job.shard_id}: exporting for {target}")
        artefacts += exporter(target)(source, out, options)
    return ShardResult(job, QuantisationReport(ptq, qat, qat_error, chosen, trigger), tuple(artefacts))


def export_plan(plan: ExportPlan, teacher: TeacherBundle, out: Path, options: ExportOptions,
                qat_mode: str = "auto", qat_config: QatConfig = QatConfig(),
                progress: Callable[[str], None] = lambda msg: None) -> list[ShardResult]:
    """Export every shard of the plan (InputError before writing anything if a shard's k is too deep)."""
    for job in plan.jobs:
        if job.k > teacher.num_exits:
            raise InputError(f"plan shard {job.shard_id} asks for prefix k={job.k} but the teacher in "
                             f"{teacher.directory} has {teacher.num_exits} exits; re-plan against this teacher")
    out.mkdir(parents=True, exist_ok=True)
    return [export_shard(teacher, job, out, options, qat_mode, qat_config, progress) for job in plan.jobs]
