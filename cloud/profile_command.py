"""`python -m cloud profile --teacher DIR`: the cost of every prefix, and the arena estimate checked.

Prints, per prefix P_k: FLOPs per sample (multiply-add = 2), parameters, int8 and float bytes
(weights only; and the converted full-int8 TFLite size), TFLM's planned activation memory, the
estimated TFLite-Micro arena, the arena TFLite-Micro records and the smallest arena it runs the
exported shard with, and the estimate's relative error against the latter; then the worst one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge.cli import EXIT_OK, fail


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `profile` verb."""
    p = sub.add_parser("profile", help="per-prefix FLOPs, params, bytes and TFLite-Micro arena (estimate vs measured)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", type=Path, required=True,
                   help="teacher directory (make one with `python -m simulator teacher --out DIR`)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the per-prefix table; a missing or damaged teacher directory: exit 1."""
    from export.errors import InputError
    from export.teacher_dir import load_teacher_dir

    try:
        teacher = load_teacher_dir(args.teacher)
    except (FileNotFoundError, InputError) as exc:
        return fail(str(exc))
    from cloud.candidates import teacher_candidates
    from cloud.plan_command import _table
    from cloud.profiler import arena_check

    facts = teacher_candidates(teacher)  # converts and measures every prefix once
    checks = {f.k: arena_check(f.profile, f.model, f.arena_measured) for f in facts}
    rows = [("prefix", "FLOPs", "params", "int8 B (weights)", "float B", "TFLite B", "activations B",
             "arena est B", "TFLM recorded B", "TFLM needed B", "rel. error")]
    for f in facts:
        p, c = f.profile, checks[f.k]
        rows.append((f.shard_id, f"{p.flops:,}", f"{p.params:,}", f"{p.int8_bytes:,}", f"{p.float_bytes:,}",
                     f"{f.tflite_bytes:,}", f"{p.peak_activation_bytes:,}", f"{p.arena_bytes:,}",
                     f"{c.recorded_bytes:,}", f"{c.measured_bytes:,}", f"{c.relative_error:+.2%}"))
    print("\n".join(_table(rows)))
    worst = max(checks.values(), key=lambda c: abs(c.relative_error))
    print(f"\nworst relative error of the arena estimate against the smallest arena TFLite-Micro runs the "
          f"shard with: {worst.relative_error:+.2%} (p{worst.k}).\nMeasured with tflite-micro on this 64-bit "
          f"host; the structs of a 32-bit MCU make its arena a little smaller.")
    return EXIT_OK
