"""`python -m export --plan plan.json --out DIR [--float16]`: every planned (shard, target) artefact,
verified in its interpreter, listed with hashes and agreement in DIR/manifest.json.

Exit codes (edge/cli.py): 0 done; 1 the export failed: a missing or malformed plan or teacher, or a
target that cannot run a layer (the message names layer, operation, target); 2 bad flags. Errors are
one line on stderr naming the fix.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from edge.cli import (
    EXIT_OK,
    CliParser,
    add_log_level,
    configure_logging,
    fail,
    float_between,
    output_path_problem,
    positive_int,
    topic_name,
)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def build_parser() -> argparse.ArgumentParser:
    """The `python -m export` parser (edge.cli convention)."""
    p = CliParser(prog="python -m export", description=__doc__.split("\n\n")[0])
    p.add_argument("--plan", type=Path, required=True, help="plan.json written by `python -m cloud plan`")
    p.add_argument("--out", type=Path, required=True, help="directory for the artefacts and manifest.json")
    p.add_argument("--teacher", type=Path, default=None, help="teacher directory (default: the plan's teacher_dir)")
    p.add_argument("--float16", action="store_true", help="linux: also write a float16 model")
    p.add_argument("--qat", choices=("auto", "always", "never"), default="auto",
                   help="quantisation-aware training: auto = when PTQ loses more than 1 accuracy point")
    p.add_argument("--qat-epochs", type=positive_int, default=5, help="QAT fine-tuning epochs on the calibration set")
    p.add_argument("--allow-cpu-fallback", action="store_true",
                   help="edgetpu: export even if some operators would run on the host CPU (listed in the report)")
    p.add_argument("--arena-headroom", type=float_between(0, 10), default=0.25,
                   help="mcu: declared arena = measured * (1 + this), rounded up to 1 KiB; 0.25 = 25%%")
    p.add_argument("--fleet", type=topic_name, default=None,
                   help="mcu firmware: topic fleet name dmskd/<fleet>/ (default: the plan's fleet, sanitised, or demo)")
    p.add_argument("--fleet-key", type=Path, default=None,
                   help="mcu firmware: fleet-signing.pub (from `python -m cloud provision`) pinned in the image "
                        "(default: none: the image then cannot verify signed plans and models)")
    p.add_argument("--chunk-limit", type=positive_int, default=128 * 1024,
                   help="mcu firmware: largest MQTT message in bytes (edge.chunking's default: 131072)")
    p.add_argument("--student-hidden", type=positive_int, nargs="+", default=[64],
                   help="mcu firmware: the student's hidden widths (as the aggregator's student)")
    p.add_argument("--student-batch", type=positive_int, default=16, help="mcu firmware: train-step batch")
    p.add_argument("--quiet", action="store_true", help="print only the summary table")
    add_log_level(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """Export every planned artefact; exit codes as in edge.cli (0 done, 1 failed, 2 bad flags)."""
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    problem = output_path_problem(args.out, "--out", directory=True)
    if problem:
        return fail(problem)

    from export.plan_file import PlanError, read_plan
    from export.teacher_dir import missing_teacher_files

    try:
        plan = read_plan(args.plan, args.teacher)
    except PlanError as exc:
        return fail(str(exc))
    missing = missing_teacher_files(plan.teacher_dir)
    if missing:
        return fail(f"teacher directory {plan.teacher_dir} lacks {', '.join(missing)}; create it with "
                      f"`python -m simulator teacher --out {plan.teacher_dir}` or pass --teacher DIR")

    from export.errors import InputError, UnsupportedOnTarget
    from export.teacher_dir import load_teacher_dir

    try:
        teacher = load_teacher_dir(plan.teacher_dir)
    except (FileNotFoundError, InputError) as exc:
        return fail(str(exc))
    from export.manifest import build_manifest, write_manifest
    from export.pipeline import export_plan
    from export.qat import QatConfig
    from export.targets import ExportOptions

    say = (lambda msg: None) if args.quiet else (lambda msg: print(msg, flush=True))
    try:
        options = ExportOptions(args.float16, args.allow_cpu_fallback, args.arena_headroom)
        results = export_plan(plan, teacher, args.out, options, args.qat, QatConfig(epochs=args.qat_epochs), say)
    except (UnsupportedOnTarget, FileNotFoundError, InputError) as exc:
        return fail(str(exc))
    from export.firmware_config import FleetSettings
    from export.firmware_export import StudentSpec, export_firmware, read_fleet_key

    try:
        fleet = FleetSettings(args.fleet or _plan_fleet(plan.path), read_fleet_key(args.fleet_key), args.chunk_limit)
        firmware = export_firmware(plan.path, results, teacher, args.out, fleet,
                                   StudentSpec(tuple(args.student_hidden), args.student_batch),
                                   args.arena_headroom, say)
    except (InputError, ValueError) as exc:
        return fail(str(exc))
    manifest = build_manifest(plan, teacher, results)
    if firmware:
        manifest["firmware"] = firmware
    path = write_manifest(args.out, manifest)
    print(summary_table(manifest))
    print(f"wrote {len(manifest['artefacts'])} artefacts and {path}")
    return EXIT_OK


def _plan_fleet(plan_path: Path) -> str:
    """The plan's fleet name as a topic name ('smart-meter pilot' -> 'smart-meter-pilot'); 'demo' if absent.

    The same rule as cloud.provision.sanitise_fleet_name (export does not import cloud)."""
    import json
    import re

    name = json.loads(plan_path.read_text(encoding="utf-8")).get("fleet")
    cleaned = re.sub(r"[^A-Za-z0-9_.\-]+", "-", name.strip()).strip("-._") if isinstance(name, str) else ""
    return cleaned or "demo"


def summary_table(manifest: dict) -> str:
    """Per artefact: bytes, arena, accuracy against float, agreement, quantisation."""
    head = ("shard", "target", "kind", "bytes", "arena B (+headroom)", "float acc", "acc", "drop pts",
            "agree", "quant", "CPU ops")
    rows = [head]
    for a in manifest["artefacts"]:
        arena = f"{a['arena_bytes']} ({a['arena_bytes_with_headroom']})" if "arena_bytes" in a else "-"
        cpu = str(len(a["cpu_fallback_ops"])) if "cpu_fallback_ops" in a else "-"
        rows.append((a["shard_id"], a["target"], a["kind"], f"{a['bytes']:,}", arena, f"{a['float_accuracy']:.4f}",
                     f"{a['accuracy']:.4f}", f"{a['accuracy_drop'] * 100:+.1f}", f"{a['top1_agreement']:.4f}",
                     a["quantisation"] or "-", cpu))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    qat_lines = []
    for sid, s in manifest["shards"].items():
        q = s["qat"]
        qat = (f"QAT {q['accuracy']:.4f} (agreement {q['top1_agreement']:.4f})" if q else
               f"QAT failed: {s['qat_error']}" if s["qat_error"] else "QAT not run")
        qat_lines.append(f"{sid}: PTQ {s['ptq']['accuracy']:.4f} (agreement {s['ptq']['top1_agreement']:.4f}); "
                         f"{qat}; {s['qat_trigger']}; exported {s['exported'].upper()}")
    return "\n".join([*lines, "", *qat_lines])


if __name__ == "__main__":
    sys.exit(main())
